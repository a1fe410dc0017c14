"""The email dispatcher under test: jobs sealed as contacts seals them, its
settings, a running dispatcher on a real nats-server and the results it
reports, and the parts of an email the tests read."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
from collections.abc import AsyncIterator
from email.message import EmailMessage

import nats
from prometheus_client import REGISTRY
from pydantic import SecretStr

from services.dispatch.email.app import EmailDispatcher
from services.dispatch.email.settings import EmailDispatchSettings
from services.dispatch.email.suppressions import SuppressionList
from shared.catalogue import (
    CONTACTS,
    DISPATCH_EMAIL,
    DISPATCH_JOBS_STREAM,
    DISPATCH_RESULTS_STREAM,
    EMAIL_RESULT,
)
from shared.events import Channel, DispatchResult, EmailJob, OpenedEmailJob
from shared.messaging import Bus
from shared.sealed import TransitSealer, seal_email
from shared.settings import CommonSettings
from tests.support.transit_keys import TRANSIT_KEYS

FROM = "relais@campagne.example"
LIST_ID = "relais.campagne.example"


# contacts seals every email job with the email channel's key; the dispatcher holds only that one
SEALER = TransitSealer.from_secret(Channel.email, SecretStr(TRANSIT_KEYS[Channel.email]))


def job(n: int = 1, **changes) -> OpenedEmailJob:
    """A job as contacts builds it and dispatch-email reads it once opened."""
    fields = dict(
        job_id=f"job-{n}", relay_id="relay-1", message_id="m-ecoles", volunteer_id="vol-alice",
        sender_name="Alice Martin", reply_to="alice.martin@perso.example",
        recipient_name=f"Camille Dupont{n}", recipient_email=f"camille{n}@exemple.fr",
        subject="Les écoles ont besoin de vous", body_text=f"Le texte du message {n}.",
        recipient_hash=address_hash(f"camille{n}@exemple.fr"),
        unsubscribe_url=f"https://campagne.example/desabonnement/job-{n}",
    )
    return OpenedEmailJob(**{**fields, **changes})


def sealed(opened: OpenedEmailJob) -> EmailJob:
    """The job as NATS carries it."""
    return seal_email(opened, SEALER)


class SealingContacts:
    """Stands in for contacts on the bus: an email job is sealed before it
    is published, as contacts does; everything else goes as it is."""

    def __init__(self, bus: Bus) -> None:
        self.bus = bus

    async def publish(self, spec, event, *tokens: str, msg_id: str) -> None:
        await self.bus.publish(spec, sealed(event) if isinstance(event, OpenedEmailJob) else event, *tokens,
                               msg_id=msg_id)

    def __getattr__(self, name: str):
        return getattr(self.bus, name)


def address_hash(address: str) -> str:
    """Stands in for contacts' keyed hash: the dispatcher only compares them."""
    return hashlib.sha256(address.encode()).hexdigest()


def settings(smtp_host: str, smtp_port: int, nats_url: str = "nats://127.0.0.1:1", **more):
    more.setdefault("ledger_url", "sqlite:///:memory:")
    more.setdefault("transit_key", TRANSIT_KEYS[Channel.email])
    return EmailDispatchSettings(
        from_address=FROM, list_id=LIST_ID, smtp_host=smtp_host, smtp_port=smtp_port, smtp_timeout=5,
        common=CommonSettings(nats_url=nats_url, egress_allow=more.pop("egress_allow", "")), **more,
    )


def text_of(msg: EmailMessage) -> str:
    return msg.get_body(("plain",)).get_content().replace("\r\n", "\n")


def html_of(msg: EmailMessage) -> str:
    return msg.get_body(("html",)).get_content()


def plain(n: int) -> EmailMessage:
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = FROM, f"camille{n}@exemple.fr", f"n°{n}"
    msg.set_content(f"message {n}")
    return msg


def counter(name: str, labels: dict[str, str]) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


@contextlib.asynccontextmanager
async def dispatcher(
    nats_url: str, smtp_server, max_deliver: int = 3, **more
) -> AsyncIterator[tuple[Bus, SuppressionList]]:
    """The dispatch-email service's parts, started as its app starts them;
    yields a contacts bus to publish jobs with, and the suppression list."""
    config = settings(smtp_server.host, smtp_server.port, nats_url, max_deliver=max_deliver, **more)
    bus = Bus(DISPATCH_EMAIL, nats_url)
    parts = EmailDispatcher(bus, config)
    contacts = Bus(CONTACTS, nats_url)
    await parts.prepare()
    await bus.start()
    await contacts.connect()
    try:
        yield SealingContacts(contacts), parts.suppressed
    finally:
        await contacts.stop()
        await bus.stop()
        await parts.close()


async def results(nats_url: str, count: int, timeout: float = 15.0) -> list[tuple[DispatchResult, bytes]]:
    """The first ``count`` results stored on ``dispatch.email.results``."""
    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream()
        sub = await js.subscribe(
            EMAIL_RESULT.pattern, stream=DISPATCH_RESULTS_STREAM.name, ordered_consumer=True
        )
        found: list[tuple[DispatchResult, bytes]] = []
        deadline = time.monotonic() + timeout
        while len(found) < count:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"expected {count} results, got {found}")
            try:
                msg = await sub.next_msg(timeout=min(left, 1.0))
            except (TimeoutError, nats.errors.TimeoutError):
                continue
            found.append((DispatchResult.model_validate_json(msg.data), msg.data))
        return found
    finally:
        await nc.close()


async def consumer_settled(nats_url: str) -> None:
    """Wait until the dispatcher's consumer has nothing pending or unacked."""
    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream()
        for _ in range(100):
            info = await js.consumer_info(DISPATCH_JOBS_STREAM.name, DISPATCH_EMAIL)
            if info.num_pending == 0 and info.num_ack_pending == 0:
                return
            await asyncio.sleep(0.05)
        raise AssertionError(f"consumer not settled: {info}")
    finally:
        await nc.close()
