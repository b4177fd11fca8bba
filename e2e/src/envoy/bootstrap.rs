//! Envoy v3 bootstrap (JSON) from a [`GatewaySpec`].
//!
//! The model route goes to an ORIGINAL_DST cluster keyed on `x-gateway-destination-endpoint`,
//! the mechanism the Endpoint Picker Protocol specifies: Envoy connects to exactly the
//! `ip:port` in that header, which is why only the gateway may ever set it.

use super::spec::{ExtProcSpec, GatewaySpec, ListenerSpec, RouteSpec, WasmFilter, MODEL_CLUSTER};
use infergate_core::envoy_limits::{self, MODEL_STREAMS, SIDE_CALLS};
use infergate_core::headers::DESTINATION_ENDPOINT;
use serde_json::{json, Value};

/// Per-connection buffer limit of listeners and the model cluster (32 MiB).
pub const BUFFER_LIMIT_BYTES: u32 = 32 * 1024 * 1024;

/// Renders the bootstrap. The admin listener binds a free loopback port.
pub fn render(spec: &GatewaySpec) -> Value {
    let routes: Vec<RouteSpec> = if spec.routes.is_empty() {
        vec![RouteSpec {
            prefix: "/".to_string(),
            prefix_rewrite: None,
            cluster: MODEL_CLUSTER.to_string(),
        }]
    } else {
        spec.routes.clone()
    };
    let mut clusters = vec![model_cluster()];
    if let Some(r) = &spec.ring_hash {
        let endpoints: Vec<Value> = r
            .addresses
            .iter()
            .map(
                |a| json!({"endpoint": {"address": socket_address(&a.ip().to_string(), a.port())}}),
            )
            .collect();
        clusters.push(json!({
            "name": r.cluster,
            "type": "STATIC",
            "lb_policy": "RING_HASH",
            "connect_timeout": "1s",
            "circuit_breakers": MODEL_STREAMS.to_envoy(),
            "load_assignment": {"cluster_name": r.cluster, "endpoints": [{"lb_endpoints": endpoints}]},
        }));
    }
    for c in &spec.clusters {
        let endpoints: Vec<Value> = c
            .addresses
            .iter()
            .map(
                |a| json!({"endpoint": {"address": socket_address(&a.ip().to_string(), a.port())}}),
            )
            .collect();
        let mut cluster = json!({
            "name": c.name,
            "type": "STATIC",
            "connect_timeout": "1s",
            "circuit_breakers": SIDE_CALLS.to_envoy(),
            "load_assignment": {"cluster_name": c.name, "endpoints": [{"lb_endpoints": endpoints}]},
        });
        if c.http2 {
            cluster["typed_extension_protocol_options"] = json!({
                "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                    "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                    "explicit_http_config": {"http2_protocol_options": {}}
                }
            });
        }
        clusters.push(cluster);
    }
    json!({
        "admin": {"address": socket_address("127.0.0.1", 0)},
        "static_resources": {
            "listeners": spec
                .listeners
                .iter()
                .map(|l| listener(l, spec, &routes))
                .collect::<Vec<_>>(),
            "clusters": clusters,
        }
    })
}

fn socket_address(address: &str, port: u16) -> Value {
    json!({"socket_address": {"address": address, "port_value": port}})
}

fn model_cluster() -> Value {
    json!({
        "name": MODEL_CLUSTER,
        "type": "ORIGINAL_DST",
        "lb_policy": "CLUSTER_PROVIDED",
        "connect_timeout": "2s",
        "original_dst_lb_config": {
            "use_http_header": true,
            "http_header_name": DESTINATION_ENDPOINT
        },
        "cleanup_interval": "30s",
        "circuit_breakers": MODEL_STREAMS.to_envoy(),
        "per_connection_buffer_limit_bytes": BUFFER_LIMIT_BYTES
    })
}

