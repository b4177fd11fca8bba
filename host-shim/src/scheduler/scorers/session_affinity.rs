//! `session-affinity-scorer`: requests of one session prefer one endpoint. The endpoint is
//! chosen by rendezvous hashing of the session key over the candidates, so it needs no
//! session table, every scheduler replica agrees on it, and losing an endpoint moves only
//! the sessions that were on it.

use crate::scheduler::plugin::{Candidate, Scorer};
use crate::scheduler::{endpoint_key, PickRequest};

/// Plugin type name.
pub const TYPE: &str = "session-affinity-scorer";

/// Scores 1 for the session's endpoint, 0 for the others.
#[derive(Debug, Default)]
pub struct SessionAffinityScorer;

impl Scorer for SessionAffinityScorer {
    fn type_name(&self) -> &'static str {
        TYPE
    }

    fn score(&self, req: &PickRequest, candidates: &[Candidate<'_>], out: &mut [f64]) {
        let Some(session) = req.session_key.as_deref() else {
            return;
        };
        let key = xxhash_rust::xxh64::xxh64(session.as_bytes(), 0);
        let best = candidates
            .iter()
            .enumerate()
            .max_by_key(|(_, c)| endpoint_key(&c.state.endpoint, key))
            .map(|(i, _)| i);
        if let Some(i) = best {
            out[i] = 1.0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::scorers::test_support::*;

    #[test]
    fn one_session_one_endpoint_and_sessions_spread() {
        let st = states(&[(0, 0.0); 4]);
        let c = candidates(&st, &[]);
        let mut hits = [0usize; 4];
        for s in 0..400 {
            let req = PickRequest {
                session_key: Some(format!("session-{s}")),
                ..Default::default()
            };
            let mut a = [0.0; 4];
            let mut b = [0.0; 4];
            SessionAffinityScorer.score(&req, &c, &mut a);
            SessionAffinityScorer.score(&req, &c, &mut b);
            assert_eq!(a, b);
            assert_eq!(a.iter().sum::<f64>(), 1.0);
            hits[a.iter().position(|&x| x == 1.0).unwrap()] += 1;
        }
        assert!(hits.iter().all(|&h| h > 50), "{hits:?}");
        let mut none = [0.0; 4];
        SessionAffinityScorer.score(&PickRequest::default(), &c, &mut none);
        assert_eq!(none, [0.0; 4]);
    }
}
