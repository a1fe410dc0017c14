"""`make run`'s launcher: ready, seeded, idempotent on a second run, and
leaves no process behind when interrupted."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.paths import ROOT

# `make run` as a user runs it: the whole system as processes.
pytestmark = [pytest.mark.slow, pytest.mark.nats]


def processes_mentioning(marker: str) -> list[str]:
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if marker in cmdline:
            found.append(f"{pid}: {cmdline}")
    return found


def children_of(parent: int) -> list[int]:
    kids = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                stat = Path(f"/proc/{pid}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == parent:
                kids.append(int(pid))
    return kids


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def launch(var: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "tools.run", "--free-ports", "--var", str(var), *extra],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )


def test_run_is_ready_seeded_and_idempotent(tmp_path: Path):
    """The demo volunteers join by invitation (provisioning never chooses a
    token): a second run prints the same tokens, kept in var/; with that
    file lost, the seeder recovers each account by its emailed sign-in link
    (through the local sink), which revokes the old token."""
    var = tmp_path / "var"
    printed = []
    for attempt in (1, 2, 3):
        if attempt == 3:
            (var / "demo-volunteers.json").unlink()
        proc = launch(var, "--ready-only")
        out, _ = proc.communicate(timeout=120)
        assert proc.returncode == 0, f"run {attempt} failed:\n{out}"
        assert "Maillage is up" in out and "already in use" not in out, out
        alice = re.search(r"Alice Martin\s+(vol_[\w-]{40,})", out)
        assert alice, out
        printed.append(alice.group(1))
    assert printed[0] == printed[1], "a second run must keep the demo tokens"
    assert printed[2] != printed[0], "a lost token is replaced through a sign-in link, not re-used"
    assert any((var / "nats").rglob("*")), "JetStream keeps its data under var/nats"
    assert processes_mentioning(str(var)) == []


def test_ctrl_c_stops_every_process_it_started(tmp_path: Path):
    var = tmp_path / "var"
    proc = launch(var, "--no-seed")
    try:
        deadline = time.monotonic() + 90
        lines = []
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            lines.append(line)
            if "Maillage is up" in line or not line:
                break
        assert "Maillage is up" in "".join(lines), "".join(lines)
        children = children_of(proc.pid)
        assert len(children) == 9, children  # nats, the sink, four services, three social dispatchers
        proc.send_signal(signal.SIGINT)
        assert proc.wait(60) == 0
        time.sleep(0.5)
        assert [pid for pid in children if alive(pid)] == []
    finally:
        if proc.poll() is None:  # a failed assertion must not leave the system running
            proc.send_signal(signal.SIGINT)
            proc.wait(60)