fn listener(l: &ListenerSpec, spec: &GatewaySpec, routes: &[RouteSpec]) -> Value {
    let mut http_filters: Vec<Value> = spec
        .filters
        .iter()
        .map(|f| wasm_filter(f, spec.allow_on_headers_stop_iteration))
        .collect();
    if let Some(e) = &spec.ext_proc {
        http_filters.push(ext_proc_filter(e));
    }
    http_filters.push(json!({
        "name": "envoy.filters.http.router",
        "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}
    }));
    let hcm = json!({
        "name": "envoy.filters.network.http_connection_manager",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
            "stat_prefix": l.name,
            "codec_type": "AUTO",
            "route_config": {
                "name": "gateway",
                "virtual_hosts": [{
                    "name": "models",
                    "domains": ["*"],
    "routes": routes.iter().map(|r| route(r, spec)).collect::<Vec<_>>(),
                }]
            },
            "http_filters": http_filters,
            "local_reply_config": envoy_limits::overflow_local_reply(),
        }
    });
    let mut chain = json!({"filters": [hcm]});
    if let Some(tls) = &l.tls {
        chain["transport_socket"] = json!({
            "name": "envoy.transport_sockets.tls",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
                "common_tls_context": {
                    "tls_certificates": [{
                        "certificate_chain": {"filename": tls.cert_chain.display().to_string()},
                        "private_key": {"filename": tls.private_key.display().to_string()},
                    }],
                    "alpn_protocols": ["h2", "http/1.1"],
                }
            }
        });
    }
    json!({
        "name": l.name,
        "address": socket_address("127.0.0.1", l.port),
        // Filters that read the whole prompt buffer it: Envoy's 1 MiB default would answer
        // 413 to long-context requests before any plugin sees them.
        "per_connection_buffer_limit_bytes": BUFFER_LIMIT_BYTES,
        "filter_chains": [chain],
    })
}

fn route(r: &RouteSpec, spec: &GatewaySpec) -> Value {
    let mut action =
        json!({"cluster": r.cluster, "timeout": format!("{}s", spec.route_timeout_secs)});
    if let Some(rw) = &r.prefix_rewrite {
        action["prefix_rewrite"] = json!(rw);
    }
    if let Some(ring) = spec
        .ring_hash
        .as_ref()
        .filter(|ring| ring.cluster == r.cluster)
    {
        action["hash_policy"] = json!([{"header": {"header_name": ring.header}}]);
    }
    json!({"match": {"prefix": r.prefix}, "route": action})
}

/// The Endpoint Picker Protocol over ext_proc, with the processing mode and metadata
/// namespaces the Gateway API Inference Extension uses.
fn ext_proc_filter(e: &ExtProcSpec) -> Value {
    json!({
        "name": "envoy.filters.http.ext_proc",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.ext_proc.v3.ExternalProcessor",
            "grpc_service": {"envoy_grpc": {"cluster_name": e.cluster}, "timeout": "10s"},
            "failure_mode_allow": false,
            "message_timeout": "10s",
            "processing_mode": {
                "request_header_mode": "SEND",
                "request_body_mode": e.body_mode,
                "request_trailer_mode": "SEND",
                "response_header_mode": "SEND",
                "response_body_mode": "NONE",
                "response_trailer_mode": "SKIP"
            },
            "metadata_options": {
                "forwarding_namespaces": {"untyped": ["envoy.lb", "envoy.lb.subset_hint"]},
                "receiving_namespaces": {"untyped": ["envoy.lb"]}
            }
        }
    })
}

/// A plugin configuration told that the host allows holding headers: the field
/// [`infergate_core::header_hold::FIELD`] is added as the object's first member unless the
/// configuration already sets it (or is not a JSON object, which the plugin then refuses).
/// Textual, so the rest of the document (and the error a bad one gets) stays as written.
fn with_header_hold(config: &str) -> String {
    use infergate_core::header_hold::FIELD;
    let trimmed = config.trim_start();
    let Some(rest) = trimmed.strip_prefix('{') else {
        return config.to_string();
    };
    let is_object = serde_json::from_str::<Value>(config).is_ok_and(|v| v.is_object());
    if !is_object || config.contains(&format!("\"{FIELD}\"")) {
        return config.to_string();
    }
    let sep = if rest.trim_start().starts_with('}') {
        ""
    } else {
        ","
    };
    format!("{{\"{FIELD}\":true{sep}{rest}")
}

