//! Where a credential is read from, and reading it.

use serde::{Deserialize, Serialize};

/// Largest credential accepted; longer values are rejected before any hashing or parsing.
pub const MAX_CREDENTIAL_BYTES: usize = 16 * 1024;

/// Where to find the credential, shaped like Kuadrant AuthPolicy's `credentials`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub enum CredentialSource {
    /// `Authorization: <prefix> <credential>`; the prefix is matched case-insensitively.
    AuthorizationHeader {
        /// The scheme, e.g. `Bearer` or `APIKEY`.
        #[serde(default = "default_prefix")]
        prefix: String,
    },
    /// The whole value of a custom header.
    CustomHeader {
        /// Header name.
        name: String,
    },
    /// A query-string parameter. Only used when configured: keys in URLs end up in logs.
    QueryString {
        /// Parameter name.
        name: String,
    },
}

fn default_prefix() -> String {
    "Bearer".to_string()
}

impl Default for CredentialSource {
    fn default() -> Self {
        Self::AuthorizationHeader {
            prefix: default_prefix(),
        }
    }
}

/// Why no usable credential could be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CredentialError {
    /// Nothing was presented at the configured place.
    Missing,
    /// Something was presented but cannot be a credential (wrong scheme, repeated, oversized, …).
    Malformed,
}

impl CredentialSource {
    /// The header this source reads, if it reads one (lower case).
    pub fn header_name(&self) -> Option<String> {
        match self {
            Self::AuthorizationHeader { .. } => Some("authorization".to_string()),
            Self::CustomHeader { name } => Some(name.to_ascii_lowercase()),
            Self::QueryString { .. } => None,
        }
    }

    /// Reads the credential from every value the header had (or the query parameter had).
    ///
    /// More than one value is refused: a proxy in front and the client could disagree about
    /// which one counts.
    pub fn extract<'a>(&self, values: &[&'a str]) -> Result<&'a str, CredentialError> {
        let value = match values {
            [] => return Err(CredentialError::Missing),
            [one] => *one,
            _ => return Err(CredentialError::Malformed),
        };
        if value.len() > MAX_CREDENTIAL_BYTES {
            return Err(CredentialError::Malformed);
        }
        let credential = match self {
            Self::AuthorizationHeader { prefix } => {
                let value = value.trim_matches(|c| c == ' ' || c == '\t');
                let (scheme, rest) = value
                    .split_once([' ', '\t'])
                    .ok_or(CredentialError::Malformed)?;
                if !scheme.eq_ignore_ascii_case(prefix) {
                    return Err(CredentialError::Malformed);
                }
                rest.trim_start_matches([' ', '\t'])
            }
            Self::CustomHeader { .. } | Self::QueryString { .. } => value.trim(),
        };
        if credential.is_empty() {
            return Err(CredentialError::Missing);
        }
        if credential
            .bytes()
            .any(|b| b.is_ascii_control() || b == b' ')
        {
            return Err(CredentialError::Malformed);
        }
        Ok(credential)
    }
}

/// Returns every value of query parameter `name` in `path` (`/x?a=1&b=2`), percent-decoding
/// nothing: API keys are URL-safe tokens.
pub fn query_values<'a>(path: &'a str, name: &str) -> Vec<&'a str> {
    let Some((_, query)) = path.split_once('?') else {
        return Vec::new();
    };
    let query = query.split('#').next().unwrap_or("");
    query
        .split('&')
        .filter_map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (k == name).then_some(v)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bearer() -> CredentialSource {
        CredentialSource::default()
    }

    #[test]
    fn reads_bearer_case_insensitively() {
        assert_eq!(bearer().extract(&["Bearer abc"]), Ok("abc"));
        assert_eq!(bearer().extract(&["bearer   abc"]), Ok("abc"));
        assert_eq!(bearer().extract(&["BEARER\tabc "]), Ok("abc"));
    }

    #[test]
    fn refuses_wrong_scheme_duplicates_and_junk() {
        assert_eq!(
            bearer().extract(&["Basic abc"]),
            Err(CredentialError::Malformed)
        );
        assert_eq!(
            bearer().extract(&["Bearerabc"]),
            Err(CredentialError::Malformed)
        );
        assert_eq!(
            bearer().extract(&["Bearer a", "Bearer b"]),
            Err(CredentialError::Malformed)
        );
        assert_eq!(
            bearer().extract(&["Bearer a b"]),
            Err(CredentialError::Malformed)
        );
        assert_eq!(bearer().extract(&[]), Err(CredentialError::Missing));
        assert_eq!(
            bearer().extract(&["Bearer "]),
            Err(CredentialError::Malformed)
        );
        let huge = format!("Bearer {}", "a".repeat(MAX_CREDENTIAL_BYTES));
        assert_eq!(
            bearer().extract(&[huge.as_str()]),
            Err(CredentialError::Malformed)
        );
    }

    #[test]
    fn custom_prefix() {
        let src = CredentialSource::AuthorizationHeader {
            prefix: "APIKEY".into(),
        };
        assert_eq!(src.extract(&["apikey k1"]), Ok("k1"));
        assert_eq!(src.extract(&["Bearer k1"]), Err(CredentialError::Malformed));
    }

    #[test]
    fn query_parameters() {
        assert_eq!(query_values("/v1/x?a=1&key=k&b", "key"), vec!["k"]);
        assert_eq!(query_values("/v1/x?key=1&key=2", "key"), vec!["1", "2"]);
        assert!(query_values("/v1/x", "key").is_empty());
        assert!(query_values("/v1/x?keyx=1#key=2", "key").is_empty());
    }
}
