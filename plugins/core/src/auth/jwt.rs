//! JSON Web Tokens (RFC 7519, JWS compact form) verified against a JSON Web Key Set (RFC 7517).
//!
//! Only what a gateway needs: a fixed list of allowed algorithms (never `none`), keys chosen by
//! `kid` and by key type (so a token cannot pick an algorithm its key was not made for — the
//! HS256-signed-with-the-RSA-public-key confusion is impossible: an RSA key only ever verifies
//! RS*/PS* signatures), issuer, audience and time checks with a clock skew.
//!
//! Crypto is RustCrypto: `rsa` (PKCS#1 v1.5 and PSS), `p256`/`p384` (ECDSA), `ed25519-dalek`,
//! `hmac` + `sha2`.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Largest token accepted; anything longer is refused before decoding.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;
/// Smallest RSA modulus accepted in a JWKS, in bits.
pub const MIN_RSA_BITS: usize = 2048;
/// Keys tried per token at most (a JWKS without `kid`s is searched by key type).
const MAX_KEYS_TRIED: usize = 4;

/// A signature algorithm the gateway can verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
pub enum Alg {
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    RS256,
    /// RSASSA-PKCS1-v1_5 with SHA-384.
    RS384,
    /// RSASSA-PKCS1-v1_5 with SHA-512.
    RS512,
    /// RSASSA-PSS with SHA-256.
    PS256,
    /// ECDSA P-256 with SHA-256.
    ES256,
    /// ECDSA P-384 with SHA-384.
    ES384,
    /// Ed25519.
    EdDSA,
    /// HMAC with SHA-256 (shared secret from an `oct` key).
    HS256,
}

impl Alg {
    /// Parses a JOSE `alg` name; `none` and everything unknown is `None`.
    pub fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "RS256" => Self::RS256,
            "RS384" => Self::RS384,
            "RS512" => Self::RS512,
            "PS256" => Self::PS256,
            "ES256" => Self::ES256,
            "ES384" => Self::ES384,
            "EdDSA" => Self::EdDSA,
            "HS256" => Self::HS256,
            _ => return None,
        })
    }

    /// The JOSE name.
    pub fn name(self) -> &'static str {
        match self {
            Self::RS256 => "RS256",
            Self::RS384 => "RS384",
            Self::RS512 => "RS512",
            Self::PS256 => "PS256",
            Self::ES256 => "ES256",
            Self::ES384 => "ES384",
            Self::EdDSA => "EdDSA",
            Self::HS256 => "HS256",
        }
    }

    /// The default allowed list: every asymmetric algorithm (HS256 must be asked for).
    pub fn asymmetric() -> Vec<Self> {
        vec![
            Self::RS256,
            Self::RS384,
            Self::RS512,
            Self::PS256,
            Self::ES256,
            Self::ES384,
            Self::EdDSA,
        ]
    }
}

/// Public key material of one JWK.
#[derive(Clone)]
pub enum KeyMaterial {
    /// `kty: RSA`.
    Rsa(rsa::RsaPublicKey),
    /// `kty: EC, crv: P-256`.
    P256(p256::ecdsa::VerifyingKey),
    /// `kty: EC, crv: P-384`.
    P384(p384::ecdsa::VerifyingKey),
    /// `kty: OKP, crv: Ed25519`.
    Ed25519(ed25519_dalek::VerifyingKey),
    /// `kty: oct` (HS256 secret).
    Hmac(Vec<u8>),
}

impl KeyMaterial {
    /// Whether this key may verify `alg`: the key type fixes the algorithm family.
    pub fn fits(&self, alg: Alg) -> bool {
        matches!(
            (self, alg),
            (
                Self::Rsa(_),
                Alg::RS256 | Alg::RS384 | Alg::RS512 | Alg::PS256
            ) | (Self::P256(_), Alg::ES256)
                | (Self::P384(_), Alg::ES384)
                | (Self::Ed25519(_), Alg::EdDSA)
                | (Self::Hmac(_), Alg::HS256)
        )
    }

