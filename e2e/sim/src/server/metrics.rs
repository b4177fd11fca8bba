//! `/metrics` in Prometheus text format with vLLM's metric names and `model_name` label,
//! including both the current `vllm:kv_cache_usage_perc` and the older
//! `vllm:gpu_cache_usage_perc`.

use crate::server::driver::Snapshot;
use std::fmt::Write as _;

fn fmt_f(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{v:.1}")
    } else {
        format!("{v}")
    }
}

/// Renders `s` for the model `model`.
pub fn render(model: &str, s: &Snapshot) -> String {
    let label = format!(
        "model_name=\"{}\"",
        model.replace('\\', "\\\\").replace('"', "\\\"")
    );
    let mut out = String::with_capacity(4096);
    let mut metric = |name: &str, kind: &str, help: &str, value: f64| {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        let _ = writeln!(out, "{name}{{{label}}} {}", fmt_f(value));
    };
    metric(
        "vllm:num_requests_running",
        "gauge",
        "Number of requests in model execution batches.",
        s.running as f64,
    );
    metric(
        "vllm:num_requests_waiting",
        "gauge",
        "Number of requests waiting to be processed.",
        s.waiting as f64,
    );
    metric(
        "vllm:kv_cache_usage_perc",
        "gauge",
        "KV-cache usage. 1 means 100 percent usage.",
        s.kv_usage,
    );
    metric(
        "vllm:gpu_cache_usage_perc",
        "gauge",
        "GPU KV-cache usage. 1 means 100 percent usage (deprecated name).",
        s.kv_usage,
    );
    metric(
        "vllm:prefix_cache_queries_total",
        "counter",
        "Prefix cache queries, in terms of number of queried tokens.",
        s.stats.prefix_cache_queries as f64,
    );
    metric(
        "vllm:prefix_cache_hits_total",
        "counter",
        "Prefix cache hits, in terms of number of cached tokens.",
        s.stats.prefix_cache_hits as f64,
    );
    metric(
        "vllm:prompt_tokens_total",
        "counter",
        "Number of prefill tokens processed.",
        s.stats.prompt_tokens as f64,
    );
    metric(
        "vllm:generation_tokens_total",
        "counter",
        "Number of generation tokens processed.",
        s.stats.generation_tokens as f64,
    );
    metric(
        "vllm:num_preemptions_total",
        "counter",
        "Cumulative number of preemption from the engine.",
        s.stats.preemptions as f64,
    );
    metric(
        "vllm:request_success_total",
        "counter",
        "Count of successfully processed requests.",
        s.stats.finished as f64,
    );
    metric(
        "vllm_sim:engine_steps_total",
        "counter",
        "Engine steps run by the simulator.",
        s.steps as f64,
    );
    metric(
        "vllm_sim:driver_max_lag_seconds",
        "gauge",
        "Worst real delay of the simulator waking up for a step deadline.",
        s.max_lag_seconds,
    );
    metric("vllm_sim:driver_lag_seconds_total", "counter", "Real seconds the simulator woke up after step deadlines (its own overhead; jitter, not cumulative).", s.lag_seconds);
    let _ = writeln!(
        out,
        "# HELP vllm:cache_config_info Information of the LLMEngine CacheConfig"
    );
    let _ = writeln!(out, "# TYPE vllm:cache_config_info gauge");
    let _ = writeln!(
        out,
        "vllm:cache_config_info{{block_size=\"{}\",enable_prefix_caching=\"True\",num_gpu_blocks=\"{}\",{label}}} 1.0",
        s.block_size, s.num_gpu_blocks
    );
    let name = "vllm:time_to_first_token_seconds";
    let _ = writeln!(
        out,
        "# HELP {name} Histogram of time to first token in seconds."
    );
    let _ = writeln!(out, "# TYPE {name} histogram");
    for (le, n) in s.stats.ttft.cumulative() {
        let _ = writeln!(out, "{name}_bucket{{le=\"{le}\",{label}}} {n}.0");
    }
    let _ = writeln!(
        out,
        "{name}_bucket{{le=\"+Inf\",{label}}} {}.0",
        s.stats.ttft.count()
    );
    let _ = writeln!(out, "{name}_count{{{label}}} {}.0", s.stats.ttft.count());
    let _ = writeln!(out, "{name}_sum{{{label}}} {}", fmt_f(s.stats.ttft.sum()));
    out
}
