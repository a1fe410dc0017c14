"""Demo data, through the services' own HTTP APIs: three volunteers with
their contacts and one campaign message. Safe to run again: accounts are
keyed by email, contacts by address (409 means "already there"), and the
message by its Idempotency-Key."""

from __future__ import annotations

from dataclasses import dataclass

import httpx


@dataclass(frozen=True)
class DemoVolunteer:
    name: str
    email: str
    token: str
    contacts: tuple[tuple[str, str, tuple[str, ...], str], ...]  # name, email, interests, consent


VOLUNTEERS = (
    DemoVolunteer("Alice Martin", "alice@benevoles.example", "demo-volunteer-alice-0123456789", (
        ("Camille Durand", "camille.durand@exemple.fr", ("education", "transport"), "confirmed"),
        ("Louis Petit", "louis.petit@exemple.fr", ("seniors",), "confirmed"),
        ("Chloé Bernard", "chloe.bernard@exemple.fr", ("education",), "unknown"),
    )),
    DemoVolunteer("Bob Nguyen", "bob@benevoles.example", "demo-volunteer-bob-0123456789", (
        ("Inès Moreau", "ines.moreau@exemple.fr", ("education",), "confirmed"),
        ("Hugo Laurent", "hugo.laurent@exemple.fr", ("transport",), "confirmed"),
    )),
    DemoVolunteer("Fatou Diallo", "fatou@benevoles.example", "demo-volunteer-fatou-0123456789", (
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


def seed(feed_url: str, contacts_url: str, staff_token: str, provisioning_token: str) -> dict:
    with httpx.Client(timeout=30.0) as http:
        for vol in VOLUNTEERS:
            expect(http.post(
                f"{contacts_url}/admin/volunteers",
                json={"display_name": vol.name, "email": vol.email, "token": vol.token},
                headers={"Authorization": f"Bearer {provisioning_token}"},
            ), 200, 201)
            auth = {"Authorization": f"Bearer {vol.token}"}
            for name, email, interests, consent in vol.contacts:
                expect(http.post(f"{contacts_url}/contacts", json={
                    "name": name, "emails": [email], "interests": list(interests), "consent": consent,
                    "consent_proof": "demo data: agreed in person" if consent == "confirmed" else None,
                }, headers=auth), 201, 409)
            expect(http.put(f"{contacts_url}/me/profile", json={"shared_interests": None}, headers=auth), 200)
        message = expect(http.post(
            f"{feed_url}/messages",
            json=DEMO_MESSAGE,
            headers={"Authorization": f"Bearer {staff_token}", "Idempotency-Key": "demo-message-1"},
        ), 200, 201).json()
    return {"message_id": message["id"], "volunteers": {v.name: v.token for v in VOLUNTEERS}}
