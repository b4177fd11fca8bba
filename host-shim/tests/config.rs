//! `EndpointPickerConfig` acceptance and rejection.

use host_shim::scheduler::config::SchedulerConfig;

/// The deployment guide's `--config-text`, verbatim.
const GUIDE: &str = "apiVersion: inference.networking.x-k8s.io/v1alpha1
kind: EndpointPickerConfig
plugins:
- type: queue-scorer
- type: kv-cache-utilization-scorer
- type: prefix-cache-scorer
schedulingProfiles:
- name: default
  plugins:
  - pluginRef: queue-scorer
    weight: 2
  - pluginRef: kv-cache-utilization-scorer
    weight: 2
  - pluginRef: prefix-cache-scorer
    weight: 3
";

fn err(text: &str) -> (String, String) {
    let e = SchedulerConfig::parse(text).unwrap_err();
    (e.path, e.message)
}

#[test]
fn guide_config_is_accepted_verbatim() {
    let c = SchedulerConfig::parse(GUIDE).unwrap();
    let scorers: Vec<(&str, f64)> = c
        .scorers
        .iter()
        .map(|s| (s.scorer.type_name(), s.weight))
        .collect();
    assert_eq!(
        scorers,
        [
            ("queue-scorer", 2.0),
            ("kv-cache-utilization-scorer", 2.0),
            ("prefix-cache-scorer", 3.0)
        ]
    );
    assert_eq!(c.picker.type_name(), "max-score-picker");
    assert_eq!(c.hasher, infergate_core::prefix::BlockHasher::default());
}

#[test]
fn the_guide_as_embedded_in_the_deployment_yaml_is_accepted() {
    // As it appears under `- --config-text` / `- |` in the guide, indented 16 spaces.
    let indented: String = GUIDE
        .lines()
        .map(|l| format!("                {l}\n"))
        .collect();
    let doc = format!("args:\n  - --config-text\n  - |\n{indented}");
    let v: serde_yaml::Value = serde_yaml::from_str(&doc).unwrap();
    let text = v["args"][1].as_str().unwrap();
    assert!(SchedulerConfig::parse(text).is_ok());
}

#[test]
fn llm_d_api_version_with_parameters_and_json() {
    let yaml = "apiVersion: llm-d.ai/v1alpha1
kind: EndpointPickerConfig
plugins:
- type: single-profile-handler
- type: prefix-cache-scorer
  name: prefix
  parameters:
    hashBlockSize: 128
    maxPrefixBlocksToMatch: 64
    lruCapacityPerServer: 31250
- type: load-aware-scorer
  parameters:
    threshold: 64
- type: session-affinity-scorer
- type: least-queue-filter
- type: max-score-picker
  parameters:
    maxNumOfEndpoints: 1
schedulingProfiles:
- name: default
  plugins:
  - pluginRef: least-queue-filter
  - pluginRef: prefix
    weight: 3
  - pluginRef: load-aware-scorer
    weight: 1
  - pluginRef: session-affinity-scorer
    weight: 1
  - pluginRef: max-score-picker
saturationDetector:
  queueDepthThreshold: 8
  kvCacheUtilThreshold: 0.9
  metricsStalenessThreshold: 500ms
featureGates: []
";
    let c = SchedulerConfig::parse(yaml).unwrap();
    assert_eq!(c.hasher.block_size, 128);
    assert_eq!(c.hasher.max_blocks, 64);
    assert_eq!(c.sizing.default_blocks, 31250);
    assert_eq!(c.filters.len(), 1);
    assert_eq!(c.scorers.len(), 3);
    assert_eq!(c.saturation.queue_depth, 8);
    assert_eq!(c.staleness, std::time::Duration::from_millis(500));

    let json = r#"{"apiVersion":"llm-d.ai/v1alpha1","kind":"EndpointPickerConfig",
      "plugins":[{"type":"kv-cache-scorer"}],
      "schedulingProfiles":[{"name":"default","plugins":[{"pluginRef":"kv-cache-scorer","weight":1}]}]}"#;
    assert_eq!(SchedulerConfig::parse(json).unwrap().scorers.len(), 1);
}

