"""shared.messaging against a real nats-server: streams declared idempotently,
malformed payloads terminated and counted, handler errors redelivered with
backoff, roles enforced, publishes deduplicated, rejections logged without
the offending value."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable

import nats
import pytest
import structlog
from prometheus_client import REGISTRY

from shared.catalogue import (
    CONTACTS,
    DISPATCH_EMAIL,
    EMAIL_JOB,
    EMAIL_RESULT,
    FEED,
    FEED_STREAM,
    MATCHER,
    MESSAGE_PUBLISHED,
    PROFILE_UPDATED,
    PROFILES_STREAM,
)
from shared.events import InterestProfile, MessagePublished, Variants
from shared.messaging import Bus, UndeclaredSubject
from shared.observability.logging import configure_logging

PII = "camille.dupont@exemple.fr"


def message(message_id: str = "m-ok") -> MessagePublished:
    return MessagePublished(
        message_id=message_id, title="Écoles", body="Les écoles ferment.", interests=("education",),
        variants=Variants.model_validate({"email": {"subject": "Écoles", "body": "Texte"}}),
    )


def failed(service: str, subject: str, reason: str) -> float:
    value = REGISTRY.get_sample_value(
        "maillage_messages_failed_total", {"service": service, "subject": subject, "reason": reason}
    )
    return value or 0.0


def handled(service: str, subject: str) -> float:
    value = REGISTRY.get_sample_value(
        "maillage_messages_handled_total", {"service": service, "subject": subject}
    )
    return value or 0.0


async def wait_until(check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


# -- 1. streams -------------------------------------------------------------------------


# Streams are applied by tools/streams.py, never by a service's bus:
# tests/deploy/test_nats_stream_admin.py (idempotent apply, in-place update, refusals).


# -- 2. malformed payloads --------------------------------------------------------------


async def test_malformed_payload_is_terminated_counted_and_does_not_block(nats_url):
    bus = Bus(MATCHER, nats_url)
    seen: list[tuple[str, int]] = []

    @bus.subscriber(MESSAGE_PUBLISHED, durable="matcher-test", ack_wait=1.0)
    async def on_published(event: MessagePublished, msg) -> None:
        seen.append((event.message_id, msg.raw_message.metadata.num_delivered))

    labels = (MATCHER, MESSAGE_PUBLISHED.pattern)
    invalid_before = failed(*labels, "invalid_payload")
    handled_before = handled(*labels)
    await bus.start()
    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream()
        missing_title = json.loads(message("m-bad").model_dump_json())
        del missing_title["title"]
        await js.publish(MESSAGE_PUBLISHED.pattern, b"{this is not json")
        await js.publish(MESSAGE_PUBLISHED.pattern, json.dumps(missing_title).encode())
        await js.publish(MESSAGE_PUBLISHED.pattern, message("m-ok").model_dump_json().encode())

        await wait_until(lambda: seen)
        # An unacknowledged bad message would come back after ack_wait (1 s).
        await asyncio.sleep(1.5)
        assert seen == [("m-ok", 1)]
        assert failed(*labels, "invalid_payload") - invalid_before == 2
        assert handled(*labels) - handled_before == 1
        info = await js.consumer_info(FEED_STREAM.name, "matcher-test")
        assert info.num_ack_pending == 0 and info.num_redelivered == 0 and info.num_pending == 0
        assert info.delivered.stream_seq == 3 and info.ack_floor.stream_seq == 3
    finally:
        await nc.close()
        await bus.stop()


# -- 3. handler errors ------------------------------------------------------------------


async def test_handler_error_is_nacked_with_backoff_and_redelivered(nats_url):
    bus = Bus(CONTACTS, nats_url)
    deliveries: list[tuple[int, float]] = []
    done: list[str] = []

    @bus.subscriber(MESSAGE_PUBLISHED, durable="contacts-test")
    async def flaky(event: MessagePublished, msg) -> None:
        deliveries.append((msg.raw_message.metadata.num_delivered, time.monotonic()))
        if len(deliveries) == 1:
            raise RuntimeError("database hiccup")
        done.append(event.message_id)

    labels = (CONTACTS, MESSAGE_PUBLISHED.pattern)
    errors_before, handled_before = failed(*labels, "handler_error"), handled(*labels)
    feed = Bus(FEED, nats_url)
    await bus.start()
    await feed.connect()
    try:
        await feed.publish(MESSAGE_PUBLISHED, message("m-retry"), msg_id="m-retry")
        await wait_until(lambda: done, timeout=10)
        assert done == ["m-retry"]
        assert [n for n, _ in deliveries] == [1, 2]
        # nacked with redelivery_delay(1) == 1 s, not redelivered at once
        assert deliveries[1][1] - deliveries[0][1] >= 0.8
        assert failed(*labels, "handler_error") - errors_before == 1
        assert handled(*labels) - handled_before == 1
        js = feed.broker.connection.jetstream()
        for _ in range(50):  # the ack follows the handler
            info = await js.consumer_info(FEED_STREAM.name, "contacts-test")
            if info.num_ack_pending == 0:
                break
            await asyncio.sleep(0.02)
        assert info.num_ack_pending == 0 and info.ack_floor.stream_seq == 1
    finally:
        await bus.stop()
        await feed.stop()


# -- 4. roles -----------------------------------------------------------------------------


async def test_publish_outside_the_producer_role_is_refused():
    profile = InterestProfile(volunteer_id="vol-1")
    with pytest.raises(UndeclaredSubject):
        await Bus(MATCHER, "nats://127.0.0.1:1").publish(MESSAGE_PUBLISHED, message(), msg_id="x")
    with pytest.raises(UndeclaredSubject):  # a consumer is not the producer
        await Bus(MATCHER, "nats://127.0.0.1:1").publish(PROFILE_UPDATED, profile, "vol-1", msg_id="x")
    with pytest.raises(UndeclaredSubject):  # the PII subject: only contacts produces it
        await Bus(DISPATCH_EMAIL, "nats://127.0.0.1:1").publish(EMAIL_JOB, profile, msg_id="x")


async def test_subscribe_outside_the_consumer_role_is_refused():
    feed = Bus(FEED, "nats://127.0.0.1:1")
    with pytest.raises(UndeclaredSubject):
        feed.subscriber(EMAIL_JOB, durable="feed")  # carries PII, dispatch-email only
    with pytest.raises(UndeclaredSubject):
        feed.subscriber(MESSAGE_PUBLISHED, durable="feed")  # its own subject: producer only
    with pytest.raises(UndeclaredSubject):
        Bus(MATCHER, "nats://127.0.0.1:1").subscriber(EMAIL_RESULT)
    assert feed.subjects_consumed == set()
    feed.subscriber(EMAIL_RESULT, durable="feed")  # declared: accepted
    assert feed.subjects_consumed == {EMAIL_RESULT.pattern}


async def test_publishing_the_wrong_model_is_a_type_error():
    with pytest.raises(TypeError, match="MessagePublished"):
        await Bus(FEED, "nats://127.0.0.1:1").publish(
            MESSAGE_PUBLISHED, InterestProfile(volunteer_id="vol-1"), msg_id="x"
        )


@pytest.mark.parametrize("token", ["a.b", "*", ">", "vol>", "a b", "a\tb", "a\nb", ""])
def test_subject_tokens_cannot_inject_wildcards_or_levels(token):
    with pytest.raises(ValueError):
        PROFILE_UPDATED.subject(token)


def test_subject_token_count_and_substitution():
    assert PROFILE_UPDATED.subject("vol-1") == "contacts.profiles.vol-1"
    assert MESSAGE_PUBLISHED.subject() == "feed.messages.published"
    with pytest.raises(ValueError):
        PROFILE_UPDATED.subject()
    with pytest.raises(ValueError):
        PROFILE_UPDATED.subject("a", "b")


async def test_a_bad_token_publishes_nothing(nats_url):
    contacts = Bus(CONTACTS, nats_url)
    await contacts.connect()
    try:
        with pytest.raises(ValueError):
            await contacts.publish(PROFILE_UPDATED, InterestProfile(volunteer_id="x"), ">", msg_id="x")
        assert await contacts.stored_messages(PROFILES_STREAM) == 0
    finally:
        await contacts.stop()


# -- 5. dedupe ----------------------------------------------------------------------------


async def test_publish_sets_nats_msg_id_so_a_retry_is_stored_once(nats_url):
    feed = Bus(FEED, nats_url)
    await feed.connect()
    try:
        await feed.publish(MESSAGE_PUBLISHED, message("m-1"), msg_id="m-1")
        await feed.publish(MESSAGE_PUBLISHED, message("m-1"), msg_id="m-1")  # a retried publish
        assert await feed.stored_messages(FEED_STREAM) == 1
        last = await feed.broker.connection.jetstream().get_last_msg(
            FEED_STREAM.name, MESSAGE_PUBLISHED.pattern
        )
        assert last.headers["Nats-Msg-Id"] == "m-1"
        assert MessagePublished.model_validate_json(last.data).message_id == "m-1"

        await feed.publish(MESSAGE_PUBLISHED, message("m-2"), msg_id="m-2")
        assert await feed.stored_messages(FEED_STREAM) == 2
    finally:
        await feed.stop()


# -- logs -----------------------------------------------------------------------------------


@pytest.fixture
def json_logs():
    """Restores logging after a test that configures JSON logs. The test
    configures them itself: capsys swaps sys.stderr between setup and call."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield lambda: configure_logging(MATCHER, fmt="json", level="INFO")
    root.handlers[:] = handlers
    root.setLevel(level)
    structlog.reset_defaults()
    structlog.contextvars.clear_contextvars()


