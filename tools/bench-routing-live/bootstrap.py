import json,sys
# bootstrap.py WASM HOST_SHIM_PORT LISTEN_PORT ENDPOINTS [ADMIN_PORT]
wasm, shim_port, listen = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
admin = int(sys.argv[5]) if len(sys.argv) > 5 else 0
cfg = json.dumps({"endpoints": sys.argv[4].split(","), "hostShim": {"cluster": "host-shim"}, "allowOnHeadersStopIteration": True})
b = {"admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin}}},
 "static_resources": {"listeners": [{"name": "http", "address": {"socket_address": {"address": "127.0.0.1", "port_value": listen}},
   "per_connection_buffer_limit_bytes": 33554432,
   "filter_chains": [{"filters": [{"name": "envoy.filters.network.http_connection_manager", "typed_config": {
     "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
     "stat_prefix": "http", "codec_type": "AUTO",
     "route_config": {"name": "g", "virtual_hosts": [{"name": "m", "domains": ["*"], "routes": [{"match": {"prefix": "/"}, "route": {"cluster": "model-servers", "timeout": "0s"}}]}]},
     "http_filters": [{"name": "envoy.filters.http.wasm", "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm", "config": {
        "name": "infergate-affinity", "root_id": "", "vm_config": {"vm_id": "infergate-affinity", "runtime": "envoy.wasm.runtime.v8", "code": {"local": {"filename": wasm}}},
        "configuration": {"@type": "type.googleapis.com/google.protobuf.StringValue", "value": cfg}, "fail_open": False, "allow_on_headers_stop_iteration": True}}},
       {"name": "envoy.filters.http.router", "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}]}}]}]}],
 "clusters": [{"name": "model-servers", "type": "ORIGINAL_DST", "lb_policy": "CLUSTER_PROVIDED", "connect_timeout": "2s",
   "original_dst_lb_config": {"use_http_header": True, "http_header_name": "x-gateway-destination-endpoint"},
   "circuit_breakers": {"thresholds": [{"max_connections": 16384, "max_pending_requests": 16384, "max_requests": 16384}]}},
  {"name": "host-shim", "type": "STATIC", "connect_timeout": "1s", "load_assignment": {"cluster_name": "host-shim", "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": shim_port}}}}]}]},
   "circuit_breakers": {"thresholds": [{"max_connections": 16384, "max_pending_requests": 16384, "max_requests": 16384}]},
   "typed_extension_protocol_options": {"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {"@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions", "explicit_http_config": {"http2_protocol_options": {}}}}}]}}
print(json.dumps(b))
