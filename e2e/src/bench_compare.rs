//! `bench-gateway --compare-wasm-dir`: the gateway variants measured with two sets of built
//! plugins in one process run (issue 14's "refactor costs nothing" figures, written by
//! `tools/bench-compare.sh` to `e2e/results/refactor-cost.md`).
//!
//! Both sets get the same rendered configuration; before a set's figures count, a probe checks
//! that its plugins accept that configuration and act on it (a valid request answered 200, a
//! request without credentials refused with 401 where an auth filter runs, a host-shim pick
//! served where affinity calls it). A set that fails the probe is skipped with the reason.

use crate::loadgen::{self, LoadResult};
use anyhow::{bail, Context, Result};
use std::net::SocketAddr;
use std::path::PathBuf;

/// The three plugins whose sizes the comparison reports, by their `infergate_<name>.wasm` name.
pub const PLUGINS: [&str; 3] = ["auth", "ratelimit", "affinity"];

/// One set of built plugins: a directory holding `infergate_<name>.wasm` files.
#[derive(Debug, Clone)]
pub struct PluginSet {
    /// How tables name the set (e.g. `before (5596f6b)`).
    pub label: String,
    /// The directory of the `.wasm` files.
    pub dir: PathBuf,
}

impl PluginSet {
    /// The plugin `infergate_<name>.wasm` in this set, checked to exist.
    pub fn wasm(&self, name: &str) -> Result<PathBuf> {
        let path = self.dir.join(format!("infergate_{name}.wasm"));
        if !path.is_file() {
            bail!(
                "plugin set `{}`: {} not found (build the plugins into that directory first)",
                self.label,
                path.display()
            );
        }
        Ok(path)
    }

    /// The size in bytes of the plugin `name` in this set.
    pub fn size(&self, name: &str) -> Result<u64> {
        let path = self.wasm(name)?;
        Ok(std::fs::metadata(&path)
            .with_context(|| format!("reading {}", path.display()))?
            .len())
    }
}

/// The order in which the sets run within round `round` (1-based): as given in odd rounds and
/// reversed in even ones, so that neither set always runs first (drift and warm-up hit both).
pub fn round_order(round: u32, sets: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..sets).collect();
    if round.is_multiple_of(2) {
        order.reverse();
    }
    order
}

/// `after / before`, or `NaN` when either is missing or `before` is zero.
pub fn ratio(after: f64, before: f64) -> f64 {
    if before == 0.0 {
        f64::NAN
    } else {
        after / before
    }
}

/// The plugin size table: one row per plugin, `before` and `after` in bytes and their ratio.
pub fn sizes_table(before: &PluginSet, after: &PluginSet) -> Result<String> {
    let mut out = format!(
        "| plugin | {} bytes | {} bytes | × |\n|---|---|---|---|\n",
        before.label, after.label
    );
    for name in PLUGINS {
        let (b, a) = (before.size(name)?, after.size(name)?);
        out += &format!(
            "| infergate_{name}.wasm | {b} | {a} | {:.3} |\n",
            ratio(a as f64, b as f64)
        );
    }
    Ok(out)
}

/// The runs of one variant with one plugin set.
#[derive(Debug, Clone, Default)]
pub struct Runs {
    /// Throughput runs (many connections).
    pub many: Vec<LoadResult>,
    /// Single-connection latency runs.
    pub one: Vec<LoadResult>,
}

impl Runs {
    /// Files a run under throughput or latency by its connection count.
    pub fn push(&mut self, connections: u32, r: LoadResult) {
        if connections == 1 {
            self.one.push(r);
        } else {
            self.many.push(r);
        }
    }

    fn errors(&self) -> u64 {
        self.many.iter().chain(&self.one).map(|r| r.errors).sum()
    }
}

/// What became of one variant with one plugin set.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// Measured: its runs.
    Measured(Runs),
    /// Not measured, and why (e.g. the plugins refused the configuration).
    Skipped(String),
}

/// One row of the comparison: a variant's outcome with the `before` and the `after` set.
#[derive(Debug, Clone)]
pub struct Row {
    /// Variant name.
    pub name: String,
    /// With the `before` plugins.
    pub before: Outcome,
    /// With the `after` plugins.
    pub after: Outcome,
}

type Metric = (&'static str, fn(&LoadResult) -> f64, bool, &'static str);

/// The figures compared, in column order: name, value, from the single-connection runs, format.
const METRICS: [Metric; 4] = [
    ("req/s (32 conns)", |r| r.rps, false, "0"),
    ("Envoy CPU µs/req", |r| r.cpu_us_per_request, false, "1"),
    ("p99 µs (32 conns)", |r| r.p99_us, false, "0"),
    ("p50 µs (1 conn)", |r| r.p50_us, true, "0"),
];