#[test]
fn malformed_configs_name_the_field() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "apiVersion: v1\nkind: EndpointPickerConfig\nschedulingProfiles: []\n",
            "apiVersion",
            "not supported",
        ),
        (
            "apiVersion: llm-d.ai/v1alpha1\nkind: Pod\n",
            "kind",
            "EndpointPickerConfig",
        ),
        (
            "apiVersion: llm-d.ai/v1alpha1\nkind: EndpointPickerConfig\nplugins:\n- type: queue-scorer\n- type: magic-scorer\n",
            "plugins[1].type",
            "unknown plugin type `magic-scorer`",
        ),
        (
            "apiVersion: llm-d.ai/v1alpha1\nkind: EndpointPickerConfig\nplugins:\n- type: queue-scorer\nschedulingProfiles:\n- name: default\n  plugins:\n  - pluginRef: queue-scorer\n  - pluginRef: prefix-cache-scorer\n",
            "schedulingProfiles[0].plugins[1].pluginRef",
            "no plugin named `prefix-cache-scorer`",
        ),
        (
            "apiVersion: llm-d.ai/v1alpha1\nkind: EndpointPickerConfig\nplugins:\n- type: queue-scorer\nschedulingProfiles:\n- name: default\n  plugins:\n  - pluginRef: queue-scorer\n    weight: two\n",
            "schedulingProfiles[0].plugins[0].weight",
            "",
        ),
        (
            "apiVersion: llm-d.ai/v1alpha1\nkind: EndpointPickerConfig\nplugins:\n- type: queue-scorer\nschedulingProfiles:\n- name: default\n  plugins:\n  - pluginRef: queue-scorer\n    weight: -1\n",
            "schedulingProfiles[0].plugins[0].weight",
            "≥ 0",
        ),
        (
            "apiVersion: llm-d.ai/v1alpha1\nkind: EndpointPickerConfig\nplugins:\n- type: prefix-cache-scorer\n  parameters:\n    hashBlockSize: 0\nschedulingProfiles:\n- name: d\n  plugins:\n  - pluginRef: prefix-cache-scorer\n",
            "plugins[0].parameters.hashBlockSize",
            "greater than 0",
        ),
        (
            "apiVersion: llm-d.ai/v1alpha1\nkind: EndpointPickerConfig\nplugins:\n- type: prefix-cache-scorer\n  parameters:\n    blockSizee: 16\n",
            "plugins[0].parameters.blockSizee",
            "unknown field",
        ),
        (
            "apiVersion: llm-d.ai/v1alpha1\nkind: EndpointPickerConfig\nplugin:\n- type: queue-scorer\n",
            "plugin",
            "unknown field",
        ),
        (
            "apiVersion: llm-d.ai/v1alpha1\nkind: EndpointPickerConfig\nplugins:\n- type: queue-scorer\n",
            "schedulingProfiles",
            "at least one",
        ),
        (
            "apiVersion: llm-d.ai/v1alpha1\nkind: EndpointPickerConfig\nplugins:\n- type: queue-scorer\n- type: queue-scorer\n",
            "plugins[1].name",
            "used twice",
        ),
        (
            "apiVersion: llm-d.ai/v1alpha1\nkind: EndpointPickerConfig\nplugins:\n- type: max-score-picker\nschedulingProfiles:\n- name: d\n  plugins:\n  - pluginRef: max-score-picker\n    weight: 2\n",
            "schedulingProfiles[0].plugins[0].weight",
            "only scorers",
        ),
        (
            "apiVersion: llm-d.ai/v1alpha1\nkind: EndpointPickerConfig\nplugins:\n- type: queue-scorer\nschedulingProfiles:\n- name: prefill\n  plugins: []\n- name: decode\n  plugins: []\n",
            "schedulingProfiles",
            "single profile",
        ),
        (
            "apiVersion: llm-d.ai/v1alpha1\nkind: EndpointPickerConfig\nplugins:\n- type: queue-scorer\nschedulingProfiles:\n- name: d\n  plugins:\n  - pluginRef: queue-scorer\nsaturationDetector:\n  metricsStalenessThreshold: soon\n",
            "saturationDetector.metricsStalenessThreshold",
            "soon",
        ),
        ("   \n", ".", "empty"),
        ("{[", ".", ""),
    ];
    for (text, path, needle) in cases {
        let (p, m) = err(text);
        assert_eq!(&p, path, "for config:\n{text}\nmessage: {m}");
        assert!(m.contains(needle), "`{m}` lacks `{needle}` for:\n{text}");
    }
}