fn wasm_filter(f: &WasmFilter, allow_on_headers_stop_iteration: bool) -> Value {
    let config = if allow_on_headers_stop_iteration {
        with_header_hold(&f.config)
    } else {
        f.config.clone()
    };
    let mut filter = json!({
        "name": "envoy.filters.http.wasm",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
            "config": {
                "name": format!("infergate-{}", f.name),
                "root_id": "",
                "vm_config": {
                    "vm_id": format!("infergate-{}", f.name),
                    "runtime": "envoy.wasm.runtime.v8",
                    "code": {"local": {"filename": f.wasm.display().to_string()}},
                },
                "configuration": {
                    "@type": "type.googleapis.com/google.protobuf.StringValue",
                    "value": config,
                },
                // A plugin that traps fails closed for that request and Envoy starts a fresh
                // VM for the next ones (README "Wasm VM failure policy").
                "failure_policy": "FAIL_RELOAD",
            }
        }
    });
    if allow_on_headers_stop_iteration {
        // Our filters hold request headers while they read the body (to choose the
        // destination, estimate tokens): without this Envoy turns StopIteration into
        // StopAllIteration and never calls the body callback. Envoy 1.34 rejects the field.
        filter["typed_config"]["config"]["allow_on_headers_stop_iteration"] = json!(true);
    }
    filter
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    #[test]
    fn header_hold_sets_envoy_field_and_plugin_field_together() {
        let f = WasmFilter {
            name: "auth".into(),
            wasm: PathBuf::from("/a.wasm"),
            config: r#"{"methods":[]}"#.into(),
        };
        let on = wasm_filter(&f, true);
        let config = &on["typed_config"]["config"];
        assert_eq!(config["allow_on_headers_stop_iteration"], true);
        let plugin: Value =
            serde_json::from_str(config["configuration"]["value"].as_str().unwrap()).unwrap();
        assert_eq!(plugin["allowOnHeadersStopIteration"], true);
        assert_eq!(plugin["methods"], json!([]));
        let off = wasm_filter(&f, false);
        let config = &off["typed_config"]["config"];
        assert!(config.get("allow_on_headers_stop_iteration").is_none());
        assert_eq!(config["configuration"]["value"], r#"{"methods":[]}"#);
        // An explicit choice, an empty object and a non-object are handled as written.
        let explicit = r#"{"allowOnHeadersStopIteration":false}"#;
        assert_eq!(with_header_hold(explicit), explicit);
        assert_eq!(
            with_header_hold(" {}"),
            r#"{"allowOnHeadersStopIteration":true}"#
        );
        assert_eq!(with_header_hold("[1]"), "[1]");
        assert_eq!(with_header_hold("{bad"), "{bad");
    }

    #[test]
    fn renders_chain_in_order_and_original_dst_cluster() {
        let spec = GatewaySpec::default()
            .with_filter(WasmFilter {
                name: "auth".into(),
                wasm: PathBuf::from("/a.wasm"),
                config: "{}".into(),
            })
            .with_filter(WasmFilter {
                name: "affinity".into(),
                wasm: PathBuf::from("/b.wasm"),
                config: r#"{"endpoints":[]}"#.into(),
            });
        let b = render(&spec);
        let filters = &b["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
            ["typed_config"]["http_filters"];
        assert_eq!(
            filters[0]["typed_config"]["config"]["name"],
            "infergate-auth"
        );
        assert_eq!(
            filters[1]["typed_config"]["config"]["name"],
            "infergate-affinity"
        );
        assert_eq!(
            filters[1]["typed_config"]["config"]["configuration"]["value"],
            r#"{"allowOnHeadersStopIteration":true,"endpoints":[]}"#
        );
        assert_eq!(filters[2]["name"], "envoy.filters.http.router");
        let cluster = &b["static_resources"]["clusters"][0];
        assert_eq!(cluster["type"], "ORIGINAL_DST");
        assert_eq!(
            cluster["original_dst_lb_config"]["http_header_name"],
            DESTINATION_ENDPOINT
        );
    }

    #[test]
    fn every_cluster_has_circuit_breakers_and_overflow_is_answered_in_json() {
        let spec = GatewaySpec {
            clusters: vec![super::super::spec::ClusterSpec {
                name: "host-shim".into(),
                addresses: vec!["127.0.0.1:9000".parse().unwrap()],
                http2: true,
            }],
            ring_hash: Some(super::super::spec::RingHashSpec {
                cluster: "ring".into(),
                addresses: vec!["127.0.0.1:9001".parse().unwrap()],
                header: "x-hint".into(),
            }),
            ..GatewaySpec::default()
        };
        let b = render(&spec);
        let clusters = b["static_resources"]["clusters"].as_array().unwrap();
        assert_eq!(clusters.len(), 3);
        for c in clusters {
            let max = &c["circuit_breakers"]["thresholds"][0]["max_requests"];
            assert!(max.as_u64().unwrap() >= 4096, "{}", c["name"]);
        }
        let hcm = &b["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
            ["typed_config"];
        assert_eq!(hcm["local_reply_config"]["mappers"][0]["status_code"], 503);
    }
}
