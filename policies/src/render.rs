//! Puts it together: the plugin configurations, the Istio / Envoy Gateway manifests that run
//! them, the ORIGINAL_DST cluster patch, host-shim's manifests and a demo configuration.

use crate::auth::{self, Upstream};
use crate::error::{Error, Result};
use crate::manifests::*;
use crate::options::Options;
use crate::ratelimit;
use crate::resources::{str_at, Bundle, Object};
use crate::topology::Topology;
use infergate_core::envoy_limits;
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// Envoy cluster of host-shim's pick API.
pub const HOST_SHIM_CLUSTER: &str = "infergate-host-shim";
/// The ORIGINAL_DST cluster that sends each request to `x-gateway-destination-endpoint`.
pub const ORIGINAL_DST_CLUSTER: &str = "infergate-model-servers";
/// host-shim's HTTP (pick API) port.
pub const HOST_SHIM_HTTP_PORT: u16 = 9003;
/// host-shim's gRPC (ext_proc EPP) port.
pub const HOST_SHIM_GRPC_PORT: u16 = 9002;

/// Where each plugin sits: Istio phase and priority (AUTHN → AUTHZ → STATS gives
/// auth → ratelimit → affinity before the router).
pub const CHAIN: [(&str, &str, i32); 3] = [
    ("auth", "AUTHN", 1000),
    ("ratelimit", "AUTHZ", 1000),
    ("affinity", "STATS", 1000),
];

/// Everything rendered.
#[derive(Debug, Clone)]
pub struct Rendered {
    /// `(namespace, name)` of the Gateway.
    pub gateway: (String, String),
    /// Plugin configurations in chain order (`auth`, `ratelimit`, `affinity`; absent ones
    /// left out).
    pub plugins: Vec<(String, Value)>,
    /// The EndpointPickerConfig text host-shim runs with, when one was given.
    pub epp_config: Option<String>,
    /// Model served (for the demo).
    pub model: String,
    /// Pod replicas (for the demo).
    pub replicas: u32,
    /// Route prefix rewritten to `/` (for the demo).
    pub route_prefix: Option<String>,
    /// Output files: relative path → content.
    pub files: BTreeMap<String, String>,
}

impl Rendered {
    /// A plugin's configuration.
    pub fn plugin(&self, name: &str) -> Option<&Value> {
        self.plugins.iter().find(|(n, _)| n == name).map(|(_, v)| v)
    }
}

/// The inference pool being served: from an InferencePool, an LLMInferenceService, or both.
#[derive(Debug, Clone)]
struct Pool {
    namespace: String,
    name: String,
    selector: BTreeMap<String, String>,
    port: u16,
    model: Option<String>,
    replicas: Option<u32>,
    epp: Option<String>,
    route_prefix: Option<String>,
}

