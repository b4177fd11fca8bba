//! Token signing for tests and tools (the gateway itself only verifies).
//!
//! The integration tests may not add crypto crates of their own, so they sign through these
//! helpers, which use the same RustCrypto crates as the verifier. The keys are fixed test keys:
//! never trust them anywhere. Nothing here is linked into a plugin (it is unused there and
//! dropped by the linker).

use super::Alg;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde_json::{json, Value};

// A 2048-bit RSA test key (generated once with `openssl genrsa 2048`), as base64url components.
const RSA_N: &str = "lv-YME8FjXoON54pWmJN1-5KIhTi56utGj5A1LxfX05Z0TBgaehHDw6EfRNfh1HqSHkklgg7oVwB1RF0JGRZ0qBRC_A-WK4tW3uJmxzIodzXTGQ8jYXzxn5WODu8DQDtQ3rQMzH9Ma-Ydo-vC3yT9sdNj9hWpNVAR9tbIvE6oQJ0aznNY6Nstx-5AHkgxbndXsgKdzQvaN7jkXMR02Jv5uHZgRMMIqyw5b9q4H9hA3woEEkCGTeEmx5_sJ9GlY-usVQDA1k-Ha4AhUcRxAQ5pnaz6bykBL3q_ruELqKmovAVMmMI3si1h5jCtySeieluBqvYbFbWMvi88N1d3avanQ";
const RSA_D: &str = "BvgiEpdlxrYLokaIWxXEHljEZCv5nb6_PRcC0AQnv2gy3g8GYYJT2_PhapJygMuSQtO7PA-CN7wy5h4pnE-4vkTMU37m_xnURG-Aa5UvBMWCzGb999GRwvzBcalUJczVUUgsWYiPn_OeV66MYj0sPnd2yCewjBK--5y6E_P1WZ6yEBzxfS8KfIJjAKs28mK12FAELFMfaFoZ3uMFbn3PRO0dUEoDQqZZ1bm8TzXLIrk6PjEx7RtWVfWtIjiTxeMXJxHJt7ooB5wqFpAU50isoxmZrZf9G3HwlpMXrGcqjJljoBGOVtMSBZxROD4jcbWZiTYbJzO3yCcY3wBG2g6jQw";
const RSA_P: &str = "ycoR5CX08756fzlEG4dssXwskf9Y9JW1Y5cUk8mEb7lGJiSYeIVRXKEx3vNTB1xOMwFzlQ27HzDXFvxJ46MvuS5u1mVr3ZvdA4yLWyxS2rzyF6Nwj6cd6aWT31pMK70vNxtyyVeK84mfDsz74VV7zcoa6prX3EZRIDKEWm9tLcs";
const RSA_Q: &str = "v5BphWRJH-B-Vf-cThNSqspCSHA-Gn9N7fkxguPGsMXNRm7UosOoY3spzc21mGSHWK1w1HRk5ryyNShcfwUIqC-NE1MUiksK42-D28WV3y2ZXT_EL0U7klKt5ItQNQn0Be1P4HtQ0Cq3qUnHJ-IXR50l9vJbyNWTB8gVAmMEjDc";
const RSA_E: &str = "AQAB";

/// A test signing key of one type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TestKey {
    /// The fixed 2048-bit RSA key (RS256/384/512, PS256).
    Rsa,
    /// A P-256 key from a fixed scalar (ES256).
    P256,
    /// A P-384 key from a fixed scalar (ES384).
    P384,
    /// An Ed25519 key from a fixed seed (EdDSA).
    Ed25519,
    /// A fixed 32-byte HMAC secret (HS256).
    Hmac,
}

const HMAC_SECRET: &[u8; 32] = b"infergate-test-hmac-secret-32byt";

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn big(s: &str) -> rsa::BigUint {
    rsa::BigUint::from_bytes_be(&URL_SAFE_NO_PAD.decode(s).unwrap_or_default())
}

fn p256_key() -> Option<p256::ecdsa::SigningKey> {
    p256::ecdsa::SigningKey::from_slice(&[7u8; 32]).ok()
}

