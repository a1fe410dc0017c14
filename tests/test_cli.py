"""The `maillage` command line against the real services: a volunteer
imports a file with a progress bar and reads the rejected rows."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tools.stack import Ports, Stack, StackConfig

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    cfg = StackConfig(var=tmp_path_factory.mktemp("cli") / "var", ports=Ports.free())
    with Stack(cfg) as running:
        yield running


def maillage(*args: str, token: str, url: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tools.cli", *args], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "MAILLAGE_URL": url, "MAILLAGE_TOKEN": token}, timeout=120)


def test_help_teaches_with_examples():
    out = subprocess.run([sys.executable, "-m", "tools.cli", "--help"], capture_output=True, text=True).stdout
    assert "maillage contacts import" in out and "MAILLAGE_TOKEN" in out
    out = subprocess.run([sys.executable, "-m", "tools.cli", "contacts", "import", "--help"],
                         capture_output=True, text=True).stdout
    assert "--map FIELD=COLUMN" in out and "rejected" in out


def test_import_shows_progress_and_the_rejected_rows(stack, tmp_path):
    cfg = stack.cfg
    url = cfg.url("contacts")
    token = httpx.post(f"{url}/admin/volunteers", headers={"Authorization": f"Bearer {cfg.provisioning_token}"},
                       json={"display_name": "Alice", "email": "alice@benevoles.example"}).json()["token"]
    csv = tmp_path / "contacts.csv"
    rows = ["First Name,Last Name,E-mail Address,Mobile Phone,Categories"]  # Outlook's export
    rows += [f"Contact,{i},contact{i}@exemple.fr,,education" for i in range(300)]
    rows += ["Sans,Adresse,pas-une-adresse,,transport"]
    csv.write_text("\n".join(rows) + "\n", encoding="utf-8")

    first = maillage("contacts", "import", str(csv), token=token, url=url)
    assert first.returncode == 0, first.stderr
    assert "301 rows: 300 imported, 0 merged, 0 unchanged, 1 rejected" in first.stdout
    assert "row 301:" in first.stdout and "pas-une-adresse" in first.stdout
    assert "100%" in first.stderr  # the progress bar reached the end

    again = maillage("contacts", "import", str(csv), token=token, url=url)
    assert "301 rows: 0 imported, 0 merged, 300 unchanged, 1 rejected" in again.stdout

    listed = maillage("contacts", "list", "--search", "contact 29", token=token, url=url)
    assert "contact29@exemple.fr" in listed.stdout and "contact30@" not in listed.stdout


def test_errors_name_the_problem(stack, tmp_path):
    url = stack.cfg.url("contacts")
    bad = maillage("contacts", "list", token="not-a-token", url=url)
    assert bad.returncode != 0 and "401" in bad.stderr
    missing = maillage("contacts", "import", str(tmp_path / "nope.csv"), token="x", url=url)
    assert "no such file" in missing.stderr
