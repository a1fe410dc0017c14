"""Builds each service's app with explicit settings, for tests."""

from __future__ import annotations

import base64

from fastapi import FastAPI

from services.contacts.app import create_app as contacts_app
from services.contacts.settings import ContactsSettings
from services.dispatch.email.app import create_email_app
from services.dispatch.email.settings import EmailDispatchSettings
from services.dispatch.social.app import create_social_app
from services.dispatch.social.wiring import NETWORKS
from services.feed.app import create_app as feed_app
from services.feed.settings import FeedSettings
from services.matcher.app import create_app as matcher_app
from services.matcher.settings import MatcherSettings
from shared.events import Channel
from shared.settings import CommonSettings
from tests.support.transit_keys import CONTACTS_TRANSIT_KEYS, TRANSIT_KEYS

STAFF_TOKEN = "staff-token-for-tests-0123456789"
PROVISIONING_TOKEN = "provisioning-token-for-tests-0123456789"
BOUNCE_TOKEN = "bounce-token-for-tests-0123456789"
KEYS = {
    "master_key": base64.b64encode(b"m" * 32).decode(),
    "address_index_key": base64.b64encode(b"i" * 32).decode(),
    "link_key": base64.b64encode(b"l" * 32).decode(),
    # one transit key per channel: contacts holds them all, each dispatcher its own
    "transit_keys": CONTACTS_TRANSIT_KEYS,
}


def contacts_settings(nats_url: str, db_url: str, **extra) -> ContactsSettings:
    return ContactsSettings(provisioning_token=PROVISIONING_TOKEN, database_url=db_url,
                            common=CommonSettings(nats_url=nats_url), **KEYS, **extra)


def build_apps(nats_url: str = "nats://127.0.0.1:1", db_url: str = "sqlite://",
               smtp_port: int = 1) -> dict[str, FastAPI]:
    common = CommonSettings(nats_url=nats_url)
    return {
        "feed": feed_app(FeedSettings(staff_token=STAFF_TOKEN, database_url=db_url, common=common)),
        "contacts": contacts_app(contacts_settings(nats_url, db_url)),
        # no quiet hours: the suite must pass at any hour
        "matcher": matcher_app(MatcherSettings(common=common, quiet_start=0, quiet_end=0)),
        "dispatch-email": create_email_app(
            EmailDispatchSettings(from_address="relais@campagne.example", smtp_port=smtp_port, common=common,
                                  ledger_url="sqlite:///:memory:", bounce_token=BOUNCE_TOKEN,
                                  transit_key=TRANSIT_KEYS[Channel.email])
        ),
        **{f"dispatch-{name}": create_social_app(name, network.settings(
            transit_key=TRANSIT_KEYS[Channel(name)], common=common)) for name, network in NETWORKS.items()},
    }
