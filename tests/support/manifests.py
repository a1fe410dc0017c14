"""The Kubernetes manifests as kustomize renders each overlay (deploy/k8s),
read as objects: the deploy checks' common ground."""

from __future__ import annotations

import subprocess
import sys
from functools import cache
from pathlib import Path

import yaml

from tests.support.paths import ROOT

BIN = Path(sys.executable).parent
OVERLAYS = sorted(p.name for p in (ROOT / "deploy/k8s/overlays").iterdir() if p.is_dir())
WORKLOADS = {"Deployment", "StatefulSet"}


@cache
def rendered(overlay: str) -> str:
    done = subprocess.run([BIN / "kubectl", "kustomize", str(ROOT / "deploy/k8s/overlays" / overlay)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


def objects(overlay: str) -> list[dict]:
    return [d for d in yaml.safe_load_all(rendered(overlay)) if d]


def of_kind(overlay: str, *kinds: str) -> list[dict]:
    return [o for o in objects(overlay) if o["kind"] in kinds]


def containers(obj: dict) -> list[dict]:
    spec = obj["spec"]["template"]["spec"]
    return spec.get("initContainers", []) + spec["containers"]


def env_of(container: dict) -> dict[str, dict]:
    return {e["name"]: e for e in container.get("env", [])}
