//! Flow control and the affinity plugin's pick callout: with `flowControl` on, the rendered
//! plugin waits for a pick longer than a request may wait in host-shim's queue, and a queue the
//! plugin cannot wait for is refused naming the field.

mod common;

use common::*;

fn epp(flow: &str) -> String {
    format!(
        "apiVersion: inference.networking.x-k8s.io/v1alpha1\nkind: EndpointPickerConfig\n\
         metadata: {{name: epp, namespace: ns}}\nplugins:\n- type: queue-scorer\n\
         schedulingProfiles:\n- name: default\n  plugins:\n  - pluginRef: queue-scorer\n{flow}"
    )
}

fn timeout_ms(flow: &str) -> Option<u64> {
    let r = render_yaml(&format!("{TOPOLOGY}---\n{}", epp(flow))).unwrap();
    r.plugin("affinity").unwrap()["hostShim"]["timeoutMs"].as_u64()
}

#[test]
fn the_pick_callout_outlasts_the_queue() {
    // Off: the plugin's default callout.
    assert_eq!(timeout_ms(""), None);
    // On (section or feature gate): the TTL plus the margin.
    assert_eq!(
        timeout_ms("flowControl: {defaultRequestTTL: 2s}\n"),
        Some(2500)
    );
    assert_eq!(timeout_ms("featureGates: [flowControl]\n"), Some(5500));
    assert_eq!(
        timeout_ms("featureGates: [flowControl=false]\nflowControl: {defaultRequestTTL: 2s}\n"),
        None
    );
}

#[test]
fn a_queue_longer_than_the_plugin_can_wait_is_refused_naming_the_field() {
    let e = render_yaml(&format!(
        "{TOPOLOGY}---\n{}",
        epp("flowControl: {defaultRequestTTL: 30s}\n")
    ))
    .unwrap_err();
    assert_eq!(e.field, "flowControl.defaultRequestTTL", "{e}");
    assert!(e.message.contains("10000"), "{e}");
    // A malformed section is refused by host-shim's own parser, naming the field.
    let e = render_yaml(&format!(
        "{TOPOLOGY}---\n{}",
        epp("flowControl: {maxBytes: lots}\n")
    ))
    .unwrap_err();
    assert_eq!(e.field, "flowControl.maxBytes", "{e}");
}
