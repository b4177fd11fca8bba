//! Load generation for benchmarks: runs `wrk` (Debian's package, installed by
//! `make bench`'s setup) against a URL and reads back throughput and latency percentiles,
//! with the CPU time a process (Envoy) spent during the run.

use anyhow::{bail, Context, Result};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// One load run.
#[derive(Debug, Clone)]
pub struct LoadSpec {
    /// Target URL.
    pub url: String,
    /// Concurrent connections.
    pub connections: u32,
    /// Run length.
    pub duration: Duration,
    /// Request method.
    pub method: String,
    /// Request headers.
    pub headers: Vec<(String, String)>,
    /// Request body.
    pub body: Option<String>,
}

/// What a run measured.
#[derive(Debug, Clone, Copy, Default)]
pub struct LoadResult {
    /// Completed requests per second.
    pub rps: f64,
    /// Median latency in microseconds.
    pub p50_us: f64,
    /// 99th percentile latency in microseconds.
    pub p99_us: f64,
    /// Requests completed.
    pub requests: u64,
    /// Non-2xx/3xx answers.
    pub errors: u64,
    /// CPU time of the watched process per request, in microseconds.
    pub cpu_us_per_request: f64,
}

fn lua_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The median of `f` over repeated runs (`NaN` for none): what the benchmark tables report.
pub fn median(runs: &[LoadResult], f: impl Fn(&LoadResult) -> f64) -> f64 {
    let mut v: Vec<f64> = runs.iter().map(f).collect();
    v.sort_by(|a, b| a.total_cmp(b));
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

/// CPU time (user + system) of `pid` so far, in clock ticks converted to microseconds.
pub fn cpu_time_us(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    // SAFETY: sysconf with a valid name has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Some((utime + stime) / ticks * 1e6)
}

/// Runs wrk once; `watch` is a process whose CPU time per request is reported.
pub fn run(spec: &LoadSpec, watch: Option<u32>, scratch: &Path) -> Result<LoadResult> {
    let script = scratch.join("wrk.lua");
    let mut lua = format!("wrk.method = {}\n", lua_string(&spec.method));
    if let Some(b) = &spec.body {
        lua += &format!("wrk.body = {}\n", lua_string(b));
    }
    for (k, v) in &spec.headers {
        lua += &format!("wrk.headers[{}] = {}\n", lua_string(k), lua_string(v));
    }
    lua += r#"
done = function(summary, latency, requests)
  io.write(string.format("IG_RESULT %d %d %f %f %d %d\n",
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    summary.errors.status, summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout))
end
"#;
    std::fs::write(&script, lua)?;
    let cpu_before = watch.and_then(cpu_time_us);
    let out = Command::new("wrk")
        .arg("-t1")
        .arg(format!("-c{}", spec.connections))
        .arg(format!("-d{}s", spec.duration.as_secs().max(1)))
        .arg("-s")
        .arg(&script)
        .arg(&spec.url)
        .output()
        .context("running wrk (install it with `make setup-bench` / apt-get install wrk)")?;
    let cpu_after = watch.and_then(cpu_time_us);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let Some(line) = stdout.lines().find_map(|l| l.strip_prefix("IG_RESULT ")) else {
        bail!(
            "wrk gave no result: {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let f: Vec<f64> = line
        .split_whitespace()
        .filter_map(|x| x.parse().ok())
        .collect();
    let [requests, duration_us, p50, p99, status_errors, io_errors] = f[..] else {
        bail!("unexpected wrk result line: {line}");
    };
    let requests_u = requests as u64;
    Ok(LoadResult {
        rps: requests / (duration_us / 1e6),
        p50_us: p50,
        p99_us: p99,
        requests: requests_u,
        errors: (status_errors + io_errors) as u64,
        cpu_us_per_request: match (cpu_before, cpu_after) {
            (Some(a), Some(b)) if requests_u > 0 => (b - a) / requests,
            _ => f64::NAN,
        },
    })
}