fn p384_key() -> Option<p384::ecdsa::SigningKey> {
    p384::ecdsa::SigningKey::from_slice(&[9u8; 48]).ok()
}

fn ed_key() -> ed25519_dalek::SigningKey {
    ed25519_dalek::SigningKey::from_bytes(&[11u8; 32])
}

fn rsa_key() -> Option<rsa::RsaPrivateKey> {
    rsa::RsaPrivateKey::from_components(
        big(RSA_N),
        big(RSA_E),
        big(RSA_D),
        vec![big(RSA_P), big(RSA_Q)],
    )
    .ok()
}

/// A deterministic "random" source for PSS salts: fine for tests, never for real signing.
struct CountingRng(u64);

impl rsa::rand_core::RngCore for CountingRng {
    fn next_u32(&mut self) -> u32 {
        self.next_u64() as u32
    }
    fn next_u64(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        for b in dest {
            *b = (self.next_u64() >> 33) as u8;
        }
    }
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rsa::rand_core::Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}

impl rsa::rand_core::CryptoRng for CountingRng {}

impl TestKey {
    /// The public JWK of this key, with `kid` (and without `alg`).
    pub fn jwk(self, kid: &str) -> Value {
        match self {
            Self::Rsa => json!({"kty": "RSA", "kid": kid, "use": "sig", "n": RSA_N, "e": RSA_E}),
            Self::P256 => {
                let point = p256_key()
                    .map(|k| k.verifying_key().to_encoded_point(false))
                    .map(|p| {
                        (
                            b64(p.x().map(|x| x.as_slice()).unwrap_or_default()),
                            b64(p.y().map(|y| y.as_slice()).unwrap_or_default()),
                        )
                    })
                    .unwrap_or_default();
                json!({"kty": "EC", "crv": "P-256", "kid": kid, "x": point.0, "y": point.1})
            }
            Self::P384 => {
                let point = p384_key()
                    .map(|k| k.verifying_key().to_encoded_point(false))
                    .map(|p| {
                        (
                            b64(p.x().map(|x| x.as_slice()).unwrap_or_default()),
                            b64(p.y().map(|y| y.as_slice()).unwrap_or_default()),
                        )
                    })
                    .unwrap_or_default();
                json!({"kty": "EC", "crv": "P-384", "kid": kid, "x": point.0, "y": point.1})
            }
            Self::Ed25519 => json!({"kty": "OKP", "crv": "Ed25519", "kid": kid,
                "x": b64(ed_key().verifying_key().as_bytes())}),
            Self::Hmac => json!({"kty": "oct", "kid": kid, "k": b64(HMAC_SECRET)}),
        }
    }

    /// The raw bytes of the RSA public modulus, for algorithm-confusion tests (an attacker
    /// who HMACs with the public key).
    pub fn rsa_public_modulus() -> Vec<u8> {
        URL_SAFE_NO_PAD.decode(RSA_N).unwrap_or_default()
    }
}

/// Every test key with the `kid` the test JWKS documents give it.
pub const ALL_KEYS: [(TestKey, &str); 5] = [
    (TestKey::Rsa, "rsa"),
    (TestKey::P256, "ec256"),
    (TestKey::P384, "ec384"),
    (TestKey::Ed25519, "ed"),
    (TestKey::Hmac, "hs"),
];

/// Every supported algorithm with the key (and its `kid` in [`ALL_KEYS`]) that signs it.
pub const ALL_SIGNERS: [(TestKey, Alg, &str); 8] = [
    (TestKey::Rsa, Alg::RS256, "rsa"),
    (TestKey::Rsa, Alg::RS384, "rsa"),
    (TestKey::Rsa, Alg::RS512, "rsa"),
    (TestKey::Rsa, Alg::PS256, "rsa"),
    (TestKey::P256, Alg::ES256, "ec256"),
    (TestKey::P384, Alg::ES384, "ec384"),
    (TestKey::Ed25519, Alg::EdDSA, "ed"),
    (TestKey::Hmac, Alg::HS256, "hs"),
];

