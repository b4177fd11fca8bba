//! Why a JWKS document, or one key in it, is refused.

use super::MIN_RSA_BITS;
use std::fmt::Write as _;

/// Why one key of a JWKS document is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwkError {
    /// `alg` names an algorithm the plugin does not verify.
    #[error("unsupported alg `{0}`")]
    UnsupportedAlg(String),
    /// A key field (`n`, `e`, `x`, `y`, `k`) is missing or not base64url.
    #[error("`{0}` missing or not base64url")]
    Field(&'static str),
    /// An RSA modulus shorter than [`MIN_RSA_BITS`].
    #[error("RSA modulus below {MIN_RSA_BITS} bits")]
    WeakRsa,
    /// The RSA parameters do not make a public key.
    #[error("{0}")]
    Rsa(String),
    /// `x`/`y` are not a point on the named curve (`P-256`, `P-384`).
    #[error("not a {0} point")]
    NotAPoint(&'static str),
    /// An Ed25519 `x` that is not 32 bytes.
    #[error("Ed25519 `x` must be 32 bytes")]
    Ed25519Length,
    /// An Ed25519 `x` that is not a valid key.
    #[error("not an Ed25519 key")]
    NotEd25519,
    /// An `oct` secret shorter than 32 bytes.
    #[error("HS256 secrets must be at least 32 bytes")]
    ShortSecret,
    /// A `kty` (and `crv`) the plugin does not verify.
    #[error("unsupported key type {}{}", .kty.as_deref().unwrap_or("(none)"), .crv.as_ref().map(|c| format!("/{c}")).unwrap_or_default())]
    UnsupportedKeyType {
        /// The `kty`, if any.
        kty: Option<String>,
        /// The `crv`, if any.
        crv: Option<String>,
    },
    /// `alg` names an algorithm of another key type.
    #[error("alg `{0}` does not fit the key type")]
    AlgMismatch(&'static str),
}

/// Why a JWKS document is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwksError {
    /// Not JSON of the shape `{"keys": [...]}`.
    #[error("not a JWKS document: {0}")]
    NotJwks(String),
    /// No key is usable; the refused ones by index in `keys`.
    #[error("the JWKS holds no usable signing key{}", skipped(.0))]
    NoUsableKey(Vec<(usize, JwkError)>),
}

/// ` (keys[1]: why; keys[3]: why)`, or nothing when no key was refused.
fn skipped(keys: &[(usize, JwkError)]) -> String {
    let mut out = String::new();
    for (n, (i, why)) in keys.iter().enumerate() {
        let sep = if n == 0 { " (" } else { "; " };
        let _ = write!(out, "{sep}keys[{i}]: {why}");
    }
    if !out.is_empty() {
        out.push(')');
    }
    out
}

/// For callers that report configuration errors as text.
impl From<JwksError> for String {
    fn from(e: JwksError) -> Self {
        e.to_string()
    }
}

/// Why a JWKS fetch brought no new key set (the last good one stays in use).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwksFetchError {
    /// The server answered with another status than 200.
    #[error("answered with status {0}")]
    Status(u32),
    /// No answer: timeout, reset or an unreachable cluster.
    #[error("no answer (timeout, reset or unreachable)")]
    NoAnswer,
    /// The answer is not a usable JWKS document.
    #[error(transparent)]
    Document(#[from] JwksError),
    /// The host refused to store the set.
    #[error("the key set could not be stored in shared data")]
    NotStored,
}

impl JwksFetchError {
    /// The failure of an answer with this `status` (`None`: no answer), if it is not a 200.
    pub fn of_status(status: Option<u32>) -> Option<Self> {
        match status {
            Some(200) => None,
            Some(s) => Some(Self::Status(s)),
            None => Some(Self::NoAnswer),
        }
    }
}
