//! Checks of an [`AuthConfig`] that serde cannot express; every error names its field. The
//! kind-specific checks live with each method (`methods/*.rs`).

use super::config::AuthConfig;
use super::credential::CredentialSource;
use super::identity::IdentityProperties;
use super::methods::{self, token_review::check_api};
use crate::config::{ConfigError, Validate};
use crate::headers::normalize_header_name;

impl Validate for AuthConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        if self.methods.is_empty() {
            return Err(ConfigError::new(
                "methods",
                "at least one authentication method is required (use `anonymous` to allow everyone)",
            ));
        }
        let mut names: Vec<&str> = Vec::new();
        for (i, m) in self.methods.iter().enumerate() {
            let at = |f: &str| format!("methods[{i}].{f}");
            if methods::kinds(m) != 1 {
                return Err(ConfigError::new(
                    at("name"),
                    format!(
                        "method `{}` must set exactly one of `apiKey`, `jwt`, `kubernetesTokenReview`, `anonymous`",
                        m.name
                    ),
                ));
            }
            if names.contains(&m.name.as_str()) {
                return Err(ConfigError::new(at("name"), "method names must be unique"));
            }
            names.push(&m.name);
            methods::validate(m, &at)?;
            if let CredentialSource::CustomHeader { name } = &m.credentials {
                if normalize_header_name(name).is_none() {
                    return Err(ConfigError::new(
                        at("credentials.customHeader.name"),
                        "not a valid header name",
                    ));
                }
            }
        }
        IdentityProperties::compile("identityProperties", &self.identity_properties)?;
        super::metadata::Metadata::compile("metadata", &self.metadata)?;
        if let Some(s) = &self.authorization.kubernetes_subject_access_review {
            check_api(
                &|f| format!("authorization.kubernetesSubjectAccessReview.{f}"),
                s.api(),
            )?;
        }
        for (field, name) in [
            ("identityHeaders.userid", &self.identity_headers.userid),
            ("identityHeaders.groups", &self.identity_headers.groups),
        ] {
            if normalize_header_name(name).is_none() {
                return Err(ConfigError::new(field, "not a valid header name"));
            }
        }
        Ok(())
    }
}
