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
    fields are errors).
With --profiles, validates every lab-profiles/*.yaml against schema.json.
Prints what it checked; exits 1 on the first file with problems.
"""

import glob
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


def check_rendered(path):
    with open(path, encoding="utf-8") as f:
        docs = [d for d in yaml.safe_load_all(f) if d is not None]
    problems, validated, skipped = [], 0, 0
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
          f"{validated} validated against Kubernetes {K8S_VERSION} (strict), {skipped} helm.cattle.io skipped")
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
