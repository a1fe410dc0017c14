"""A volunteer account for a test, made the way the campaign makes one:
provisioning creates the account and its invitation, the volunteer redeems
it. Provisioning never gets a token (issue 11, finding 1), so every test
that needs a signed-in volunteer goes through here."""

from __future__ import annotations

from dataclasses import dataclass

import httpx

from tools.stack import StackConfig


@dataclass(frozen=True)
class NewVolunteer:
    volunteer_id: str
    token: str

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


def new_volunteer(http: httpx.Client, provisioning_token: str, name: str, email: str,
                  base_url: str = "") -> NewVolunteer:
    """``http``: an httpx client or a TestClient; ``base_url``: the contacts
    service's URL when the client has none."""
    made = http.post(f"{base_url}/admin/volunteers", json={"display_name": name, "email": email},
                     headers={"Authorization": f"Bearer {provisioning_token}"})
    assert made.status_code == 201, made.text
    assert "token" not in made.json()
    redeemed = http.post(f"{base_url}/auth/redeem", json={"code": made.json()["code"]})
    assert redeemed.status_code == 200, redeemed.text
    assert redeemed.json()["volunteer_id"] == made.json()["volunteer_id"]
    return NewVolunteer(redeemed.json()["volunteer_id"], redeemed.json()["token"])


def volunteer_with_a_friend(http: httpx.Client, cfg: StackConfig, name: str, email: str) -> dict[str, str]:
    """A volunteer of a running stack, with one confirmed contact interested in education."""
    auth = new_volunteer(http, cfg.provisioning_token, name, email, cfg.url("contacts")).auth
    r = http.post(f"{cfg.url('contacts')}/contacts", headers=auth, json={
        "name": f"Ami de {name}", "emails": [f"ami.{email.split('@')[0]}@exemple.fr"], "interests": ["education"],
        "consent": "confirmed", "consent_proof": "said yes at the market"})
    assert r.status_code == 201, r.text
    return auth
