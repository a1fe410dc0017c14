"""The `maillage` command line against the real services: a volunteer
imports a file with a progress bar and reads the rejected rows; staff
publish from the command line (`maillage publish …`), a volunteer lists the
suggestion and relays it (`maillage relay …`), the email reaches the SMTP
sink; errors name the field; --help teaches."""

from __future__ import annotations

import email
import email.policy
import os
import re
import subprocess
import sys

import httpx
import pytest

from tests.support.paths import ROOT
from tests.support.volunteer_accounts import new_volunteer
from tests.support.waiting import poll
from tools.stack import Ports, Stack, StackConfig


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    cfg = StackConfig(var=tmp_path_factory.mktemp("cli") / "var", ports=Ports.free())
    with Stack(cfg) as running:
        yield running


def run_cli(*args: str, env: dict[str, str] | None = None, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tools.cli", *args], cwd=ROOT, capture_output=True, text=True,
                          input=stdin, env={**os.environ, **(env or {})}, timeout=180)


def maillage(*args: str, token: str, url: str) -> subprocess.CompletedProcess:
    return run_cli(*args, env={"MAILLAGE_URL": url, "MAILLAGE_TOKEN": token})


def test_help_teaches_with_examples():
    out = subprocess.run([sys.executable, "-m", "tools.cli", "--help"], capture_output=True, text=True).stdout
    assert "maillage contacts import" in out and "MAILLAGE_TOKEN" in out
    out = subprocess.run([sys.executable, "-m", "tools.cli", "contacts", "import", "--help"],
                         capture_output=True, text=True).stdout
    assert "--map FIELD=COLUMN" in out and "rejected" in out


def test_import_shows_progress_and_the_rejected_rows(stack, tmp_path):
    cfg = stack.cfg
    url = cfg.url("contacts")
    with httpx.Client(timeout=10) as http:
        token = new_volunteer(http, cfg.provisioning_token, "Alice", "alice@benevoles.example", url).token
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


def test_help_teaches_relay_and_publish_with_examples():
    top = run_cli("--help").stdout
    assert "maillage relay send" in top and "maillage publish new" in top
    relay = run_cli("relay", "--help").stdout
    assert "maillage relay inbox" in relay and "Relaying twice sends nothing twice" in relay
    publish = run_cli("publish", "--help").stdout
    assert "MAILLAGE_STAFF_TOKEN" in publish and "--at 2026-12-01T09:00+01:00" in publish
    new = run_cli("publish", "new", "--help").stdout
    assert "--email-body-file FILE" in new and "Idempotency-Key" in new and "examples:" in new


def test_staff_publish_and_a_volunteer_relays_from_the_command_line(stack, tmp_path):
    cfg = stack.cfg
    staff = {"MAILLAGE_FEED_URL": cfg.url("feed"), "MAILLAGE_STAFF_TOKEN": cfg.staff_token}
    with httpx.Client(timeout=10) as http:
        volunteer = {"token": new_volunteer(http, cfg.provisioning_token, "Bob Nguyen", "bob@benevoles.example",
                                            cfg.url("contacts")).token}
    bob = {"MAILLAGE_URL": cfg.url("contacts"), "MAILLAGE_TOKEN": volunteer["token"]}
    added = httpx.post(f"{cfg.url('contacts')}/contacts", headers={"Authorization": f"Bearer {volunteer['token']}"},
                       json={"name": "Inès Moreau", "emails": ["ines.moreau@exemple.fr"], "interests": ["education"],
                             "consent": "confirmed", "consent_proof": "oui au marché"})
    assert added.status_code == 201, added.text

    # a post too long for X is refused, naming the field; nothing is published
    too_long = run_cli("publish", "new", "--title", "Trop long", "--body", "…", "--email-body", "…",
                        "--short", "é" * 290, env=staff)
    assert too_long.returncode != 0 and "error 422: variants.short.text" in too_long.stderr
    assert "X allows 280" in too_long.stderr
    no_zone = run_cli("publish", "new", "--title", "T", "--body", "b", "--email-body", "e",
                       "--at", "2026-12-01T09:00", env=staff)
    assert no_zone.returncode != 0 and "--at: give the time zone" in no_zone.stderr

    body = tmp_path / "ecoles.md"
    body.write_text("Réunion **publique** le 12 décembre.", encoding="utf-8")
    command = ("publish", "new", "--title", "Nos écoles méritent mieux", "--body-file", str(body),
               "--interest", "education", "--email-subject", "Réunion sur nos écoles",
               "--email-body-file", "-", "--short", "Réunion le 12/12", "--link", "https://campagne.example/e")
    first = run_cli(*command, env=staff, stdin="Rendez-vous le 12 décembre à 19 h.")
    assert first.returncode == 0, first.stderr
    message_id, state = first.stdout.split()[:2]
    assert state == "published"
    again = run_cli(*command, env=staff, stdin="Rendez-vous le 12 décembre à 19 h.")
    assert again.stdout.split()[0] == message_id, "the same command twice is one message"
    listed = run_cli("publish", "list", "--state", "published", env=staff).stdout
    assert listed.count("Nos écoles méritent mieux") == 1

    inbox = poll(lambda: run_cli("relay", "inbox", env=bob).stdout, lambda out: "Nos écoles" in out,
                 timeout=30, what="the suggestion")
    assert "fits 1 of your contacts: education — to relay" in inbox
    suggestion_id = inbox.split()[0]
    relayed = run_cli("relay", "send", suggestion_id, "--note", "Viens si tu peux !", "--wait", "--timeout", "30",
                      env=bob)
    assert relayed.returncode == 0, relayed.stderr
    assert re.search(r"email\s+done: 1 queued, 1 delivered, 0 failed", relayed.stdout), relayed.stdout
    assert re.search(r"facebook\s+share: https://www\.facebook\.com/sharer/", relayed.stdout)
    mails = list((cfg.var / "mail").glob("*.eml"))
    assert len(mails) == 1 and "ines.moreau@exemple.fr" in mails[0].read_text(errors="replace")
    received = email.message_from_bytes(mails[0].read_bytes(), policy=email.policy.default)
    assert "Viens si tu peux !" in received.get_body(("plain",)).get_content()
    relay_id = relayed.stdout.split()[1]
    assert "email     done" in run_cli("relay", "status", relay_id, env=bob).stdout

    reach = run_cli("publish", "reach", message_id, env=staff).stdout
    assert "volunteers asked < 5" in reach and "interest education:" in reach
    withdrawn = run_cli("publish", "withdraw", message_id, env=staff)
    assert withdrawn.returncode == 0 and "withdrawn" in withdrawn.stdout
    assert "Nos écoles" not in run_cli("relay", "inbox", env=bob).stdout

    missing = run_cli("relay", "send", "no-such-suggestion", env=bob)
    assert missing.returncode != 0 and "error 404: no such suggestion" in missing.stderr
    assert "no token" in run_cli("publish", "list", env={"MAILLAGE_STAFF_TOKEN": ""}).stderr
