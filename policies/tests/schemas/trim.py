#!/usr/bin/env python3
"""Writes the trimmed upstream schemas in this folder (see README.md for sources and versions).

usage: trim.py ISTIO_CRDS EG_EEP_CRD K8S_SCHEMA_DIR
  ISTIO_CRDS      istio/istio manifests/charts/base/files/crd-all.gen.yaml
  EG_EEP_CRD      envoyproxy/gateway charts/gateway-helm/charts/crds/crds/generated/
                  gateway.envoyproxy.io_envoyextensionpolicies.yaml
  K8S_SCHEMA_DIR  kubernetes-validate's kubernetes-json-schema/v1.33.0-local-strict

Only the kinds `infergate-policies render` writes are kept; descriptions are dropped to keep
the files small. Nothing else is changed: the test adds kubectl's strict field validation.
"""
import json, sys, yaml, os

HERE = os.path.dirname(os.path.abspath(__file__))

def strip(v):
    if isinstance(v, dict):
        return {k: strip(x) for k, x in v.items() if k not in ("description", "$id")}
    if isinstance(v, list):
        return [strip(x) for x in v]
    return v

def crd(docs, group, kind, version, out):
    for d in docs:
        if d and d.get("kind") == "CustomResourceDefinition" and d["spec"]["group"] == group \
                and d["spec"]["names"]["kind"] == kind:
            for v in d["spec"]["versions"]:
                if v["name"] == version:
                    s = strip(v["schema"]["openAPIV3Schema"])
                    write(out, s)
                    return
    sys.exit(f"{group}/{version} {kind} not found")

def write(name, schema):
    with open(os.path.join(HERE, name), "w") as f:
        json.dump(schema, f, indent=1, sort_keys=True)
        f.write("\n")

def k8s(dir_, file_, out):
    defs = json.load(open(os.path.join(dir_, "_definitions.json")))["$defs"] \
        if "$defs" in json.load(open(os.path.join(dir_, "_definitions.json"))) \
        else json.load(open(os.path.join(dir_, "_definitions.json")))["definitions"]
    root = json.load(open(os.path.join(dir_, file_)))
    need, todo = {}, []
    def refs(v):
        if isinstance(v, dict):
            for k, x in v.items():
                if k == "$ref" and isinstance(x, str):
                    name = x.split("/")[-1]
                    v[k] = "#/$defs/" + name
                    if name not in need:
                        need[name] = None
                        todo.append(name)
                else:
                    refs(x)
        elif isinstance(v, list):
            for x in v:
                refs(x)
    root = strip(root)
    refs(root)
    while todo:
        n = todo.pop()
        d = strip(defs[n])
        refs(d)
        need[n] = d
    root["$defs"] = dict(sorted(need.items()))
    write(out, root)

istio = list(yaml.safe_load_all(open(sys.argv[1])))
crd(istio, "extensions.istio.io", "WasmPlugin", "v1alpha1", "wasmplugin.extensions.istio.io.v1alpha1.json")
crd(istio, "networking.istio.io", "EnvoyFilter", "v1alpha3", "envoyfilter.networking.istio.io.v1alpha3.json")
eg = list(yaml.safe_load_all(open(sys.argv[2])))
crd(eg, "gateway.envoyproxy.io", "EnvoyExtensionPolicy", "v1alpha1", "envoyextensionpolicy.gateway.envoyproxy.io.v1alpha1.json")
for f, out in [("deployment-apps-v1.json", "deployment.apps.v1.json"), ("service-v1.json", "service.v1.json"),
               ("configmap-v1.json", "configmap.v1.json"), ("serviceaccount-v1.json", "serviceaccount.v1.json"),
               ("role-rbac-v1.json", "role.rbac.authorization.k8s.io.v1.json"),
               ("rolebinding-rbac-v1.json", "rolebinding.rbac.authorization.k8s.io.v1.json")]:
    k8s(sys.argv[3], f, out)