fn pool(bundle: &Bundle) -> Result<Option<Pool>> {
    let mut out: Option<Pool> = None;
    for isvc in bundle.of_kind("LLMInferenceService") {
        let spec = &isvc.doc["spec"];
        let mut epp = None;
        for c in spec
            .pointer("/router/scheduler/template/containers")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
        {
            let args: Vec<&str> = c["args"]
                .as_array()
                .map(|a| a.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            if let Some(i) = args.iter().position(|a| *a == "--config-text") {
                epp = args.get(i + 1).map(|s| s.to_string());
            }
        }
        out = Some(Pool {
            namespace: isvc.meta.ns().into(),
            name: format!("{}-inference-pool", isvc.meta.name),
            selector: BTreeMap::from([(
                "app.kubernetes.io/name".to_string(),
                isvc.meta.name.clone(),
            )]),
            port: 8000,
            model: str_at(spec, "/model/name").map(str::to_string),
            replicas: spec["replicas"].as_u64().map(|r| r as u32),
            epp,
            route_prefix: Some(format!("/{}/{}/", isvc.meta.ns(), isvc.meta.name)),
        });
    }
    for p in bundle.of_kind("InferencePool") {
        let spec = &p.doc["spec"];
        // v1: selector.matchLabels, targetPorts[].number; v1alpha2: selector map, targetPortNumber.
        let sel = spec["selector"]
            .get("matchLabels")
            .unwrap_or(&spec["selector"]);
        let selector: BTreeMap<String, String> = serde_json::from_value(sel.clone())
            .map_err(|e| Error::new(p.id(), "spec.selector", e.to_string()))?;
        let port = spec
            .pointer("/targetPorts/0/number")
            .or_else(|| spec.get("targetPortNumber"))
            .and_then(Value::as_u64)
            .unwrap_or(8000) as u16;
        let prev = out.take();
        out = Some(Pool {
            namespace: p.meta.ns().into(),
            name: p.meta.name.clone(),
            selector,
            port,
            model: prev.as_ref().and_then(|x| x.model.clone()),
            replicas: prev.as_ref().and_then(|x| x.replicas),
            epp: prev.as_ref().and_then(|x| x.epp.clone()),
            route_prefix: prev.and_then(|x| x.route_prefix),
        });
    }
    let epps: Vec<&Object> = bundle.of_kind("EndpointPickerConfig").collect();
    if let Some(e) = epps.first() {
        let text =
            serde_yaml::to_string(&e.doc).map_err(|x| Error::new(e.id(), ".", x.to_string()))?;
        match &mut out {
            Some(p) => p.epp = Some(text),
            None => {
                out = Some(Pool {
                    namespace: e.meta.ns().into(),
                    name: "inference-pool".into(),
                    selector: BTreeMap::new(),
                    port: 8000,
                    model: None,
                    replicas: None,
                    epp: Some(text),
                    route_prefix: None,
                })
            }
        }
    }
    if epps.len() > 1 {
        return Err(Error::new(
            epps[1].id(),
            ".",
            "only one EndpointPickerConfig per gateway",
        ));
    }
    // host-shim must be able to run it: check with its own parser, naming the field.
    if let Some(text) = out.as_ref().and_then(|p| p.epp.as_deref()) {
        let source = epps.first().map(|e| e.id()).unwrap_or_else(|| {
            bundle
                .of_kind("LLMInferenceService")
                .last()
                .map(|o| format!("{} (router.scheduler --config-text)", o.id()))
                .unwrap_or_default()
        });
        host_shim::scheduler::config::SchedulerConfig::parse(text)
            .map_err(|e| Error::new(source, e.path, e.message))?;
    }
    Ok(out)
}

/// Renders the Gateway's policies.
pub fn render(bundle: &Bundle, opts: &Options) -> Result<Rendered> {
    let topo = Topology::build(bundle, opts.gateway.as_deref())?;
    let gw_ns = topo.gateway.meta.ns().to_string();
    let gw_name = topo.gateway.meta.name.clone();
    let auth = auth::translate(bundle, &topo, opts)?;
    let rl = ratelimit::translate(bundle, &topo)?;
    let pool = pool(bundle)?;

    let mut plugins: Vec<(String, Value)> = Vec::new();
    if let Some(a) = &auth {
        check::<infergate_core::auth::AuthConfig>("auth", &a.config)?;
        plugins.push(("auth".into(), a.config.clone()));
    }
    if let Some(r) = &rl {
        let v = serde_json::to_value(r).map_err(|e| Error::new("ratelimit", ".", e.to_string()))?;
        check::<infergate_core::ratelimit::config::RateLimitConfig>("ratelimit", &v)?;
        plugins.push(("ratelimit".into(), v));
    }
    // Where host-shim's ext_proc routes (the no-hold platforms), no affinity plugin is rendered,
    // so no pod address is needed: host-shim finds the pods through the InferencePool.
    let affinity_rendered = opts
        .platform
        .is_none_or(|p| p.plan().routing != crate::platform::Routing::ExtProcPicker);
    if let Some(p) = pool.as_ref().filter(|_| affinity_rendered) {
        if opts.endpoints.is_empty() {
            return Err(Error::new(
                format!("InferencePool {}/{}", p.namespace, p.name),
                "affinity.endpoints",
                "the affinity plugin needs the pods' addresses as its fallback when host-shim is unreachable: pass --endpoints ip:port,…",
            ));
        }
        let mut shim = json!({"cluster": HOST_SHIM_CLUSTER});
        // With flow control on a pick may wait in host-shim's queue: the callout outlasts it.
        if let Some(Ok(epp)) = p
            .epp
            .as_deref()
            .map(host_shim::scheduler::config::SchedulerConfig::parse)
        {
            let source = format!("EndpointPickerConfig of {}/{}", p.namespace, p.name);
            if let Some(ms) = epp
                .flow_control
                .plugin_callout_ms()
                .map_err(|e| Error::new(source, e.path, e.message))?
            {
                shim["timeoutMs"] = json!(ms);
            }
        }
        let v = json!({"endpoints": opts.endpoints, "hostShim": shim,
            infergate_core::header_hold::FIELD: true});
        check::<infergate_core::affinity::AffinityConfig>("affinity", &v)?;
        plugins.push(("affinity".into(), v));
    }
    if let Some(p) = opts.platform {
        crate::platform::apply(&p.plan(), &mut plugins);
    }
    if plugins.is_empty() {
        return Err(Error::new(format!("Gateway {gw_ns}/{gw_name}"), ".", "no AuthPolicy, RateLimitPolicy, TokenRateLimitPolicy, InferencePool or EndpointPickerConfig applies to this Gateway"));
    }

    let route_prefix = topo
        .units
        .iter()
        .find_map(|u| {
            u.rewrite
                .as_ref()
                .filter(|(_, to)| to == "/")
                .map(|(p, _)| format!("{}/", p.trim_end_matches('/')))
        })
        .or_else(|| pool.as_ref().and_then(|p| p.route_prefix.clone()));
    let model = pool
        .as_ref()
        .and_then(|p| p.model.clone())
        .unwrap_or_else(|| "Qwen/Qwen3-0.6B".into());
    let replicas = pool.as_ref().and_then(|p| p.replicas).unwrap_or(2);

    let target = TargetRef {
        group: "gateway.networking.k8s.io".into(),
        kind: "Gateway".into(),
        name: gw_name.clone(),
    };
    let meta = |name: &str| ObjectMeta {
        name: name.into(),
        namespace: gw_ns.clone(),
        labels: BTreeMap::from([(
            "app.kubernetes.io/part-of".to_string(),
            "infergate".to_string(),
        )]),
    };
    let image = |p: &str| format!("oci://{}", opts.images.plugin(p));
    let mut files = BTreeMap::new();
    for (name, cfg) in &plugins {
        files.insert(
            format!("plugins/{name}.json"),
            serde_json::to_string_pretty(cfg).unwrap_or_default() + "\n",
        );
    }

    // Istio WasmPlugin form.
    let wasm_plugins: Vec<WasmPlugin> = plugins
        .iter()
        .map(|(name, cfg)| {
            let (_, phase, priority) = CHAIN
                .iter()
                .find(|(n, _, _)| n == name)
                .copied()
                .unwrap_or(("", "STATS", 0));
            WasmPlugin {
                api_version: "extensions.istio.io/v1alpha1".into(),
                kind: "WasmPlugin".into(),
                metadata: meta(&format!("infergate-{name}")),
                spec: WasmPluginSpec {
                    target_refs: vec![target.clone()],
                    url: image(name),
                    sha256: opts.images.plugin_manifest_sha256(name),
                    phase: phase.into(),
                    priority,
                    fail_strategy: "FAIL_CLOSE".into(),
                    ty: "HTTP".into(),
                    vm_config: None,
                    plugin_config: cfg.clone(),
                },
            }
        })
        .collect();
    files.insert(
        "istio/wasmplugins.yaml".into(),
        "# WasmPlugin cannot set `allow_on_headers_stop_iteration: true`, which the plugins need to\n# hold request headers while reading the body: prefer envoyfilter-wasm.yaml on Istio.\n".to_string() + &yaml_docs(&wasm_plugins),
    );

    // Istio EnvoyFilter form (the Wasm filters with the settings WasmPlugin cannot express).
    let wasm_patches: Vec<ConfigPatch> = plugins
        .iter()
        .map(|(name, cfg)| ConfigPatch {
            apply_to: "HTTP_FILTER".into(),
            matcher: json!({"context": "GATEWAY", "listener": {"filterChain": {"filter": {
                "name": "envoy.filters.network.http_connection_manager",
                "subFilter": {"name": "envoy.filters.http.router"}}}}}),
            patch: Patch {
                operation: "INSERT_BEFORE".into(),
                value: json!({
                    "name": format!("infergate-{name}"),
                    "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
                        "config": {
                            "name": format!("infergate-{name}"),
                            "root_id": "",
                            "vm_config": {
                                "vm_id": format!("infergate-{name}"),
                                "runtime": "envoy.wasm.runtime.v8",
                                "code": crate::wasm_files::code(name, &gw_ns, &opts.images),
                            },
                            "configuration": {"@type": "type.googleapis.com/google.protobuf.StringValue", "value": cfg.to_string()},
                            // A trap fails that request closed; the next gets a fresh VM.
                            "failure_policy": "FAIL_RELOAD",
                            "allow_on_headers_stop_iteration": true,
                        }
                    }
                }),
            },
        })
        .collect();
    let mut wasm_patches = wasm_patches;
    if opts.platform == Some(crate::platform::Platform::Istio127) {
        for p in &mut wasm_patches {
            crate::platform::typed_struct(&mut p.patch.value);
        }
    }
    if let Some(p) = opts.platform {
        files.insert("PLATFORM.md".into(), crate::platform::readme(p));
    }
    let ef = |name: &str, patches: Vec<ConfigPatch>| EnvoyFilter {
        api_version: "networking.istio.io/v1alpha3".into(),
        kind: "EnvoyFilter".into(),
        metadata: meta(name),
        spec: EnvoyFilterSpec {
            target_refs: vec![target.clone()],
            config_patches: patches,
        },
    };
    let mut cluster_patches = vec![add_cluster(&crate::wasm_files::upstream(&gw_ns))];
    if pool.is_some() {
        cluster_patches.push(ConfigPatch {
            apply_to: "CLUSTER".into(),
            matcher: json!({"context": "GATEWAY"}),
            patch: Patch {
                operation: "ADD".into(),
                value: json!({
                    "name": ORIGINAL_DST_CLUSTER,
                    "type": "ORIGINAL_DST",
                    "lb_policy": "CLUSTER_PROVIDED",
                    "connect_timeout": "5s",
                    "circuit_breakers": envoy_limits::MODEL_STREAMS.to_envoy(),
                    "per_connection_buffer_limit_bytes": 33554432,
                    "original_dst_lb_config": {"use_http_header": true, "http_header_name": "x-gateway-destination-endpoint"},
                }),
            },
        });
        for l in topo.gateway.doc["spec"]["listeners"]
            .as_array()
            .cloned()
            .unwrap_or_default()
        {
            if let Some(port) = l["port"].as_u64() {
                cluster_patches.push(ConfigPatch {
                    apply_to: "HTTP_ROUTE".into(),
                    matcher: json!({"context": "GATEWAY", "routeConfiguration": {"portNumber": port, "vhost": {"route": {"action": "ROUTE"}}}}),
                    patch: Patch { operation: "MERGE".into(), value: json!({"route": {"cluster": ORIGINAL_DST_CLUSTER}}) },
                });
            }
        }
        let p = pool
            .as_ref()
            .map(|p| (p.namespace.clone(), p.name.clone()))
            .unwrap_or_default();
        let mut shim = add_cluster(&Upstream {
            name: HOST_SHIM_CLUSTER.into(),
            host: format!("{}-host-shim.{}.svc.cluster.local", p.1, p.0),
            port: HOST_SHIM_HTTP_PORT,
            tls: false,
        });
        // host-shim speaks HTTP/2 cleartext: picks share one multiplexed connection per
        // worker (measured ~20 µs less Envoy CPU per pick than HTTP/1.1 in bench-gateway).
        shim.patch.value["typed_extension_protocol_options"] = json!({
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                "explicit_http_config": {"http2_protocol_options": {}}}});
        cluster_patches.push(shim);
    }
    if auth.as_ref().is_some_and(|a| a.uses_kube) {
        cluster_patches.push(add_cluster(&Upstream {
            name: opts.kube_cluster.clone(),
            host: opts.kube_authority.clone(),
            port: 443,
            tls: true,
        }));
    }
    for u in auth
        .as_ref()
        .map(|a| a.upstreams.clone())
        .unwrap_or_default()
    {
        cluster_patches.push(add_cluster(&u));
    }
    files.insert(
        "istio/envoyfilter-wasm.yaml".into(),
        yaml_docs(&[ef("infergate-wasm", wasm_patches)]),
    );
    files.insert(
        "istio/wasm-files.yaml".into(),
        crate::wasm_files::manifests(&gw_ns, &opts.images),
    );
    cluster_patches.push(overflow_reply_patch());
    files.insert(
        "istio/envoyfilter-clusters.yaml".into(),
        yaml_docs(&[ef("infergate-clusters", cluster_patches)]),
    );

    // Envoy Gateway.
    let eep = EnvoyExtensionPolicy {
        api_version: "gateway.envoyproxy.io/v1alpha1".into(),
        kind: "EnvoyExtensionPolicy".into(),
        metadata: meta("infergate"),
        spec: ExtensionPolicySpec {
            target_refs: vec![target.clone()],
            wasm: plugins
                .iter()
                .map(|(name, cfg)| EgWasm {
                    name: format!("infergate-{name}"),
                    root_id: String::new(),
                    code: match opts.images.plugin_manifest_sha256(name) {
                        Some(sha) => json!({"type": "Image", "image": {"url": opts.images.plugin(name), "sha256": sha}}),
                        None => json!({"type": "Image", "image": {"url": opts.images.plugin(name)}}),
                    },
                    config: cfg.clone(),
                    fail_open: false,
                })
                .collect(),
        },
    };
    files.insert(
        "envoy-gateway/envoyextensionpolicy.yaml".into(),
        "# Envoy Gateway does not expose `allow_on_headers_stop_iteration`; the affinity and token\n# limits need it (see the README), so add it with an EnvoyPatchPolicy on the generated filters.\n".to_string() + &yaml_docs(&[eep]),
    );

    // host-shim.
    if let Some(p) = &pool {
        let shim = crate::shim_deploy::ShimPool {
            namespace: &p.namespace,
            name: &p.name,
            group: crate::shim_deploy::pool_group(bundle),
            epp_config: p.epp.as_deref(),
            selector: &p.selector,
            port: p.port,
        };
        files.insert(
            "host-shim/host-shim.yaml".into(),
            crate::shim_deploy::manifests(&shim, opts),
        );
    }

    // Demo (e2e/demo/gateway.yaml format).
    let mut demo_plugins = serde_json::Map::new();
    for (name, cfg) in &plugins {
        // The launcher fills the pods it starts and its own host-shim.
        let cfg = if name == "affinity" {
            json!({})
        } else {
            cfg.clone()
        };
        demo_plugins.insert(name.clone(), cfg);
    }
    let mut demo = json!({
        "model": model, "pods": replicas, "httpsPort": 8443, "httpPort": 8080, "concurrency": 1,
        "users": [], "plugins": demo_plugins,
    });
    if let Some(r) = &route_prefix {
        demo["routePrefix"] = json!(r);
    }
    files.insert(
        "demo.yaml".into(),
        format!("# Rendered by infergate-policies from Gateway {gw_ns}/{gw_name}. Run: make demo DEMO_CONFIG=<this file>\n# Call it with the API keys of your Secrets: the plugin configs hold only their SHA-256 digests.\n{}", serde_yaml::to_string(&demo).unwrap_or_default()),
    );

    Ok(Rendered {
        gateway: (gw_ns, gw_name),
        plugins,
        epp_config: pool.and_then(|p| p.epp),
        model,
        replicas,
        route_prefix,
        files,
    })
}