fn median_of(runs: &Runs, m: &Metric) -> f64 {
    loadgen::median(if m.2 { &runs.one } else { &runs.many }, m.1)
}

fn fmt(v: f64, precision: &str) -> String {
    if v.is_nan() {
        "—".to_string()
    } else if precision == "1" {
        format!("{v:.1}")
    } else {
        format!("{v:.0}")
    }
}

/// The comparison table: per variant and figure, the median `before`, the median `after` and
/// `after / before`; then the errors (non-2xx answers and socket errors) of each set. A variant
/// skipped with either set shows the reason instead of figures.
pub fn compare_table(before: &str, after: &str, rows: &[Row]) -> String {
    let mut head = String::from("| variant |");
    let mut rule = String::from("|---|");
    for (name, ..) in METRICS {
        head += &format!(" {name} {before} | {after} | × |");
        rule += "---|---|---|";
    }
    head += " errors |\n";
    rule += "---|\n";
    let mut out = head + &rule;
    for row in rows {
        match (&row.before, &row.after) {
            (Outcome::Measured(b), Outcome::Measured(a)) => {
                out += &format!("| {} |", row.name);
                for m in &METRICS {
                    let (vb, va) = (median_of(b, m), median_of(a, m));
                    out += &format!(
                        " {} | {} | {:.2} |",
                        fmt(vb, m.3),
                        fmt(va, m.3),
                        ratio(va, vb)
                    );
                }
                out += &format!(" {} / {} |\n", b.errors(), a.errors());
            }
            (b, a) => {
                let reason = [(before, b), (after, a)]
                    .iter()
                    .filter_map(|(label, o)| match o {
                        Outcome::Skipped(why) => Some(format!("{label}: {why}")),
                        Outcome::Measured(_) => None,
                    })
                    .collect::<Vec<_>>()
                    .join("; ");
                let cells = " — |".repeat(METRICS.len() * 3);
                out += &format!(
                    "| {} (skipped: {}) |{cells} — |\n",
                    row.name,
                    one_line(&reason)
                );
            }
        }
    }
    out
}

/// Why a gateway could not be measured, from its start or probe error: what a plugin logged
/// (Envoy's `wasm log <plugin>: …` line, e.g. the configuration it refused) when there is such
/// a line, else the error's first line.
pub fn skip_reason(error: &str) -> String {
    let logged = error
        .lines()
        .find_map(|l| l.split_once("wasm log ").map(|(_, msg)| msg.trim()));
    one_line(logged.unwrap_or(error))
}

/// A reason fit for a table cell: its first line, pipes escaped, at most 200 characters.
fn one_line(s: &str) -> String {
    let first = s.lines().next().unwrap_or_default().replace('|', "\\|");
    first.chars().take(200).collect()
}

/// What a probe of one gateway expects.
#[derive(Debug, Clone)]
pub struct Probe {
    /// The request URL.
    pub url: String,
    /// The request headers a measured client sends (credential included).
    pub headers: Vec<(String, String)>,
    /// The request body.
    pub body: String,
    /// An auth filter runs: the request without `authorization` must be refused with 401.
    pub auth: bool,
    /// The affinity filter calls host-shim at this HTTP address: the valid request must be
    /// served by a pick (`host_shim_picks_total{outcome="ok"}` grows).
    pub shim: Option<SocketAddr>,
}

/// The sum of host-shim's successful picks in its `/metrics` text, `None` without such a line.
pub fn picks_ok(metrics: &str) -> Option<f64> {
    metrics
        .lines()
        .filter(|l| l.starts_with("host_shim_picks_total{") && l.contains("outcome=\"ok\""))
        .filter_map(|l| l.rsplit_once(' ').and_then(|(_, v)| v.parse::<f64>().ok()))
        .fold(None, |acc, v| Some(acc.unwrap_or(0.0) + v))
}