    fn verify(&self, alg: Alg, message: &[u8], sig: &[u8]) -> bool {
        use rsa::signature::Verifier;
        match (self, alg) {
            (Self::Rsa(k), Alg::RS256) => rsa_pkcs1::<sha2::Sha256>(k, message, sig),
            (Self::Rsa(k), Alg::RS384) => rsa_pkcs1::<sha2::Sha384>(k, message, sig),
            (Self::Rsa(k), Alg::RS512) => rsa_pkcs1::<sha2::Sha512>(k, message, sig),
            (Self::Rsa(k), Alg::PS256) => rsa::pss::Signature::try_from(sig).is_ok_and(|s| {
                rsa::pss::VerifyingKey::<sha2::Sha256>::new(k.clone())
                    .verify(message, &s)
                    .is_ok()
            }),
            (Self::P256(k), Alg::ES256) => {
                p256::ecdsa::Signature::from_slice(sig).is_ok_and(|s| k.verify(message, &s).is_ok())
            }
            (Self::P384(k), Alg::ES384) => {
                p384::ecdsa::Signature::from_slice(sig).is_ok_and(|s| k.verify(message, &s).is_ok())
            }
            (Self::Ed25519(k), Alg::EdDSA) => ed25519_dalek::Signature::from_slice(sig)
                .is_ok_and(|s| k.verify_strict(message, &s).is_ok()),
            (Self::Hmac(secret), Alg::HS256) => {
                use hmac::Mac;
                let Ok(mut mac) = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret) else {
                    return false;
                };
                mac.update(message);
                // Constant-time comparison.
                mac.verify_slice(sig).is_ok()
            }
            _ => false,
        }
    }
}

fn rsa_pkcs1<D>(key: &rsa::RsaPublicKey, message: &[u8], sig: &[u8]) -> bool
where
    D: sha2::Digest + const_oid_bound::AssociatedOid,
{
    use rsa::signature::Verifier;
    rsa::pkcs1v15::Signature::try_from(sig).is_ok_and(|s| {
        rsa::pkcs1v15::VerifyingKey::<D>::new(key.clone())
            .verify(message, &s)
            .is_ok()
    })
}

mod const_oid_bound {
    pub use rsa::pkcs1::der::oid::AssociatedOid;
}

/// One usable key of a set.
#[derive(Clone)]
pub struct Jwk {
    /// `kid`, if the JWK has one.
    pub kid: Option<String>,
    /// `alg`, if the JWK pins one.
    pub alg: Option<Alg>,
    /// The key.
    pub key: KeyMaterial,
}

impl Jwk {
    /// Whether this key may verify `alg` (its type fits, and its pinned `alg`, if any, agrees).
    pub fn usable_for(&self, alg: Alg) -> bool {
        self.alg.is_none_or(|a| a == alg) && self.key.fits(alg)
    }
}

/// A parsed JWKS: the keys the gateway can use (others — `use: enc`, unknown types — skipped).
#[derive(Clone, Default)]
pub struct KeySet {
    /// Usable keys.
    pub keys: Vec<Jwk>,
    /// Distinct for every parsed set in this worker, so a verification remembered for one set
    /// is never reused for another (see `jwt_cache`).
    pub generation: u64,
}

/// Hands out [`KeySet::generation`]s.
fn next_generation() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

impl std::fmt::Debug for KeySet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "KeySet({} keys)", self.keys.len())
    }
}

/// A JWKS document as written (RFC 7517): unknown members (`x5c`, `x5t`, …) are ignored.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, Eq)]
pub struct JwksDocument {
    /// The keys.
    pub keys: Vec<RawJwk>,
}

/// One JWK as written; only the members the gateway uses.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, Eq)]
pub struct RawJwk {
    /// Key type: `RSA`, `EC`, `OKP`, `oct`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kty: Option<String>,
    /// Curve of `EC`/`OKP` keys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crv: Option<String>,
    /// Key id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kid: Option<String>,
    /// Algorithm the key is pinned to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alg: Option<String>,
    /// `sig` or `enc`; `enc` keys are skipped.
    #[serde(default, rename = "use", skip_serializing_if = "Option::is_none")]
    pub use_: Option<String>,
    /// RSA modulus.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n: Option<String>,
    /// RSA exponent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub e: Option<String>,
    /// EC/OKP x coordinate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub x: Option<String>,
    /// EC y coordinate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub y: Option<String>,
    /// `oct` secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub k: Option<String>,
}

fn b64(field: &Option<String>) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD
        .decode(field.as_deref()?.trim_end_matches('='))
        .ok()
}

impl KeySet {
    /// Parses a JWKS document (`{"keys":[…]}`). Fails if it is not one or holds no usable key.
    pub fn from_json(bytes: &[u8]) -> Result<Self, JwksError> {
        let doc: JwksDocument =
            serde_json::from_slice(bytes).map_err(|e| JwksError::NotJwks(e.to_string()))?;
        Self::from_document(&doc)
    }