fn check<T: serde::de::DeserializeOwned + infergate_core::config::Validate>(
    plugin: &str,
    v: &Value,
) -> Result<()> {
    infergate_core::config::parse::<T>(v.to_string().as_bytes())
        .map(|_| ())
        .map_err(|e| {
            Error::new(
                format!("rendered {plugin} configuration"),
                e.path,
                e.message,
            )
        })
}

/// Envoy answers a circuit-breaker overflow with an OpenAI error and `Retry-After`
/// ([`envoy_limits::overflow_local_reply`]), not its plain-text page.
fn overflow_reply_patch() -> ConfigPatch {
    ConfigPatch {
        apply_to: "NETWORK_FILTER".into(),
        matcher: json!({"context": "GATEWAY", "listener": {"filterChain": {"filter": {
            "name": "envoy.filters.network.http_connection_manager"}}}}),
        patch: Patch {
            operation: "MERGE".into(),
            value: json!({"typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                "local_reply_config": envoy_limits::overflow_local_reply()}}),
        },
    }
}

fn add_cluster(u: &Upstream) -> ConfigPatch {
    let mut v = json!({
        "name": u.name,
        "type": "STRICT_DNS",
        "connect_timeout": "5s",
        "circuit_breakers": envoy_limits::SIDE_CALLS.to_envoy(),
        "load_assignment": {"cluster_name": u.name, "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {"socket_address": {"address": u.host, "port_value": u.port}}}}]}]},
    });
    if u.tls {
        v["transport_socket"] = json!({"name": "envoy.transport_sockets.tls", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext", "sni": u.host}});
    }
    ConfigPatch {
        apply_to: "CLUSTER".into(),
        matcher: json!({"context": "GATEWAY"}),
        patch: Patch {
            operation: "ADD".into(),
            value: v,
        },
    }
}

/// Writes the rendered files under `dir`.
pub fn write(r: &Rendered, dir: &std::path::Path) -> std::io::Result<()> {
    for (rel, content) in &r.files {
        let path = dir.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(path, content)?;
    }
    Ok(())
}
