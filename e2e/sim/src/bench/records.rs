//! Per-request records of a run as a TSV file (one line per request, in workload order), so
//! where prefix hits are lost can be measured request by request, offline and live alike
//! (`tools/bench-routing-live/analyze.py` reads them).
//!
//! Columns: `id arrival stage group shared_len prompt_tokens cached backend ttft_ms ok`, where
//! `group` is the content stream of the prompt's first segment when the prompt has more than
//! one (the shared prefix, system prompt or conversation) and `-` otherwise, `shared_len` its
//! length in workload tokens, and `backend` the engine index offline or the `x-served-by`
//! name live.

use crate::bench::cluster::RunResult;
use crate::bench::workload::Workload;
use std::fmt::Write as _;
use std::path::Path;

/// The header line.
pub const HEADER: &str =
    "id\tarrival\tstage\tgroup\tshared_len\tprompt_tokens\tcached\tbackend\tttft_ms\tok";

/// The TSV text of `run` on `workload`; `backends` names engine indexes (empty: the index).
pub fn tsv(workload: &Workload, run: &RunResult, backends: &[String]) -> String {
    let mut out = String::with_capacity(64 * run.records.len() + HEADER.len() + 1);
    out.push_str(HEADER);
    out.push('\n');
    for (i, (r, spec)) in run.records.iter().zip(&workload.requests).enumerate() {
        let (group, shared) = match spec.prompt.as_slice() {
            [first, _, ..] => (first.seed.to_string(), first.len),
            _ => ("-".to_string(), 0),
        };
        let backend = backends
            .get(r.engine)
            .cloned()
            .unwrap_or_else(|| r.engine.to_string());
        let ttft = r.first_token.map_or_else(
            || "-".to_string(),
            |t| format!("{:.1}", (t - r.arrival) * 1e3),
        );
        let _ = writeln!(
            out,
            "{i}\t{:.4}\t{}\t{group}\t{shared}\t{}\t{}\t{backend}\t{ttft}\t{}",
            r.arrival,
            r.stage,
            r.prompt_len,
            r.cached_tokens,
            u8::from(r.first_token.is_some()),
        );
    }
    out
}

/// Writes [`tsv`] to `path`.
///
/// # Errors
/// If the file cannot be written.
pub fn write(
    path: &Path,
    workload: &Workload,
    run: &RunResult,
    backends: &[String],
) -> std::io::Result<()> {
    std::fs::write(path, tsv(workload, run, backends))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::cluster::RequestRecord;
    use crate::bench::workload::{RequestSpec, Segment, WorkloadKind};

    #[test]
    fn one_line_per_request_with_group_and_backend() {
        let spec = |prompt: Vec<Segment>| RequestSpec {
            arrival: 0.5,
            prompt,
            output_len: 3,
            output_seed: 9,
            stage: 1,
        };
        let w = Workload {
            kind: WorkloadKind::SharedPrefix,
            requests: vec![
                spec(vec![
                    Segment { seed: 7, len: 60 },
                    Segment { seed: 8, len: 5 },
                ]),
                spec(vec![Segment { seed: 3, len: 10 }]),
            ],
            stage_rates: vec![1.0, 2.0],
            stage_seconds: 1.0,
            groups: 1,
        };
        let rec = |engine, first_token| RequestRecord {
            engine,
            stage: 1,
            arrival: 0.5,
            first_token,
            finish: None,
            prompt_len: 70,
            output_len: 3,
            cached_tokens: 48,
        };
        let run = RunResult {
            router: "r".into(),
            records: vec![rec(1, Some(0.6)), rec(0, None)],
            engine_stats: Vec::new(),
            end_time: 1.0,
        };
        let text = tsv(&w, &run, &["pod0".into(), "pod1".into()]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], HEADER);
        assert_eq!(lines[1], "0\t0.5000\t1\t7\t60\t70\t48\tpod1\t100.0\t1");
        assert_eq!(lines[2], "1\t0.5000\t1\t-\t0\t70\t48\tpod0\t-\t0");
    }
}