async def run_matcher_on(
    nats_url: str, payloads: list[bytes], configure_json, *, fail_with: str | None = None
) -> list[str]:
    """Start a matcher bus on PROFILE_UPDATED, publish raw payloads then a
    valid profile, and return the volunteer ids it handled. Logs are JSON."""
    bus = Bus(MATCHER, nats_url)
    seen: list[str] = []
    configure_json()

    @bus.subscriber(PROFILE_UPDATED, durable="matcher-logs")
    async def on_profile(event: InterestProfile, msg) -> None:
        if fail_with and not seen:
            seen.append("failed")
            raise ValueError(fail_with)
        seen.append(event.volunteer_id)

    rejected_before = failed(MATCHER, PROFILE_UPDATED.pattern, "invalid_payload")
    await bus.start()
    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream()
        for i, payload in enumerate(payloads):  # one subject each: PROFILES keeps 1 per subject
            await js.publish(f"contacts.profiles.bad-{i}", payload)
        await js.publish("contacts.profiles.vol-8", InterestProfile(volunteer_id="vol-8").model_dump_json().encode())
        await wait_until(lambda: "vol-8" in seen)
        # messages may be handled concurrently: wait for every rejection too
        await wait_until(
            lambda: failed(MATCHER, PROFILE_UPDATED.pattern, "invalid_payload") - rejected_before
            == len(payloads)
        )
    finally:
        await nc.close()
        await bus.stop()
    return seen


