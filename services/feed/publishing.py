"""What feed tells the rest of Maillage: a message going public, a message
withdrawn or expired, the taxonomy. The one module that publishes: use
cases call it, and decide what is recorded around it.

The order is always "publish on NATS, then record" (usecases/publish.py):
a message is marked published only once JetStream acked it, so a crash in
between leaves it to be published again, and the ``Nats-Msg-Id`` (the
message id) makes that second publication a no-op.
"""

from __future__ import annotations

import hashlib

from services.feed.errors import Unavailable
from services.feed.store import Message, TaxonomyVersion
from shared.messaging import Bus
from shared.catalogue import MESSAGE_PUBLISHED, MESSAGE_WITHDRAWN, TAXONOMY_PUBLISHED
from shared.events import MessagePublished, MessageWithdrawn, Taxonomy, TaxonomyTerm, Variants


def published_event(m: Message) -> MessagePublished:
    return MessagePublished(
        message_id=m.id, title=m.title, body=m.body, interests=tuple(m.interests),
        variants=Variants.model_validate(m.variants), link=m.link, regions=tuple(m.regions),
        locales=tuple(m.locales), priority=m.priority, expires_at=m.expires_at,
    )


async def _send(bus: Bus, spec, event, msg_id: str) -> None:
    try:
        await bus.publish(spec, event, msg_id=msg_id)
    except Exception as exc:
        raise Unavailable(type(exc).__name__) from exc


async def message_published(bus: Bus, m: Message) -> None:
    await _send(bus, MESSAGE_PUBLISHED, published_event(m), m.id)


async def message_withdrawn(bus: Bus, message_id: str, reason: str) -> None:
    await _send(bus, MESSAGE_WITHDRAWN, MessageWithdrawn(message_id=message_id, reason=reason),
                f"{message_id}:withdrawn")


def taxonomy_msg_id(version: TaxonomyVersion) -> str:
    """The content hash, qualified by the version: the same taxonomy
    announced twice (a restart, two replicas) is stored once, while going
    back to an earlier taxonomy (A → B → A) is news again."""
    return hashlib.sha256(f"{version.id}:{version.digest}".encode()).hexdigest()


async def taxonomy_published(bus: Bus, version: TaxonomyVersion) -> None:
    event = Taxonomy(terms=tuple(TaxonomyTerm.model_validate(t) for t in version.terms))
    await _send(bus, TAXONOMY_PUBLISHED, event, taxonomy_msg_id(version))
