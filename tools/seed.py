"""Demo data, through the services' own HTTP APIs: three volunteers with
their contacts and one campaign message. Safe to run again: accounts are
keyed by email, contacts by address (409 means "already there"), and the
message by its Idempotency-Key.

The demo volunteers join as real ones do: provisioning creates the account
and its invitation, the volunteer redeems it (provisioning never chooses or
sees a token). Their tokens are kept in var/demo-volunteers.json, so a
second run prints the same ones; if that file is lost while the database
is kept, the volunteer asks for a sign-in link and the seeder reads it from
the local mail sink (var/mail), as the volunteer would from their inbox."""

from __future__ import annotations

import email
import email.policy
import json
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

TOKENS_FILE = "demo-volunteers.json"


@dataclass(frozen=True)
class DemoVolunteer:
    name: str
    email: str
    contacts: tuple[tuple[str, str, tuple[str, ...], str], ...]  # name, email, interests, consent


VOLUNTEERS = (
    DemoVolunteer("Alice Martin", "alice@benevoles.example", (
        ("Camille Durand", "camille.durand@exemple.fr", ("education", "transport"), "confirmed"),
        ("Louis Petit", "louis.petit@exemple.fr", ("seniors",), "confirmed"),
        ("Chloé Bernard", "chloe.bernard@exemple.fr", ("education",), "unknown"),
    )),
    DemoVolunteer("Bob Nguyen", "bob@benevoles.example", (
        ("Inès Moreau", "ines.moreau@exemple.fr", ("education",), "confirmed"),
        ("Hugo Laurent", "hugo.laurent@exemple.fr", ("transport",), "confirmed"),
    )),
    DemoVolunteer("Fatou Diallo", "fatou@benevoles.example", (
        ("Jeanne Roux", "jeanne.roux@exemple.fr", ("seniors", "health"), "confirmed"),
    )),
)

DEMO_MESSAGE = {
    "title": "Nos écoles méritent mieux",
    "body": "Le 12 décembre, réunion publique sur la rénovation des écoles du quartier.",
    "interests": ["education"],
    "variants": {
        "email": {
            "subject": "Réunion publique sur nos écoles, le 12 décembre",
            "body": "Le 12 décembre à 19 h, salle des fêtes : venez parler de la rénovation "
                    "des écoles du quartier. Je serai là, et j'aimerais t'y voir.",
        },
        "short": {"text": "Réunion publique sur nos écoles le 12 décembre, 19 h, salle des fêtes."},
    },
}


def expect(resp: httpx.Response, *ok: int) -> httpx.Response:
    if resp.status_code not in ok:
        raise RuntimeError(f"{resp.request.method} {resp.request.url}: {resp.status_code} {resp.text}")
    return resp


def sign_in_link_from(mail: Path, address: str, after_ns: int, timeout: float = 30.0) -> str:
    """The code of the newest sign-in link mailed to ``address`` after
    ``after_ns`` (the sink names each .eml by its arrival time)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for path in sorted(mail.glob("*.eml"), reverse=True):
            if int(path.stem) < after_ns:
                break
            msg = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
            if address in str(msg["To"]):
                body = msg.get_body(("plain",))
                found = re.search(r"/join#([\w-]+)", body.get_content()) if body is not None else None
                if found:
                    return found.group(1)
        time.sleep(0.2)
    raise RuntimeError(f"no sign-in link reached {address} in {mail} within {timeout:.0f}s")


def volunteer_token(http: httpx.Client, contacts_url: str, provisioning_token: str, vol: DemoVolunteer,
                    kept: str | None, mail: Path | None) -> str:
    """The demo volunteer's token: the one kept from a previous run if it
    still works, else a new account's (invitation, redeemed), else, for an
    account whose token was lost, one from a sign-in link."""
    if kept and http.get(f"{contacts_url}/me", headers={"Authorization": f"Bearer {kept}"}).status_code == 200:
        return kept
    made = expect(http.post(f"{contacts_url}/admin/volunteers", json={"display_name": vol.name, "email": vol.email},
                            headers={"Authorization": f"Bearer {provisioning_token}"}), 201, 409)
    if made.status_code == 201:
        code = made.json()["code"]
    elif mail is None:
        raise RuntimeError(f"{vol.email} has an account whose token is lost, and there is no mail folder to "
                           "receive a sign-in link")
    else:
        asked = time.time_ns()
        expect(http.post(f"{contacts_url}/auth/recover", json={"email": vol.email}), 202)
        code = sign_in_link_from(mail, vol.email, asked)
    return expect(http.post(f"{contacts_url}/auth/redeem", json={"code": code}), 200).json()["token"]


def seed(feed_url: str, contacts_url: str, staff_token: str, provisioning_token: str,
         var: Path | None = None) -> dict:
    """``var``: where the demo tokens are kept between runs (and var/mail,
    the local sink, where a lost one is recovered from)."""
    kept_file = var / TOKENS_FILE if var else None
    kept = json.loads(kept_file.read_text()) if kept_file and kept_file.exists() else {}
    tokens: dict[str, str] = {}
    with httpx.Client(timeout=30.0) as http:
        for vol in VOLUNTEERS:
            token = tokens[vol.email] = volunteer_token(http, contacts_url, provisioning_token, vol,
                                                        kept.get(vol.email), var / "mail" if var else None)
            if kept_file:  # after each: a failure further on must not lose a token just issued
                kept_file.parent.mkdir(parents=True, exist_ok=True)
                kept_file.write_text(json.dumps({**kept, **tokens}, indent=2))
                os.chmod(kept_file, 0o600)  # bearer tokens: the owner's eyes only
            auth = {"Authorization": f"Bearer {token}"}
            for name, address, interests, consent in vol.contacts:
                expect(http.post(f"{contacts_url}/contacts", json={
                    "name": name, "emails": [address], "interests": list(interests), "consent": consent,
                    "consent_proof": "demo data: agreed in person" if consent == "confirmed" else None,
                }, headers=auth), 201, 409)
            expect(http.put(f"{contacts_url}/me/profile", json={"shared_interests": None}, headers=auth), 200)
        message = expect(http.post(
            f"{feed_url}/messages",
            json=DEMO_MESSAGE,
            headers={"Authorization": f"Bearer {staff_token}", "Idempotency-Key": "demo-message-1"},
        ), 200, 201).json()
    return {"message_id": message["id"], "volunteers": {v.name: tokens[v.email] for v in VOLUNTEERS}}
