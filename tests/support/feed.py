"""Helpers of the feed tests (no test here): a feed app on real NATS and a real database,
staff tokens of each role, and reading back what feed put on JetStream."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from typing import Any

import nats
from fastapi.testclient import TestClient

from services.feed.app import create_app
from services.feed.settings import FeedSettings
from shared.settings import CommonSettings
from tests.support.apps import STAFF_TOKEN

ADMIN = {"Authorization": f"Bearer {STAFF_TOKEN}"}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def feed_settings(nats_url: str, db_url: str, **extra: Any) -> FeedSettings:
    return FeedSettings(staff_token=STAFF_TOKEN, database_url=db_url, common=CommonSettings(nats_url=nats_url),
                        scheduler_seconds=0.2, **extra)


@contextmanager
def running_feed(nats_url: str, db_url: str, **extra: Any) -> Iterator[TestClient]:
    with TestClient(create_app(feed_settings(nats_url, db_url, **extra))) as client:
        yield client


def staff_token(feed: TestClient, role: str, name: str | None = None) -> dict[str, str]:
    r = feed.post("/staff", headers=ADMIN, json={"name": name or f"{role} account", "role": role})
    assert r.status_code == 201, r.text
    return bearer(r.json()["token"])


def later(seconds: float) -> str:
    return (datetime.now(timezone.utc) + timedelta(seconds=seconds)).isoformat()


def message(title: str = "Nos écoles méritent mieux", **fields: Any) -> dict[str, Any]:
    return {
        "title": title,
        "body": "Réunion publique **le 12 décembre**, salle des fêtes.",
        "interests": ["education"],
        "variants": {"email": {"subject": "Réunion sur nos écoles", "body": "Rendez-vous à 19 h."},
                     "short": {"text": "Réunion publique sur nos écoles le 12/12."}},
        **fields,
    }


def publish_raw(nats_url: str, items: list[tuple[str, str, Any]]) -> None:
    """Publish ``(subject, msg_id, event)`` as another service would."""

    async def send() -> None:
        nc = await nats.connect(nats_url)
        try:
            js = nc.jetstream()
            for subject, msg_id, event in items:
                await js.publish(subject, event.model_dump_json().encode(), headers={"Nats-Msg-Id": msg_id})
        finally:
            await nc.close()

    asyncio.run(send())

