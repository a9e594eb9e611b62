#!/usr/bin/env python3
"""Independent checks of fedilab's rendered manifests and shipped profiles.

Usage: check_manifests.py RENDERED.yaml... [--profiles DIR]

For each rendered file (multi-document YAML from `fedilab render`):
  * reads it with PyYAML, a YAML 1.1 reader like Kubernetes' own, and checks
    that every ConfigMap value and every container env value is still a
    string (YAML 1.1 turns unquoted yes/no/on/off and numbers into other
    types);
  * validates every object except k3s's helm.cattle.io ones against the
    Kubernetes 1.33 OpenAPI schema (kubernetes-validate, strict: unknown
    fields are errors);
  * checks what the schema cannot see in inspector routes (render
    --inspector-at): each EndpointSlice belongs to a selector-less Service
    of its name (kubernetes.io/service-name), is not claimed by Kubernetes'
    own controller, has an addressType that fits its addresses and no
    address the API server refuses (loopback, unspecified, link-local), and
    names the Service's ports; every Ingress backend is a Service of the
    render, on one of its ports.
With --profiles, validates every lab-profiles/*.yaml against schema.json.
Prints what it checked; exits 1 on the first file with problems.
"""

import glob
import ipaddress
import json
import os
import sys

import jsonschema
import kubernetes_validate
import yaml

K8S_VERSION = "1.33.0"


def containers(obj):
    spec = obj.get("spec") or {}
    template = spec.get("template") or {}
    if obj["kind"] in ("Deployment", "StatefulSet", "Job"):
        pod = template.get("spec") or {}
    else:
        return []
    return (pod.get("containers") or []) + (pod.get("initContainers") or [])


def string_problems(obj):
    where = f'{obj["kind"]}/{obj["metadata"].get("name")}'
    if obj["kind"] == "ConfigMap":
        for key, value in (obj.get("data") or {}).items():
            if not isinstance(value, str):
                yield f"{where}: data.{key} read as {type(value).__name__} {value!r}"
    for c in containers(obj):
        for e in c.get("env") or []:
            if "value" in e and not isinstance(e["value"], str):
                yield f'{where}: env {e["name"]} read as {type(e["value"]).__name__} {e["value"]!r}'


CONTROLLER = "endpointslice-controller.k8s.io"


def route_problems(docs):
    services = {(o["metadata"].get("namespace"), o["metadata"]["name"]): o
                for o in docs if o["kind"] == "Service"}
    for obj in docs:
        meta = obj["metadata"]
        ns = meta.get("namespace")
        where = f'{obj["kind"]}/{meta.get("name")}'
        if obj["kind"] == "EndpointSlice":
            labels = meta.get("labels") or {}
            svc = services.get((ns, labels.get("kubernetes.io/service-name")))
            if svc is None:
                yield f"{where}: kubernetes.io/service-name names no Service of the render"
                continue
            if (svc.get("spec") or {}).get("selector"):
                yield f"{where}: its Service has a selector, so the controller would manage its endpoints"
            if labels.get("endpointslice.kubernetes.io/managed-by") in (None, CONTROLLER):
                yield f"{where}: endpointslice.kubernetes.io/managed-by must be set, and not to {CONTROLLER}"
            family = {"IPv4": 4, "IPv6": 6}.get(obj.get("addressType"))
            for ep in obj.get("endpoints") or []:
                for text in ep.get("addresses") or []:
                    ip = ipaddress.ip_address(text)
                    if ip.version != family:
                        yield f"{where}: {text} does not fit addressType {obj.get('addressType')}"
                    if ip.is_loopback or ip.is_unspecified or ip.is_link_local or ip.is_multicast:
                        yield f"{where}: the API server refuses the endpoint address {text}"
                if (ep.get("conditions") or {}).get("ready") is not True:
                    yield f"{where}: endpoint not marked ready"
            svc_ports = {p.get("name") for p in svc["spec"].get("ports") or []}
            for p in obj.get("ports") or []:
                if p.get("name") not in svc_ports:
                    yield f"{where}: port {p.get('name')!r} is not a port name of its Service {sorted(svc_ports)}"
        if obj["kind"] == "Ingress":
            for rule in (obj.get("spec") or {}).get("rules") or []:
                for p in (rule.get("http") or {}).get("paths") or []:
                    backend = (p.get("backend") or {}).get("service") or {}
                    svc = services.get((ns, backend.get("name")))
                    if svc is None:
                        yield f"{where}: backend {backend.get('name')} is no Service of the render"
                        continue
                    number = (backend.get("port") or {}).get("number")
                    if number not in [sp.get("port") for sp in svc["spec"].get("ports") or []]:
                        yield f"{where}: backend {backend.get('name')} has no port {number}"


def check_rendered(path):
    with open(path, encoding="utf-8") as f:
        docs = [d for d in yaml.safe_load_all(f) if d is not None]
    problems, validated, skipped = [], 0, 0
    problems.extend(route_problems(docs))
    slices = sum(1 for o in docs if o["kind"] == "EndpointSlice")
    for obj in docs:
        problems.extend(string_problems(obj))
        if obj["apiVersion"].startswith("helm.cattle.io/"):
            skipped += 1
            continue
        try:
            kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
            validated += 1
        except kubernetes_validate.ValidationError as e:
            problems.append(f'{obj["kind"]}/{obj["metadata"].get("name")}: {e.message} at {list(e.path)}')
    print(f"{path}: {len(docs)} objects read with YAML 1.1, env and ConfigMap values all strings: "
          f"{'no' if any('read as' in p for p in problems) else 'yes'}; "
          f"{validated} validated against Kubernetes {K8S_VERSION} (strict), {skipped} helm.cattle.io skipped; "
          f"Ingress backends and {slices} inspector route(s) checked")
    return problems, validated


def check_profiles(directory):
    with open(os.path.join(directory, "schema.json"), encoding="utf-8") as f:
        schema = json.load(f)
    problems = []
    files = sorted(glob.glob(os.path.join(directory, "*.yaml")))
    for path in files:
        with open(path, encoding="utf-8") as f:
            profile = yaml.safe_load(f)
        for error in jsonschema.Draft202012Validator(schema).iter_errors(profile):
            problems.append(f"{path}: {error.message} at {list(error.path)}")
    print(f"{directory}: {len(files)} profiles validated against schema.json")
    return problems


def main(argv):
    args, profiles = [], None
    it = iter(argv)
    for a in it:
        if a == "--profiles":
            profiles = next(it)
        else:
            args.append(a)
    problems, total = [], 0
    for path in args:
        p, n = check_rendered(path)
        problems.extend(p)
        total += n
    if profiles:
        problems.extend(check_profiles(profiles))
    for p in problems:
        print(f"PROBLEM {p}")
    print(f"{total} objects validated in all; {len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
