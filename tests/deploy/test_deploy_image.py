"""The image, checked without building it (no Docker engine here): the
Dockerfile passes hadolint (from PyPI, offline), builds a slim multi-stage
image that runs as the same non-root user as the pods, and every command a
workload runs exists in the package and accepts its arguments."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.manifests import OVERLAYS, WORKLOADS, containers, of_kind
from tests.support.paths import ROOT

BIN = Path(sys.executable).parent
DOCKERFILE = (ROOT / "Dockerfile").read_text()


def hadolint(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run([BIN / "hadolint", "--no-color", "--failure-threshold", "style", str(path)],
                          capture_output=True, text=True, timeout=60)


def test_hadolint_finds_nothing_and_would_find_something(tmp_path):
    clean = hadolint(ROOT / "Dockerfile")
    assert clean.returncode == 0, clean.stdout + clean.stderr
    sloppy = tmp_path / "Dockerfile"
    sloppy.write_text("FROM python:latest\nRUN pip install fastapi\nUSER root\nCMD python -m services.feed\n")
    found = hadolint(sloppy)
    assert found.returncode != 0 and "DL3007" in found.stdout  # the `latest` tag


def test_multi_stage_slim_and_non_root_as_the_pods_expect():
    stages = re.findall(r"^FROM (\S+)", DOCKERFILE, re.M)
    assert len(stages) >= 2 and stages[-1].endswith("-slim-bookworm")
    assert re.findall(r"^USER (\S+)", DOCKERFILE, re.M)[-1] == "10001:10001"
    for obj in of_kind("prod", *WORKLOADS):
        assert obj["spec"]["template"]["spec"]["securityContext"]["runAsUser"] == 10001
    # the code the commands import is copied in; nothing else is sent to the build
    for package in ("shared", "services", "tools"):
        assert f"COPY {package} ./{package}" in DOCKERFILE
    ignore = (ROOT / ".dockerignore").read_text()
    assert "**" in ignore.splitlines() and "!services/" in ignore


def commands() -> set[tuple[str, ...]]:
    found = set()
    for overlay in OVERLAYS:
        for obj in of_kind(overlay, *WORKLOADS):
            for c in containers(obj):
                assert c["args"][:2] == ["python", "-m"], c["args"]
                found.add(tuple(c["args"][2:]))
    return found


@pytest.mark.slow  # starts a Python process per workload command
def test_every_workload_command_exists_and_accepts_its_arguments():
    seen = commands()
    assert ("services.dispatch", "email") in seen and ("tools.migrate", "feed") in seen
    for module, *args in seen:
        runnable = f"{module}.__main__" if importlib.util.find_spec(module).submodule_search_locations else module
        assert importlib.util.find_spec(runnable), module
        if args:  # the real argument parser accepts them (its --help exits before anything runs)
            done = subprocess.run([sys.executable, "-m", module, *args, "--help"], cwd=ROOT,
                                  capture_output=True, text=True, timeout=60)
            assert done.returncode == 0, (module, args, done.stderr)


@pytest.mark.parametrize("argv", [["services.dispatch", "fax"], ["tools.migrate", "matcher"]])
def test_a_wrong_argument_is_refused(argv):
    done = subprocess.run([sys.executable, "-m", *argv], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "invalid choice" in done.stderr
