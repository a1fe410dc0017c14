"""Everything between a service and NATS: the ``Bus`` (FastStream), the
lean ``PullConsumer`` for a hot subject, ``Replay`` of a stream's state,
the one ``settle`` rule both consumer paths follow, and ``FakeBus`` for
tests without a nats-server.

Modules depend one way: ``settle`` ← ``pull_consumer`` ← ``bus``;
``replay`` and ``fake`` use ``settle`` and the catalogue only."""

from shared.messaging.bus import APPLY_STREAMS, Bus, MissingStreams, UndeclaredSubject, inbox_prefix
from shared.messaging.replay import Replay
from shared.messaging.fake import FakeBus
from shared.messaging.settle import redelivery_delay, settle, validation_reason

__all__ = [
    "APPLY_STREAMS",
    "Bus",
    "FakeBus",
    "MissingStreams",
    "Replay",
    "UndeclaredSubject",
    "inbox_prefix",
    "redelivery_delay",
    "settle",
    "validation_reason",
]