def log_lines(err: str) -> list[dict]:
    return [json.loads(line) for line in err.splitlines() if line.startswith("{")]


async def test_rejection_log_names_the_field_not_the_value(nats_url, json_logs, capsys):
    payloads = [
        json.dumps({"volunteer_id": "vol-7", "audience": PII}).encode(),  # wrong type
        json.dumps({"audience": {"education": {"email": 2}}, "note": 1}).encode(),  # missing (+ extra, ignored)
        f'{{"volunteer_id": "vol-7", "audience": {PII}'.encode(),  # not JSON
    ]
    seen = await run_matcher_on(nats_url, payloads, json_logs)
    assert seen == ["vol-8"]
    err = capsys.readouterr().err
    rejected = [line for line in log_lines(err) if line["event"] == "event.rejected"]
    assert len(rejected) == 3
    assert all(line["subject"] == PROFILE_UPDATED.pattern for line in rejected)
    assert all(line["level"] == "warning" and line["service"] == MATCHER for line in rejected)
    reasons = sorted(line["reason"] for line in rejected)  # handled in any order
    assert reasons[0] == "audience: Input should be an object"
    assert reasons[1].startswith("payload: Invalid JSON")
    assert "volunteer_id: Field required" in reasons[2]
    assert "note" not in reasons[2]  # a newer producer's field is not a fault
    assert "camille" not in err.lower()


