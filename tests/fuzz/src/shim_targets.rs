//! Targets in host-shim and the policy translator.

use crate::{parts, text, Target};
use host_shim::metrics_text::{parse_engine_metrics, parse_sample};
use host_shim::scheduler::config::{parse_duration, SchedulerConfig};
use host_shim::server::wire::{decode_pick, decode_served};
use infergate_core::pick_wire::{encode_pick, encode_served, PickQuery};
use infergate_policies::resources::Bundle;
use infergate_policies::{render, Options};
use std::path::Path;

/// The host-shim and translator targets.
pub const TARGETS: &[Target] = &[
    Target {
        name: "pick_wire",
        about: "the /v1/pick and /v1/served bodies host-shim decodes; encode→decode round trip",
        run: pick_wire,
    },
    Target {
        name: "endpoint_picker_config",
        about: "EndpointPickerConfig YAML/JSON and its durations",
        run: endpoint_picker_config,
    },
    Target {
        name: "prometheus_text",
        about: "vLLM /metrics Prometheus text scraped by host-shim",
        run: prometheus_text,
    },
    Target {
        name: "policy_yaml",
        about: "Kuadrant / Gateway API / InferencePool YAML through the policy translator",
        run: policy_yaml,
    },
];

/// Raw bodies decode or fail cleanly; a query built from the input encodes and decodes back.
fn pick_wire(data: &[u8]) {
    let _ = decode_pick(data);
    let _ = decode_served(data);
    let p = parts(data, 3);
    let model = text(p[0]);
    let subset: Vec<String> = text(p[1]).split(',').map(str::to_owned).collect();
    let hashes: Vec<u64> = p[2]
        .chunks(8)
        .map(|c| c.iter().fold(0u64, |a, b| a << 8 | u64::from(*b)))
        .collect();
    let q = PickQuery {
        model: &model,
        session: subset.first().map(String::as_str),
        subset: &subset,
        prompt_tokens: hashes.first().copied().unwrap_or(0),
        block_size: data.len(),
        hashes: &hashes,
        sheddable: data.len().is_multiple_of(2),
    };
    let wire = encode_pick(&q);
    if let Ok(back) = decode_pick(&wire) {
        // The wire carries 32 bits and saturates.
        assert_eq!(
            back.request.prompt_tokens,
            q.prompt_tokens.min(u64::from(u32::MAX))
        );
        assert_eq!(back.request.block_hashes.len(), hashes.len().min(1024));
        assert_eq!(back.request.sheddable, q.sheddable);
        assert!(model.starts_with(back.request.model.as_str()));
    }
    let _ = decode_served(&encode_served(&model, &hashes));
}

fn endpoint_picker_config(data: &[u8]) {
    let t = text(data);
    let _ = SchedulerConfig::parse(&t);
    for line in t.lines().take(16) {
        let _ = parse_duration(line);
    }
}

fn prometheus_text(data: &[u8]) {
    let t = text(data);
    let _ = parse_engine_metrics(&t);
    for line in t.lines().take(64) {
        if let Ok(s) = parse_sample(line) {
            let _ = s.label("model_name");
        }
    }
}

/// YAML documents rendered to plugin configurations and manifests (the gateway named when the
/// input asks for one: first line `#gateway <name>`).
fn policy_yaml(data: &[u8]) {
    let t = text(data);
    let mut bundle = Bundle::default();
    if bundle.add_yaml(&t, Path::new("fuzz.yaml")).is_err() {
        return;
    }
    let mut opts = Options::default();
    if let Some(first) = t.lines().next() {
        opts.gateway = first.strip_prefix("#gateway ").map(str::to_owned);
    }
    opts.endpoints = vec!["10.0.0.1:8000".into()];
    let _ = render(&bundle, &opts);
}
