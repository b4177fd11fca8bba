//! `make test`'s share of fuzzing: every committed corpus input of every target, then a bounded,
//! seeded random run (mutations of the corpus: bit flips, byte edits, inserted tokens the
//! parsers care about, splices, truncation). `FUZZ_REPLAY_ITERS` sets the number of random
//! inputs per target (default 20 000); `FUZZ_REPLAY_SEED` the seed (default fixed, so a failure
//! reproduces). A panicking input is written to `target/fuzz-failures/<target>-<n>` and named.

use infergate_fuzz::{target, Target};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;

const MAX_LEN: usize = 64 * 1024;
/// Byte strings worth inserting: separators, JSON and SSE syntax, boundary numbers.
const TOKENS: &[&[u8]] = &[
    b"\n--\n",
    b"{",
    b"}",
    b"[",
    b"]",
    b"\"",
    b",",
    b":",
    b"\\u0000",
    b"\\ud800",
    b"data: ",
    b"\n\n",
    b"\r\n",
    b"[DONE]",
    b"18446744073709551615",
    b"18446744073709551616",
    b"4294967295",
    b"-1",
    b"1e309",
    b"null",
    b"true",
    b"\xff\xfe",
    b"\xf0\x9f\x98",
    b"\"usage\":",
    b"\"stream\":true",
    b"---\n",
    b"&",
    b"=",
    b"%",
];

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
}

fn corpus(name: &str) -> Vec<Vec<u8>> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("corpus")
        .join(name);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("corpus {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "empty corpus {}", dir.display());
    files.iter().map(|f| std::fs::read(f).unwrap()).collect()
}

fn mutate(rng: &mut Rng, seeds: &[Vec<u8>]) -> Vec<u8> {
    let mut d = seeds[rng.below(seeds.len())].clone();
    for _ in 0..=rng.below(8) {
        let at = rng.below(d.len() + 1);
        match rng.below(8) {
            0 if !d.is_empty() => {
                let i = rng.below(d.len());
                d[i] ^= 1 << rng.below(8);
            }
            1 if !d.is_empty() => {
                let i = rng.below(d.len());
                d[i] = rng.next() as u8;
            }
            2 => d.insert(at, rng.next() as u8),
            3 => {
                let t = TOKENS[rng.below(TOKENS.len())];
                d.splice(at..at, t.iter().copied());
            }
            4 if !d.is_empty() => {
                let end = (at + 1 + rng.below(16)).min(d.len());
                let start = at.min(end);
                d.drain(start..end);
            }
            5 if !d.is_empty() => {
                let start = rng.below(d.len());
                let end = (start + 1 + rng.below(64)).min(d.len());
                let piece = d[start..end].to_vec();
                for _ in 0..=rng.below(4) {
                    d.splice(at..at, piece.iter().copied());
                }
            }
            6 => {
                let other = &seeds[rng.below(seeds.len())];
                let from = rng.below(other.len() + 1);
                d.truncate(at);
                d.extend_from_slice(&other[from..]);
            }
            _ => d.truncate(at),
        }
    }
    d.truncate(MAX_LEN);
    d
}

fn run_one(t: &Target, input: &[u8], what: &str) {
    if catch_unwind(AssertUnwindSafe(|| (t.run)(input))).is_err() {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/fuzz-failures");
        let _ = std::fs::create_dir_all(&dir);
        let file = dir.join(format!("{}-{}", t.name, what.replace('/', "_")));
        let _ = std::fs::write(&file, input);
        panic!(
            "target {} panicked on {what}; input saved to {}",
            t.name,
            file.display()
        );
    }
}

fn replay_and_random(name: &str) {
    let t = target(name).unwrap_or_else(|| panic!("no target {name}"));
    let seeds = corpus(name);
    for (i, s) in seeds.iter().enumerate() {
        run_one(&t, s, &format!("corpus-{i}"));
    }
    let iters: usize = std::env::var("FUZZ_REPLAY_ITERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let seed: u64 = std::env::var("FUZZ_REPLAY_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0x1f_e4_a7_c0_ff_ee);
    let mut rng = Rng(seed ^ name.len() as u64 ^ 0x9E37_79B9_7F4A_7C15);
    for i in 0..iters {
        let input = mutate(&mut rng, &seeds);
        run_one(&t, &input, &format!("random-{i}"));
    }
}

macro_rules! targets {
    ($($(#[$m:meta])* $name:ident),* $(,)?) => {
        $(
            $(#[$m])*
            #[test]
            fn $name() {
                replay_and_random(stringify!($name));
            }
        )*
    };
}

targets!(
    openai_request,
    sse_usage,
    jwt,
    credentials_headers,
    rls_wire,
    plugin_config,
    auth_callouts,
    #[cfg(feature = "shim")]
    pick_wire,
    #[cfg(feature = "shim")]
    endpoint_picker_config,
    #[cfg(feature = "shim")]
    prometheus_text,
    #[cfg(feature = "shim")]
    policy_yaml,
);

/// Every target has a test above (a new target without one fails here).
#[test]
fn every_target_is_replayed() {
    let listed = [
        "openai_request",
        "sse_usage",
        "jwt",
        "credentials_headers",
        "rls_wire",
        "plugin_config",
        "auth_callouts",
        "pick_wire",
        "endpoint_picker_config",
        "prometheus_text",
        "policy_yaml",
    ];
    for t in infergate_fuzz::targets() {
        assert!(listed.contains(&t.name), "{} has no replay test", t.name);
    }
}

/// Regenerates the JWT seeds (a JWKS with every test key and a token signed by each signer):
/// `cargo test -p infergate-fuzz --test replay -- --ignored write_jwt_seeds`.
#[test]
#[ignore]
fn write_jwt_seeds() {
    use infergate_core::auth::jwt::testing::{jwks, sign, ALL_KEYS, ALL_SIGNERS};
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("corpus/jwt");
    std::fs::create_dir_all(&dir).unwrap();
    let set = jwks(&ALL_KEYS).to_string();
    let claims = serde_json::json!({
        "iss": "https://issuer.example", "aud": ["gateway"], "sub": "alice",
        "exp": 1_700_000_600u64, "nbf": 1_699_999_000u64, "groups": ["a", "b"],
    });
    for (key, alg, kid) in ALL_SIGNERS {
        let token = sign(key, alg, Some(kid), &claims);
        std::fs::write(
            dir.join(format!("signed-{}", alg.name())),
            format!("{set}\n--\n{token}"),
        )
        .unwrap();
    }
}