    /// Builds the set from a parsed document. Fails if it holds no usable key.
    pub fn from_document(doc: &JwksDocument) -> Result<Self, JwksError> {
        let mut keys = Vec::new();
        let mut skipped = Vec::new();
        for (i, k) in doc.keys.iter().enumerate() {
            match parse_jwk(k) {
                Ok(Some(jwk)) => keys.push(jwk),
                Ok(None) => {}
                Err(why) => skipped.push((i, why)),
            }
        }
        if keys.is_empty() {
            return Err(JwksError::NoUsableKey(skipped));
        }
        Ok(Self {
            keys,
            generation: next_generation(),
        })
    }
}

fn parse_jwk(k: &RawJwk) -> Result<Option<Jwk>, JwkError> {
    if k.use_.as_deref().is_some_and(|u| u != "sig") {
        return Ok(None);
    }
    let alg = match k.alg.as_deref() {
        Some(a) => Some(Alg::parse(a).ok_or_else(|| JwkError::UnsupportedAlg(a.to_string()))?),
        None => None,
    };
    let need = |f: &Option<String>, n: &'static str| b64(f).ok_or(JwkError::Field(n));
    let key = match (k.kty.as_deref(), k.crv.as_deref()) {
        (Some("RSA"), _) => {
            let n = rsa::BigUint::from_bytes_be(&need(&k.n, "n")?);
            let e = rsa::BigUint::from_bytes_be(&need(&k.e, "e")?);
            if n.bits() < MIN_RSA_BITS {
                return Err(JwkError::WeakRsa);
            }
            KeyMaterial::Rsa(
                rsa::RsaPublicKey::new(n, e).map_err(|e| JwkError::Rsa(e.to_string()))?,
            )
        }
        (Some("EC"), Some(crv @ ("P-256" | "P-384"))) => {
            let mut sec1 = vec![4u8];
            sec1.extend(need(&k.x, "x")?);
            sec1.extend(need(&k.y, "y")?);
            if crv == "P-256" {
                KeyMaterial::P256(
                    p256::ecdsa::VerifyingKey::from_sec1_bytes(&sec1)
                        .map_err(|_| JwkError::NotAPoint("P-256"))?,
                )
            } else {
                KeyMaterial::P384(
                    p384::ecdsa::VerifyingKey::from_sec1_bytes(&sec1)
                        .map_err(|_| JwkError::NotAPoint("P-384"))?,
                )
            }
        }
        (Some("OKP"), Some("Ed25519")) => {
            let x: [u8; 32] = need(&k.x, "x")?
                .try_into()
                .map_err(|_| JwkError::Ed25519Length)?;
            KeyMaterial::Ed25519(
                ed25519_dalek::VerifyingKey::from_bytes(&x).map_err(|_| JwkError::NotEd25519)?,
            )
        }
        (Some("oct"), _) => {
            let secret = need(&k.k, "k")?;
            if secret.len() < 32 {
                return Err(JwkError::ShortSecret);
            }
            KeyMaterial::Hmac(secret)
        }
        (kty, crv) => {
            return Err(JwkError::UnsupportedKeyType {
                kty: kty.map(str::to_string),
                crv: crv.map(str::to_string),
            })
        }
    };
    if let Some(a) = alg {
        if !key.fits(a) {
            return Err(JwkError::AlgMismatch(a.name()));
        }
    }
    Ok(Some(Jwk {
        kid: k.kid.clone(),
        alg,
        key,
    }))
}

/// What a token must satisfy besides its signature.
#[derive(Debug, Clone)]
pub struct Validation {
    /// Required `iss`.
    pub issuer: String,
    /// `aud` must contain one of these (not checked when empty).
    pub audiences: Vec<String>,
    /// Algorithms accepted.
    pub algorithms: Vec<Alg>,
    /// Leeway for `exp` and `nbf`, in seconds.
    pub clock_skew_secs: u64,
}

/// Why a token was refused. Never shown to clients (they all get the same 401), but logged
/// at debug level and used in tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JwtError {
    /// Not three base64url parts with JSON header and payload, or oversized.
    Malformed,
    /// `alg` is `none`, unknown, or not in the allowed list.
    AlgorithmNotAllowed,
    /// No key of the set fits the token's `kid` and `alg`.
    NoKey,
    /// The signature does not verify.
    BadSignature,
    /// `exp` is missing or past.
    Expired,
    /// `nbf` is in the future.
    NotYetValid,
    /// `iss` differs.
    WrongIssuer,
    /// `aud` holds none of the configured audiences.
    WrongAudience,
}

/// The verified claims.
pub type Claims = Map<String, Value>;

