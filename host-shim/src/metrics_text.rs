//! Reading vLLM and SGLang load figures out of Prometheus text exposition.
//!
//! Only the handful of families the scheduler uses are interpreted; everything else is
//! skipped line by line, so a large `/metrics` page costs one pass and no allocation per
//! skipped sample. The parser follows the text format 0.0.4 grammar closely enough for real
//! engine output: `name{label="value",...} value [timestamp]`, `#` comment lines, escaped
//! label values (`\\`, `\"`, `\n`).

use crate::endpoint::EngineMetrics;
use thiserror::Error;

/// Why a metrics page could not be turned into [`EngineMetrics`].
#[derive(Debug, Error, PartialEq)]
pub enum MetricsError {
    /// A sample line is not valid exposition text.
    #[error("line {line}: {reason}")]
    Syntax {
        /// 1-based line number.
        line: usize,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The page has no queue or KV-cache metric of any supported engine.
    #[error("no vLLM or SGLang load metrics (e.g. `vllm:num_requests_waiting`) on the page")]
    NoEngineMetrics,
}

/// One parsed sample line.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample<'a> {
    /// Metric name, e.g. `vllm:num_requests_waiting`.
    pub name: &'a str,
    /// Label pairs in page order, values unescaped.
    pub labels: Vec<(&'a str, String)>,
    /// Sample value (`NaN`, `+Inf` accepted).
    pub value: f64,
}

impl Sample<'_> {
    /// The value of label `name`, if present.
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Parses one non-comment, non-empty line.
pub fn parse_sample(line: &str) -> Result<Sample<'_>, &'static str> {
    let line = line.trim();
    let name_end = line
        .find(|c: char| c == '{' || c.is_ascii_whitespace())
        .ok_or("sample has no value")?;
    let name = &line[..name_end];
    if name.is_empty()
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b':')
    {
        return Err("invalid metric name");
    }
    let mut rest = &line[name_end..];
    let mut labels = Vec::new();
    if let Some(after) = rest.strip_prefix('{') {
        let (parsed, remaining) = parse_labels(after)?;
        labels = parsed;
        rest = remaining;
    }
    let mut fields = rest.split_ascii_whitespace();
    let value = fields.next().ok_or("sample has no value")?;
    let value = parse_value(value).ok_or("sample value is not a number")?;
    if let Some(ts) = fields.next() {
        ts.parse::<i64>()
            .map_err(|_| "timestamp is not an integer")?;
    }
    if fields.next().is_some() {
        return Err("trailing text after the timestamp");
    }
    Ok(Sample {
        name,
        labels,
        value,
    })
}

fn parse_value(s: &str) -> Option<f64> {
    match s {
        "+Inf" | "Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        "NaN" => Some(f64::NAN),
        _ => s.parse().ok(),
    }
}

type Labels<'a> = Vec<(&'a str, String)>;

/// Parses `k="v",...}` and returns the labels and the text after `}`.
fn parse_labels(mut s: &str) -> Result<(Labels<'_>, &str), &'static str> {
    let mut labels = Vec::new();
    loop {
        s = s.trim_start();
        if let Some(rest) = s.strip_prefix('}') {
            return Ok((labels, rest));
        }
        let eq = s.find('=').ok_or("label without `=`")?;
        let key = s[..eq].trim();
        if key.is_empty() || !key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return Err("invalid label name");
        }
        s = s[eq + 1..]
            .trim_start()
            .strip_prefix('"')
            .ok_or("label value is not quoted")?;
        let mut value = String::new();
        let mut chars = s.char_indices();
        let end = loop {
            match chars.next() {
                None => return Err("unterminated label value"),
                Some((i, '"')) => break i,
                Some((_, '\\')) => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, c)) => value.push(c),
                    None => return Err("unterminated label value"),
                },
                Some((_, c)) => value.push(c),
            }
        };
        labels.push((key, value));
        s = s[end + 1..].trim_start();
        if let Some(rest) = s.strip_prefix(',') {
            s = rest;
        } else if !s.starts_with('}') {
            return Err("expected `,` or `}` after a label");
        }
    }
}

