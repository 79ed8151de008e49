#!/usr/bin/env bash
# Validates the deployment files without deploying them: the systemd unit (systemd-analyze verify, and its
# sandbox exposure score), the Dockerfile (hadolint), the Kubernetes manifests (YAML parse, and strict schema
# validation against the Kubernetes API versions k3s and KubeEdge clusters run). There is no Docker daemon
# or cluster here: the image is not built and nothing is applied (see docs/serve.md, "What is validated").
# Needs .venv-deploy with deploy/lint-requirements.txt (scripts/setup-test-tools.sh creates it).
set -euo pipefail
cd "$(dirname "$0")/.."
venv=.venv-deploy
[ -x "$venv/bin/hadolint" ] || { echo "check: $venv is missing; run scripts/setup-test-tools.sh" >&2; exit 1; }

echo "== systemd unit"
if command -v systemd-analyze >/dev/null; then
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    # verify wants ExecStart= to exist: point it at a stand-in executable in a copy of the unit.
    printf '#!/bin/sh\n' >"$tmp/deepedge" && chmod +x "$tmp/deepedge"
    sed "s#/usr/local/bin/deepedge#$tmp/deepedge#" deploy/systemd/deepedge.service >"$tmp/deepedge.service"
    systemd-analyze verify --man=no "$tmp/deepedge.service"
    # Fails when the overall exposure is above 2.0 (systemd's "OK" band ends at 3.9).
    systemd-analyze security --offline=yes --threshold=20 "$tmp/deepedge.service" | tail -n 1
else
    echo "check: systemd-analyze is not installed (Debian package systemd)" >&2
    exit 1
fi

echo "== Dockerfile"
"$venv/bin/hadolint" deploy/Dockerfile && echo "hadolint: no findings"

echo "== Kubernetes manifests"
"$venv/bin/python" - deploy/k8s/*.yaml <<'PY'
import pathlib
import sys

import yaml
for path in sys.argv[1:]:
    docs = [d for d in yaml.safe_load_all(open(path)) if d is not None]
    assert docs, f"{path}: no YAML document"
    for d in docs:
        if d.get("kind") == "Kustomization":
            for res in d["resources"]:
                assert (pathlib.Path(path).parent / res).is_file(), f"{path}: no file {res}"
            continue
        assert {"apiVersion", "kind", "metadata"} <= d.keys(), f"{path}: not a Kubernetes object"
print(f"yaml: {len(sys.argv) - 1} files parse")
PY
manifests=(deploy/k8s/namespace.yaml deploy/k8s/deployment.yaml deploy/k8s/service.yaml
           deploy/k8s/pvc-models.example.yaml deploy/k8s/secret-api-key.example.yaml)
for version in 1.30.0 1.37.0; do
    "$venv/bin/kubernetes-validate" --strict --quiet -k "$version" "${manifests[@]}"
    echo "kubernetes-validate --strict $version: ${#manifests[@]} manifests pass"
done
echo "deploy/check.sh: all passed"