#[derive(Deserialize)]
struct Header {
    alg: String,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default)]
    crit: Option<serde::de::IgnoredAny>,
}

/// Whether a credential has the shape of a JWS compact token (two dots).
pub fn looks_like_jwt(credential: &str) -> bool {
    credential.bytes().filter(|b| *b == b'.').count() == 2
}

/// Verifies `token` against `keys` and `v` at time `now` (seconds since the epoch).
pub fn verify(token: &str, keys: &KeySet, v: &Validation, now: u64) -> Result<Claims, JwtError> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(JwtError::Malformed);
    }
    let mut parts = token.split('.');
    let (Some(h64), Some(p64), Some(s64), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(JwtError::Malformed);
    };
    let dec = |s: &str| URL_SAFE_NO_PAD.decode(s).map_err(|_| JwtError::Malformed);
    let header: Header = serde_json::from_slice(&dec(h64)?).map_err(|_| JwtError::Malformed)?;
    if header.crit.is_some() {
        // No extension is understood, so none may be critical (RFC 7515 §4.1.11).
        return Err(JwtError::Malformed);
    }
    let alg = Alg::parse(&header.alg)
        .filter(|a| v.algorithms.contains(a))
        .ok_or(JwtError::AlgorithmNotAllowed)?;
    let sig = dec(s64)?;
    let signed = token
        .get(..h64.len() + 1 + p64.len())
        .ok_or(JwtError::Malformed)?;
    let candidates = keys.keys.iter().filter(|k| {
        k.usable_for(alg)
            && match (&header.kid, &k.kid) {
                (Some(want), Some(have)) => want == have,
                (Some(_), None) => true,
                (None, _) => true,
            }
    });
    let mut tried = 0;
    let mut verified = false;
    for k in candidates.take(MAX_KEYS_TRIED) {
        tried += 1;
        if k.key.verify(alg, signed.as_bytes(), &sig) {
            verified = true;
            break;
        }
    }
    if tried == 0 {
        return Err(JwtError::NoKey);
    }
    if !verified {
        return Err(JwtError::BadSignature);
    }
    let claims: Claims = serde_json::from_slice(&dec(p64)?).map_err(|_| JwtError::Malformed)?;
    check_claims(&claims, v, now)?;
    Ok(claims)
}

/// Checks the claims of a token whose signature was verified earlier (time, issuer,
/// audience): a cached verification must still pass these at every use.
pub fn recheck_claims(c: &Claims, v: &Validation, now: u64) -> Result<(), JwtError> {
    check_claims(c, v, now)
}

fn check_claims(c: &Claims, v: &Validation, now: u64) -> Result<(), JwtError> {
    let now = now as f64;
    let skew = v.clock_skew_secs as f64;
    match c.get("exp").and_then(Value::as_f64) {
        Some(exp) if now <= exp + skew => {}
        _ => return Err(JwtError::Expired),
    }
    if let Some(nbf) = c.get("nbf") {
        match nbf.as_f64() {
            Some(nbf) if now + skew >= nbf => {}
            _ => return Err(JwtError::NotYetValid),
        }
    }
    if c.get("iss").and_then(Value::as_str) != Some(v.issuer.as_str()) {
        return Err(JwtError::WrongIssuer);
    }
    if !v.audiences.is_empty() {
        let ok = match c.get("aud") {
            Some(Value::String(a)) => v.audiences.contains(a),
            Some(Value::Array(list)) => list
                .iter()
                .filter_map(Value::as_str)
                .any(|a| v.audiences.iter().any(|w| w == a)),
            _ => false,
        };
        if !ok {
            return Err(JwtError::WrongAudience);
        }
    }
    Ok(())
}

/// Reads a string claim by a dotted path (`sub`, `realm_access.roles`).
pub fn claim<'a>(claims: &'a Claims, path: &str) -> Option<&'a Value> {
    let mut parts = path.split('.');
    let mut cur = claims.get(parts.next()?)?;
    for p in parts {
        cur = cur.as_object()?.get(p)?;
    }
    Some(cur)
}

/// Groups from a claim holding an array of strings or one space-separated string (`scope`).
pub fn groups_of(value: Option<&Value>) -> Vec<String> {
    match value {
        Some(Value::Array(list)) => list
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect(),
        Some(Value::String(s)) => s.split_whitespace().map(str::to_string).collect(),
        _ => Vec::new(),
    }
}

mod error;
pub mod testing;

pub use error::{JwkError, JwksError, JwksFetchError};

#[cfg(test)]
mod tests;