async def test_handler_error_log_has_the_exception_type_not_its_text(nats_url, json_logs, capsys):
    seen = await run_matcher_on(nats_url, [], json_logs, fail_with=f"could not reach {PII}")
    assert seen == ["failed", "vol-8"]
    err = capsys.readouterr().err
    failures = [line for line in log_lines(err) if line["event"] == "event.handler_failed"]
    assert len(failures) == 1 and failures[0]["error"] == "ValueError"
    assert "camille" not in err.lower()


async def test_rejection_log_does_not_leak_a_bad_dict_key_or_field_name(nats_url, json_logs, capsys):
    payloads = [
        # an address where an interest name should be (a dict key)
        json.dumps({"volunteer_id": "vol-7", "audience": {PII: {"email": 1}}}).encode(),
        # an address as a key of a dict whose value is wrong
        json.dumps({"volunteer_id": "vol-7", "regions": {PII: -1}}).encode(),
    ]
    seen = await run_matcher_on(nats_url, payloads, json_logs)
    assert seen == ["vol-8"]
    err = capsys.readouterr().err
    rejected = [line for line in log_lines(err) if line["event"] == "event.rejected"]
    assert len(rejected) == 2 and any(line["reason"].startswith("audience") for line in rejected)
    assert any(line["reason"].startswith("regions.<key>") for line in rejected)
    assert "camille" not in err.lower()


async def test_a_replay_of_one_subject_is_caught_up_when_its_stream_holds_only_others(nats_url):
    """FEED holds published messages but no withdrawal yet: a replay of
    withdrawals has nothing to wait for (a second `make run` hung on this)."""
    from shared.catalogue import MESSAGE_WITHDRAWN
    from shared.messaging import Replay

    feed = Bus(FEED, nats_url)
    await feed.connect()
    await feed.publish(MESSAGE_PUBLISHED, message("m1"), msg_id="m1")
    assert await feed.stored_messages(FEED_STREAM) == 1
    assert await feed.stored_messages(MESSAGE_WITHDRAWN) == 0
    await feed.stop()

    dispatcher = Bus(DISPATCH_EMAIL, nats_url)
    seen = []
    replay = Replay(dispatcher, MESSAGE_WITHDRAWN, seen.append)
    await replay.prepare()
    assert replay.caught_up.is_set() and seen == []
    await dispatcher.stop()


def test_the_messaging_modules_import_one_way():
    """No circle: settle <- pull_consumer <- bus; replay and fake above them
    (replay names the buses for type checks only)."""
    import re
    from pathlib import Path

    import shared.messaging

    order = ["settle", "pull_consumer", "bus", "replay", "fake"]
    package = Path(shared.messaging.__file__).parent
    assert sorted(p.stem for p in package.glob("*.py") if p.stem != "__init__") == sorted(order)
    for i, name in enumerate(order):
        text = (package / f"{name}.py").read_text()
        imported = set(re.findall(r"^from shared\.messaging\.(\w+) import", text, re.M))
        assert imported <= set(order[:i]), f"{name} imports {imported - set(order[:i])}"