impl Probe {
    /// Sends the probe requests; an error says which expectation failed and what came back.
    pub async fn check(&self) -> Result<()> {
        let client = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(5))
            .build()?;
        let picks_before = match self.shim {
            Some(addr) => Some(shim_picks(&client, addr).await?),
            None => None,
        };
        let (status, text) = self.send(&client, true).await?;
        if status != 200 {
            bail!("a valid request was answered {status}: {}", one_line(&text));
        }
        if let (Some(addr), Some(before)) = (self.shim, picks_before) {
            let after = shim_picks(&client, addr).await?;
            if after <= before {
                bail!("the request was served without a host-shim pick (host_shim_picks_total{{outcome=\"ok\"}} stayed at {before})");
            }
        }
        if self.auth {
            let (status, text) = self.send(&client, false).await?;
            if status != 401 {
                bail!(
                    "a request without credentials was answered {status}, not 401: {}",
                    one_line(&text)
                );
            }
        }
        Ok(())
    }

    async fn send(&self, client: &reqwest::Client, credential: bool) -> Result<(u16, String)> {
        let mut req = client.post(&self.url).body(self.body.clone());
        for (k, v) in &self.headers {
            if credential || !k.eq_ignore_ascii_case("authorization") {
                req = req.header(k, v);
            }
        }
        let resp = req
            .send()
            .await
            .with_context(|| format!("probe request to {}", self.url))?;
        let status = resp.status().as_u16();
        Ok((status, resp.text().await.unwrap_or_default()))
    }
}

async fn shim_picks(client: &reqwest::Client, addr: SocketAddr) -> Result<f64> {
    let text = client
        .get(format!("http://{addr}/metrics"))
        .send()
        .await
        .with_context(|| format!("reading host-shim metrics at {addr}"))?
        .text()
        .await?;
    Ok(picks_ok(&text).unwrap_or(0.0))
}

