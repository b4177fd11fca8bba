//! Per-request cost of a compiled predicate, as the rate-limit plugin pays it: decode the
//! identity object from filter-state bytes, then evaluate the predicate tree the translator
//! compiled from CEL. Run: `cargo run --profile native -p infergate-policies --example cel_cost`.

use infergate_core::attributes::{Attribute, AttributeSource, Predicate, PredicateConfig};
use infergate_core::auth::identity::{self, IdentityObject};
use infergate_core::auth::Identity;

struct Req {
    identity: Option<IdentityObject>,
    path: String,
}

impl AttributeSource for Req {
    fn values(&self, attr: &Attribute) -> Vec<String> {
        match attr {
            Attribute::Identity(p) => self
                .identity
                .as_ref()
                .and_then(|o| identity::values_at(o, p))
                .unwrap_or_default(),
            Attribute::Path => vec![self.path.clone()],
            _ => Vec::new(),
        }
    }
}

fn main() {
    let src = r#"auth.identity.tier == "free" && request.path.startsWith("/v1/") && !request.path.endsWith("/models")"#;
    let tree: Vec<Predicate> = infergate_policies::cel::compile_predicate(src)
        .expect("compiles")
        .iter()
        .map(|p| {
            let c: PredicateConfig =
                serde_json::from_str(&serde_json::to_string(p).expect("json")).expect("config");
            Predicate::compile(&c).expect("tree")
        })
        .collect();
    let mut id = Identity {
        userid: "alice".into(),
        ..Identity::default()
    };
    id.properties.insert("tier".into(), "free".into());
    let bytes = identity::encode(&id).expect("fits");
    let n = 1_000_000;
    let t = std::time::Instant::now();
    let mut hits = 0u64;
    for i in 0..n {
        let req = Req {
            identity: identity::decode(&bytes),
            path: if i % 2 == 0 {
                "/v1/chat/completions"
            } else {
                "/v1/models"
            }
            .to_string(),
        };
        if tree.iter().all(|p| p.holds(&req)) {
            hits += 1;
        }
    }
    let per = t.elapsed().as_nanos() as f64 / n as f64;
    println!("predicate tree: {per:.0} ns per request (identity decoded + 3 tests) hits={hits}");
    let t = std::time::Instant::now();
    let req = Req {
        identity: identity::decode(&bytes),
        path: "/v1/chat/completions".into(),
    };
    for _ in 0..n {
        if tree.iter().all(|p| p.holds(&req)) {
            hits += 1;
        }
    }
    let per = t.elapsed().as_nanos() as f64 / n as f64;
    println!("predicate tree: {per:.0} ns per evaluation alone hits={hits}");
}
