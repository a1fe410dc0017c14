"""The contacts app on a real nats-server, set up as a campaign (its name
and public URL in the emails), and what feed and the matcher would send it:
a campaign message suggested to volunteers."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import nats
from fastapi.testclient import TestClient
from sqlmodel import Session

from services.contacts.app import create_app
from services.contacts.store import CampaignMessage
from shared.catalogue import DISPATCH_JOBS_STREAM
from tests.support.apps import contacts_settings
from tests.support.streams import stream_payloads
from tests.support.transit_keys import opened_job  # jobs are sealed on the stream: opened as dispatch-email does
from tests.support.waiting import poll

CAMPAIGN = "Lyon en commun"
PUBLIC_URL = "https://contacts.campagne.example"


@contextmanager
def contacts_client(nats_url: str, db_url: str, **settings: Any) -> Iterator[TestClient]:
    app = create_app(contacts_settings(nats_url, db_url, campaign_name=CAMPAIGN, public_url=PUBLIC_URL,
                                       **settings))
    with TestClient(app) as client:
        yield client


def relay_jobs(nats_url: str) -> list[dict[str, Any]]:
    return [opened_job(job) for _, job in stream_payloads(nats_url, DISPATCH_JOBS_STREAM.name) if job["kind"] == "relay"]


def offer(contacts: TestClient, nats_url: str, interests: list[str],
          volunteers: dict[str, dict[str, str]], title: str = "Réunion publique") -> dict[str, str]:
    """A campaign message, suggested to each of ``volunteers`` (id -> auth)
    as feed and the matcher would do it; returns each one's suggestion id
    once it is in their inbox and the message has reached contacts."""
    message_id = uuid.uuid4().hex
    suggestion_ids = {vid: uuid.uuid4().hex for vid in volunteers}
    message = {"message_id": message_id, "title": title, "body": f"{title}, le 12 décembre.",
               "interests": interests,
               "variants": {"email": {"subject": title, "body": f"{title} : rendez-vous le 12 décembre."}}}

    async def publish() -> None:
        nc = await nats.connect(nats_url)
        try:
            js = nc.jetstream()
            await js.publish("feed.messages.published", json.dumps(message).encode(),
                             headers={"Nats-Msg-Id": message_id})
            for vid, sid in suggestion_ids.items():
                suggestion = {"suggestion_id": sid, "volunteer_id": vid, "message_id": message_id,
                              "matched_interests": interests, "audience_size": 1}
                await js.publish(f"matcher.suggestions.{vid}", json.dumps(suggestion).encode(),
                                 headers={"Nats-Msg-Id": sid})
        finally:
            await nc.close()

    asyncio.run(publish())

    def arrived() -> bool:
        with Session(contacts.app.state.engine) as session:
            return session.get(CampaignMessage, message_id) is not None

    poll(arrived, bool, what="contacts to receive the message")
    for vid, auth in volunteers.items():
        poll(lambda auth=auth: [e["suggestion_id"] for e in contacts.get("/inbox", headers=auth).json()],
             lambda ids, vid=vid: suggestion_ids[vid] in ids, what=f"the suggestion in {vid}'s inbox")
    return suggestion_ids
