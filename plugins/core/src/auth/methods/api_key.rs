//! `apiKey`: keys stored only as SHA-256 digests, compared in constant time.

use super::{AuthMethod, Input};
use crate::auth::apikey::{find_match, KeyDigest};
use crate::auth::config::ApiKeyConfig;
use crate::auth::decision::Step;
use crate::auth::Identity;
use crate::config::ConfigError;

/// Every key must be a digest and name a user.
pub(crate) fn validate(c: &ApiKeyConfig, at: &dyn Fn(&str) -> String) -> Result<(), ConfigError> {
    for (j, key) in c.keys.iter().enumerate() {
        if KeyDigest::from_hex(&key.sha256).is_none() {
            return Err(ConfigError::new(
                at(&format!("apiKey.keys[{j}].sha256")),
                "must be 64 hex digits (the SHA-256 of the key, never the key itself)",
            ));
        }
        if key.identity.userid.is_empty() {
            return Err(ConfigError::new(
                at(&format!("apiKey.keys[{j}].identity.userid")),
                "must not be empty",
            ));
        }
    }
    Ok(())
}

/// A compiled `apiKey` method.
pub struct ApiKey {
    digests: Vec<KeyDigest>,
    identities: Vec<Identity>,
}

impl ApiKey {
    /// Compiles a validated configuration (entries that are not digests are dropped).
    pub fn new(c: ApiKeyConfig) -> Self {
        let (digests, identities) = c
            .keys
            .into_iter()
            .filter_map(|e| KeyDigest::from_hex(&e.sha256).map(|d| (d, e.identity)))
            .unzip();
        Self {
            digests,
            identities,
        }
    }
}

impl AuthMethod for ApiKey {
    fn authenticate(&self, input: &Input<'_>) -> Step {
        let Some(credential) = input.credential else {
            return Step::Skip;
        };
        let presented = KeyDigest::of(credential.as_bytes());
        match find_match(&self.digests, &presented).and_then(|i| self.identities.get(i)) {
            Some(id) => Step::Accept {
                identity: id.clone(),
                object: None,
            },
            None => Step::Refuse,
        }
    }
}