/// Metric names read as the waiting-queue length (summed over series).
const WAITING: &[&str] = &["vllm:num_requests_waiting", "sglang:num_queue_reqs"];
/// Metric names read as the running-request count (summed over series).
const RUNNING: &[&str] = &["vllm:num_requests_running", "sglang:num_running_reqs"];
/// Metric names read as KV-cache usage in `0..=1` (max over series). vLLM renamed
/// `gpu_cache_usage_perc` to `kv_cache_usage_perc`; both are fractions despite the name.
const KV_USAGE: &[&str] = &[
    "vllm:kv_cache_usage_perc",
    "vllm:gpu_cache_usage_perc",
    "sglang:token_usage",
];
/// vLLM's info metric carrying `block_size` and `num_gpu_blocks` labels.
const CACHE_CONFIG: &str = "vllm:cache_config_info";
/// SGLang's KV capacity in tokens.
const SGLANG_CAPACITY: &str = "sglang:max_total_num_tokens";
/// Counters of prompt tokens processed (summed over series).
const PROMPT_TOKENS: &[&str] = &["vllm:prompt_tokens_total", "sglang:prompt_tokens_total"];

/// Extracts the scheduler's view of an engine from its `/metrics` page.
pub fn parse_engine_metrics(text: &str) -> Result<EngineMetrics, MetricsError> {
    let mut m = EngineMetrics::default();
    let mut seen_load = false;
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim_start();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        // Cheap prefix check first: most of a vLLM page is histograms we do not read.
        if !(line.starts_with("vllm:") || line.starts_with("sglang:")) {
            continue;
        }
        let sample = parse_sample(line).map_err(|reason| MetricsError::Syntax {
            line: i + 1,
            reason,
        })?;
        let v = if sample.value.is_finite() {
            sample.value.max(0.0)
        } else {
            0.0
        };
        // Saturating: a pod reporting absurd counts (`1e79`) must not overflow the sum
        // (found by the fuzzer).
        if WAITING.contains(&sample.name) {
            m.waiting = m.waiting.saturating_add(v as u64);
            seen_load = true;
        } else if RUNNING.contains(&sample.name) {
            m.running = m.running.saturating_add(v as u64);
            seen_load = true;
        } else if KV_USAGE.contains(&sample.name) {
            m.kv_cache_usage = m.kv_cache_usage.max(v.min(1.0));
            seen_load = true;
        } else if sample.name == CACHE_CONFIG {
            let blocks = sample
                .label("num_gpu_blocks")
                .and_then(|s| s.parse::<u64>().ok());
            let size = sample
                .label("block_size")
                .and_then(|s| s.parse::<u64>().ok());
            if let (Some(b), Some(s)) = (blocks, size) {
                m.kv_capacity_tokens = Some(b.saturating_mul(s));
            }
        } else if PROMPT_TOKENS.contains(&sample.name) {
            let sum = m.prompt_tokens_total.unwrap_or(0);
            m.prompt_tokens_total = Some(sum.saturating_add(v as u64));
        } else if sample.name == SGLANG_CAPACITY && v >= 1.0 {
            m.kv_capacity_tokens = Some(v as u64);
        }
    }
    if seen_load {
        Ok(m)
    } else {
        Err(MetricsError::NoEngineMetrics)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VLLM: &str = r#"# HELP vllm:num_requests_running Number of requests in model execution batches.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{engine="0",model_name="Qwen/Qwen3-0.6B"} 3.0
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{engine="0",model_name="Qwen/Qwen3-0.6B"} 7.0
vllm:kv_cache_usage_perc{engine="0",model_name="Qwen/Qwen3-0.6B"} 0.42
vllm:cache_config_info{block_size="16",cache_dtype="auto",enable_prefix_caching="True",num_gpu_blocks="2048"} 1.0
vllm:e2e_request_latency_seconds_bucket{le="+Inf",model_name="m"} 12.0
vllm:prompt_tokens_total{engine="0",model_name="Qwen/Qwen3-0.6B"} 91234.0
vllm:prompt_tokens_created{engine="0",model_name="Qwen/Qwen3-0.6B"} 1.7e9
python_gc_objects_collected_total{generation="0"} 1234.0
"#;

    #[test]
    fn reads_vllm_v1_page() {
        let m = parse_engine_metrics(VLLM).unwrap();
        assert_eq!(m.waiting, 7);
        assert_eq!(m.running, 3);
        assert!((m.kv_cache_usage - 0.42).abs() < 1e-9);
        assert_eq!(m.kv_capacity_tokens, Some(2048 * 16));
        assert_eq!(m.prompt_tokens_total, Some(91234));
    }

    #[test]
    fn reads_old_vllm_and_sglang_names() {
        let old = "vllm:gpu_cache_usage_perc{model_name=\"m\"} 0.9\nvllm:num_requests_waiting 2\n";
        let m = parse_engine_metrics(old).unwrap();
        assert!((m.kv_cache_usage - 0.9).abs() < 1e-9);
        assert_eq!(m.waiting, 2);
        assert_eq!(m.kv_capacity_tokens, None);

        let sg = "sglang:num_queue_reqs{model_name=\"m\"} 4\nsglang:num_running_reqs 1\nsglang:token_usage 0.25\nsglang:max_total_num_tokens 65536\n";
        let m = parse_engine_metrics(sg).unwrap();
        assert_eq!((m.waiting, m.running), (4, 1));
        assert_eq!(m.kv_capacity_tokens, Some(65536));
    }

    #[test]
    fn sums_queues_over_series_and_clamps_usage() {
        let t = "vllm:num_requests_waiting{engine=\"0\"} 2\nvllm:num_requests_waiting{engine=\"1\"} 3\nvllm:kv_cache_usage_perc 1.5\nvllm:num_requests_running NaN\n";
        let m = parse_engine_metrics(t).unwrap();
        assert_eq!(m.waiting, 5);
        assert_eq!(m.running, 0);
        assert_eq!(m.kv_cache_usage, 1.0);
        // Absurd counts saturate instead of overflowing the sum.
        let t = "vllm:num_requests_waiting 1e79\nvllm:num_requests_waiting 1e79\n";
        assert_eq!(parse_engine_metrics(t).unwrap().waiting, u64::MAX);
    }

    #[test]
    fn rejects_pages_without_engine_metrics_and_bad_lines() {
        assert_eq!(
            parse_engine_metrics("up 1\n# nothing\n"),
            Err(MetricsError::NoEngineMetrics)
        );
        let err = parse_engine_metrics(
            "vllm:num_requests_waiting 1\nvllm:num_requests_running{a=\"x} 2\n",
        )
        .unwrap_err();
        assert_eq!(
            err,
            MetricsError::Syntax {
                line: 2,
                reason: "unterminated label value"
            }
        );
        assert!(parse_engine_metrics("vllm:num_requests_waiting abc\n").is_err());
    }

    #[test]
    fn parses_escapes_and_timestamps() {
        let s = parse_sample(r#"m{a="x\"y\\z\n",b="2"} 1e3 1700000000000"#).unwrap();
        assert_eq!(s.name, "m");
        assert_eq!(s.label("a"), Some("x\"y\\z\n"));
        assert_eq!(s.label("b"), Some("2"));
        assert_eq!(s.value, 1000.0);
        assert!(parse_sample("m{} +Inf").unwrap().value.is_infinite());
        assert_eq!(
            parse_sample("m 1 2 3"),
            Err("trailing text after the timestamp")
        );
        assert_eq!(parse_sample("m{a=1} 2"), Err("label value is not quoted"));
    }
}
