"""`maillage publish …` (staff) and `maillage relay …` (volunteers) against
the whole system started as `make run` starts it: staff publish from the
command line, a volunteer lists the suggestion and relays it, the email
reaches the SMTP sink; errors name the field; --help teaches."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.waiting import poll
from tools.stack import Ports, Stack, StackConfig

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    cfg = StackConfig(var=tmp_path_factory.mktemp("cli-relay") / "var", ports=Ports.free())
    with Stack(cfg) as running:
        yield running


def maillage(*args: str, env: dict[str, str] | None = None, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tools.cli", *args], cwd=ROOT, capture_output=True, text=True,
                          input=stdin, env={**os.environ, **(env or {})}, timeout=180)


def test_help_teaches_relay_and_publish_with_examples():
    top = maillage("--help").stdout
    assert "maillage relay send" in top and "maillage publish new" in top
    relay = maillage("relay", "--help").stdout
    assert "maillage relay inbox" in relay and "Relaying twice sends nothing twice" in relay
    publish = maillage("publish", "--help").stdout
    assert "MAILLAGE_STAFF_TOKEN" in publish and "--at 2026-12-01T09:00+01:00" in publish
    new = maillage("publish", "new", "--help").stdout
    assert "--email-body-file FILE" in new and "Idempotency-Key" in new and "examples:" in new


def test_staff_publish_and_a_volunteer_relays_from_the_command_line(stack, tmp_path):
    cfg = stack.cfg
    staff = {"MAILLAGE_FEED_URL": cfg.url("feed"), "MAILLAGE_STAFF_TOKEN": cfg.staff_token}
    volunteer = httpx.post(f"{cfg.url('contacts')}/admin/volunteers",
                           headers={"Authorization": f"Bearer {cfg.provisioning_token}"},
                           json={"display_name": "Alice Martin", "email": "alice@benevoles.example"}).json()
    alice = {"MAILLAGE_URL": cfg.url("contacts"), "MAILLAGE_TOKEN": volunteer["token"]}
    added = httpx.post(f"{cfg.url('contacts')}/contacts", headers={"Authorization": f"Bearer {volunteer['token']}"},
                       json={"name": "Inès Moreau", "emails": ["ines.moreau@exemple.fr"], "interests": ["education"],
                             "consent": "confirmed", "consent_proof": "oui au marché"})
    assert added.status_code == 201, added.text

    # a post too long for X is refused, naming the field; nothing is published
    too_long = maillage("publish", "new", "--title", "Trop long", "--body", "…", "--email-body", "…",
                        "--short", "é" * 290, env=staff)
    assert too_long.returncode != 0 and "error 422: variants.short.text" in too_long.stderr
    assert "X allows 280" in too_long.stderr
    no_zone = maillage("publish", "new", "--title", "T", "--body", "b", "--email-body", "e",
                       "--at", "2026-12-01T09:00", env=staff)
    assert no_zone.returncode != 0 and "--at: give the time zone" in no_zone.stderr

    body = tmp_path / "ecoles.md"
    body.write_text("Réunion **publique** le 12 décembre.", encoding="utf-8")
    command = ("publish", "new", "--title", "Nos écoles méritent mieux", "--body-file", str(body),
               "--interest", "education", "--email-subject", "Réunion sur nos écoles",
               "--email-body-file", "-", "--short", "Réunion le 12/12", "--link", "https://campagne.example/e")
    first = maillage(*command, env=staff, stdin="Rendez-vous le 12 décembre à 19 h.")
    assert first.returncode == 0, first.stderr
    message_id, state = first.stdout.split()[:2]
    assert state == "published"
    again = maillage(*command, env=staff, stdin="Rendez-vous le 12 décembre à 19 h.")
    assert again.stdout.split()[0] == message_id, "the same command twice is one message"
    listed = maillage("publish", "list", "--state", "published", env=staff).stdout
    assert listed.count("Nos écoles méritent mieux") == 1

    inbox = poll(lambda: maillage("relay", "inbox", env=alice).stdout, lambda out: "Nos écoles" in out,
                 timeout=30, what="the suggestion")
    assert "fits 1 of your contacts: education — to relay" in inbox
    suggestion_id = inbox.split()[0]
    relayed = maillage("relay", "send", suggestion_id, "--wait", "--timeout", "30", env=alice)
    assert relayed.returncode == 0, relayed.stderr
    assert re.search(r"email\s+done: 1 queued, 1 delivered, 0 failed", relayed.stdout), relayed.stdout
    assert re.search(r"facebook\s+share: https://www\.facebook\.com/sharer/", relayed.stdout)
    mails = list((cfg.var / "mail").glob("*.eml"))
    assert len(mails) == 1 and "ines.moreau@exemple.fr" in mails[0].read_text(errors="replace")
    relay_id = relayed.stdout.split()[1]
    assert "email     done" in maillage("relay", "status", relay_id, env=alice).stdout

    reach = maillage("publish", "reach", message_id, env=staff).stdout
    assert "volunteers asked < 5" in reach and "interest education:" in reach
    withdrawn = maillage("publish", "withdraw", message_id, env=staff)
    assert withdrawn.returncode == 0 and "withdrawn" in withdrawn.stdout
    assert "Nos écoles" not in maillage("relay", "inbox", env=alice).stdout

    missing = maillage("relay", "send", "no-such-suggestion", env=alice)
    assert missing.returncode != 0 and "error 404: no such suggestion" in missing.stderr
    assert "no token" in maillage("publish", "list", env={"MAILLAGE_STAFF_TOKEN": ""}).stderr