/// A JWKS document holding `keys` as `(key, kid)`.
pub fn jwks(keys: &[(TestKey, &str)]) -> Value {
    json!({"keys": keys.iter().map(|(k, kid)| k.jwk(kid)).collect::<Vec<_>>()})
}

/// Signs `claims` with `key` using `alg`, with header `{"alg","typ":"JWT","kid"}`.
/// Returns an empty string when `alg` does not fit `key`.
pub fn sign(key: TestKey, alg: Alg, kid: Option<&str>, claims: &Value) -> String {
    let mut header = json!({"alg": alg.name(), "typ": "JWT"});
    if let Some(k) = kid {
        header["kid"] = json!(k);
    }
    sign_raw(key, alg, &header, claims)
}

/// Signs with an arbitrary header (e.g. one naming a different `alg` than used).
pub fn sign_raw(key: TestKey, alg: Alg, header: &Value, claims: &Value) -> String {
    let signing_input = format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    );
    let msg = signing_input.as_bytes();
    let sig: Vec<u8> = match (key, alg) {
        (Self_::Rsa, Alg::RS256) => rsa_sign::<sha2::Sha256>(msg),
        (Self_::Rsa, Alg::RS384) => rsa_sign::<sha2::Sha384>(msg),
        (Self_::Rsa, Alg::RS512) => rsa_sign::<sha2::Sha512>(msg),
        (Self_::Rsa, Alg::PS256) => rsa_key()
            .map(|k| {
                use rsa::signature::{RandomizedSigner, SignatureEncoding};
                rsa::pss::SigningKey::<sha2::Sha256>::new(k)
                    .sign_with_rng(&mut CountingRng(42), msg)
                    .to_vec()
            })
            .unwrap_or_default(),
        (Self_::P256, Alg::ES256) => p256_key()
            .map(|k| {
                use p256::ecdsa::signature::Signer;
                let s: p256::ecdsa::Signature = k.sign(msg);
                s.to_bytes().to_vec()
            })
            .unwrap_or_default(),
        (Self_::P384, Alg::ES384) => p384_key()
            .map(|k| {
                use p384::ecdsa::signature::Signer;
                let s: p384::ecdsa::Signature = k.sign(msg);
                s.to_bytes().to_vec()
            })
            .unwrap_or_default(),
        (Self_::Ed25519, Alg::EdDSA) => {
            use ed25519_dalek::Signer;
            ed_key().sign(msg).to_bytes().to_vec()
        }
        (Self_::Hmac, Alg::HS256) => hmac_sign(HMAC_SECRET, msg),
        _ => return String::new(),
    };
    format!("{signing_input}.{}", b64(&sig))
}

/// HS256 over `msg` with an arbitrary secret (the confusion attack uses the RSA public key).
pub fn hmac_sign(secret: &[u8], msg: &[u8]) -> Vec<u8> {
    use hmac::Mac;
    match hmac::Hmac::<sha2::Sha256>::new_from_slice(secret) {
        Ok(mut m) => {
            m.update(msg);
            m.finalize().into_bytes().to_vec()
        }
        Err(_) => Vec::new(),
    }
}

/// An HS256 token signed with an arbitrary secret.
pub fn sign_hs256_with(secret: &[u8], header: &Value, claims: &Value) -> String {
    let input = format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    );
    let sig = hmac_sign(secret, input.as_bytes());
    format!("{input}.{}", b64(&sig))
}

/// An unsigned (`alg: none`) token.
pub fn unsigned(claims: &Value) -> String {
    format!(
        "{}.{}.",
        b64(json!({"alg": "none", "typ": "JWT"}).to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    )
}

use TestKey as Self_;

fn rsa_sign<D>(msg: &[u8]) -> Vec<u8>
where
    D: sha2::Digest + rsa::pkcs1::der::oid::AssociatedOid,
{
    use rsa::signature::{SignatureEncoding, Signer};
    rsa_key()
        .map(|k| rsa::pkcs1v15::SigningKey::<D>::new(k).sign(msg).to_vec())
        .unwrap_or_default()
}