/// A short description of the machine for the results file: CPU model, cores, load average.
pub fn machine_note() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|l| l.trim_start_matches([' ', '\t', ':']).to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = crate::cpus::online();
    let load = std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default();
    format!("{cpu}, {cores} cores, load average at the end {load}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(rps: f64, cpu: f64, p99: f64, p50: f64, errors: u64) -> LoadResult {
        LoadResult {
            rps,
            p50_us: p50,
            p99_us: p99,
            requests: 100,
            errors,
            cpu_us_per_request: cpu,
        }
    }

    fn runs(values: &[(f64, f64)]) -> Runs {
        let mut r = Runs::default();
        for &(rps, p50) in values {
            r.push(32, run(rps, 50.0, 2000.0, 0.0, 0));
            r.push(1, run(0.0, 0.0, 0.0, p50, 1));
        }
        r
    }

    #[test]
    fn rounds_alternate_which_set_runs_first() {
        assert_eq!(round_order(1, 2), vec![0, 1]);
        assert_eq!(round_order(2, 2), vec![1, 0]);
        assert_eq!(round_order(3, 2), vec![0, 1]);
        assert_eq!(round_order(4, 1), vec![0]);
    }

    #[test]
    fn ratio_is_after_over_before_and_nan_without_a_base() {
        assert_eq!(ratio(90.0, 100.0), 0.9);
        assert!(ratio(1.0, 0.0).is_nan());
    }

    #[test]
    fn runs_are_filed_by_connection_count() {
        let mut r = Runs::default();
        r.push(32, run(1.0, 0.0, 0.0, 0.0, 2));
        r.push(1, run(2.0, 0.0, 0.0, 0.0, 3));
        assert_eq!(r.many.len(), 1);
        assert_eq!(r.one.len(), 1);
        assert_eq!(r.errors(), 5);
    }

    #[test]
    fn table_shows_medians_both_ways_and_the_ratio() {
        let rows = vec![Row {
            name: "auth".into(),
            before: Outcome::Measured(runs(&[(100.0, 300.0), (300.0, 100.0), (200.0, 200.0)])),
            after: Outcome::Measured(runs(&[(180.0, 250.0), (220.0, 210.0), (150.0, 230.0)])),
        }];
        let t = compare_table("before", "after", &rows);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 3, "{t}");
        assert!(lines[0].starts_with("| variant | req/s (32 conns) before | after | × |"));
        // The separator has one column per header cell.
        assert_eq!(lines[0].matches('|').count(), lines[1].matches('|').count());
        assert_eq!(lines[2].matches('|').count(), lines[1].matches('|').count());
        // req/s medians 200 → 180 (0.90); CPU 50 → 50; p99 2000 → 2000; p50 200 → 230 (1.15);
        // errors: one per single-connection run.
        assert_eq!(
            lines[2],
            "| auth | 200 | 180 | 0.90 | 50.0 | 50.0 | 1.00 | 2000 | 2000 | 1.00 | 200 | 230 | 1.15 | 3 / 3 |"
        );
    }

    #[test]
    fn a_skipped_set_shows_its_reason_not_figures() {
        let rows = vec![Row {
            name: "auth (JWT)".into(),
            before: Outcome::Skipped("envoy exited during start | plugin said\nmore".into()),
            after: Outcome::Measured(runs(&[(1.0, 1.0)])),
        }];
        let t = compare_table("old", "new", &rows);
        let row = t.lines().nth(2).unwrap_or_default();
        assert!(
            row.starts_with(
                "| auth (JWT) (skipped: old: envoy exited during start \\| plugin said) | — |"
            ),
            "{row}"
        );
        assert!(!row.contains("more"));
        assert_eq!(
            row.matches(" |").count(),
            t.lines().nth(1).unwrap_or_default().matches('|').count() - 1
        );
    }

    #[test]
    fn a_skip_reason_is_the_plugins_own_complaint() {
        let err = "probing x: envoy exited during start (exit status: 1); errors from its log (/tmp/e.log):\n\
            [2026-12-01 22:09:00.329][10744][error][wasm] [context.cc:1157] wasm log infergate-ratelimit: invalid configuration: field `limits`: unknown field\n\
            [2026-12-01 22:09:00.352][10744][critical][main] error initializing config";
        assert_eq!(
            skip_reason(err),
            "infergate-ratelimit: invalid configuration: field `limits`: unknown field"
        );
        assert_eq!(
            skip_reason("a valid request was answered 500: boom\nmore"),
            "a valid request was answered 500: boom"
        );
    }

    #[test]
    fn sizes_come_from_both_directories_and_a_missing_plugin_is_named() {
        let (b, a) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        for (i, name) in PLUGINS.iter().enumerate() {
            std::fs::write(
                b.path().join(format!("infergate_{name}.wasm")),
                vec![0; 100],
            )
            .unwrap();
            std::fs::write(
                a.path().join(format!("infergate_{name}.wasm")),
                vec![0; 100 + 10 * i],
            )
            .unwrap();
        }
        let before = PluginSet {
            label: "before".into(),
            dir: b.path().into(),
        };
        let after = PluginSet {
            label: "after".into(),
            dir: a.path().into(),
        };
        let t = sizes_table(&before, &after).unwrap();
        assert!(
            t.contains("| infergate_auth.wasm | 100 | 100 | 1.000 |"),
            "{t}"
        );
        assert!(
            t.contains("| infergate_affinity.wasm | 100 | 120 | 1.200 |"),
            "{t}"
        );
        std::fs::remove_file(a.path().join("infergate_ratelimit.wasm")).unwrap();
        let err = sizes_table(&before, &after).unwrap_err().to_string();
        assert!(err.contains("plugin set `after`"), "{err}");
        assert!(err.contains("infergate_ratelimit.wasm not found"), "{err}");
    }

    #[test]
    fn picks_are_summed_over_ok_lines_only() {
        let text = "# TYPE host_shim_picks_total counter\n\
            host_shim_picks_total{outcome=\"ok\",api=\"http\"} 3\n\
            host_shim_picks_total{outcome=\"ok\",api=\"ext_proc\"} 2\n\
            host_shim_picks_total{outcome=\"no_endpoint\",api=\"http\"} 7\n";
        assert_eq!(picks_ok(text), Some(5.0));
        assert_eq!(picks_ok("host_shim_other 1\n"), None);
    }

    #[tokio::test]
    async fn a_gateway_that_lets_everyone_in_fails_the_auth_probe() {
        // The e2e upstream answers every request 200: as a "gateway" it has no auth filter.
        let up = crate::upstream::Upstream::start("probe", "m")
            .await
            .unwrap();
        let mut probe = Probe {
            url: format!("http://{}/v1/chat/completions", up.addr),
            headers: vec![
                ("content-type".into(), "application/json".into()),
                ("authorization".into(), "Bearer k".into()),
            ],
            body: r#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#.into(),
            auth: false,
            shim: None,
        };
        probe.check().await.unwrap();
        probe.auth = true;
        let err = probe.check().await.unwrap_err().to_string();
        assert!(
            err.starts_with("a request without credentials was answered 200, not 401"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn a_request_served_without_a_pick_fails_the_pick_probe() {
        let up = crate::upstream::Upstream::start("probe", "m")
            .await
            .unwrap();
        // A "host-shim" whose /metrics never counts a pick: the upstream's 200 without the line.
        let probe = Probe {
            url: format!("http://{}/v1/chat/completions", up.addr),
            headers: vec![("content-type".into(), "application/json".into())],
            body: r#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#.into(),
            auth: false,
            shim: Some(up.addr),
        };
        let err = probe.check().await.unwrap_err().to_string();
        assert!(
            err.starts_with("the request was served without a host-shim pick"),
            "{err}"
        );
    }
}
