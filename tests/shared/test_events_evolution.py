"""Events evolve without a lock-step deploy (the rule: shared/events.py).

A newer producer may add fields: every consumer of today, for every subject
of the catalogue, is handed a "v2-shaped" payload (every field it knows plus
ones it does not) and must do what it does with today's payload. A breaking
change is a new ``schema_version`` with an upcaster, which the bus applies
before validation."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from datetime import timedelta
from types import SimpleNamespace
from typing import Any, Literal

import pytest
from pydantic import BaseModel, Field, SecretStr
from sqlmodel import Session, select

from services.contacts import handlers as contacts_handlers
from services.contacts import store as contacts_store
from services.feed import handlers as feed_handlers
from services.feed import store as feed_store
from shared import catalogue
from shared.catalogue import SUBJECTS, StreamSpec, SubjectSpec
from shared.db import make_engine
from shared.events import (
    BounceReported,
    Channel,
    DeadLetter,
    DeliveryStatus,
    DispatchResult,
    EmailJob,
    Event,
    InterestProfile,
    MessagePublished,
    MessageWithdrawn,
    RelayRequested,
    ReleaseWatermark,
    SocialPostJob,
    Suggestion,
    Suppressed,
    Taxonomy,
    TaxonomyTerm,
    Variants,
    read_event,
    upcaster,
    utcnow,
)
from shared.messaging import FakeBus
from tests.support.transit_keys import TRANSIT_KEYS

HASH = "ab" * 32
NEWER = {"added_in_v2": {"a": [1, 2], "b": None}, "priority_hint": "high"}  # what a newer producer adds


def v2(event: BaseModel) -> dict[str, Any]:
    """``event`` as a newer producer sends it: today's fields, and more."""
    return {**event.model_dump(mode="json"), **NEWER}


# -- one event of each kind, every field set -------------------------------------------------


def published(message_id: str = "m-1") -> MessagePublished:
    return MessagePublished(
        message_id=message_id, title="Écoles", body="Les écoles ferment.", interests=("education",),
        variants=Variants.model_validate({"email": {"subject": "Écoles", "body": "Texte"}, "short": {"text": "Court"}}),
        link="https://campagne.example/ecoles", regions=("lyon",), locales=("fr",), priority=2,
        expires_at=utcnow() + timedelta(days=3))


def sample(model: type[BaseModel], *, channel: Channel = Channel.email) -> BaseModel:
    ids = {"job_id": "j-1", "relay_id": "r-1", "message_id": "m-1", "volunteer_id": "vol-1"}
    return {
        MessagePublished: lambda: published(),
        MessageWithdrawn: lambda: MessageWithdrawn(message_id="m-1", reason="withdrawn"),
        Taxonomy: lambda: Taxonomy(terms=(TaxonomyTerm(name="education", label_fr="Éducation", label_en="Education"),)),
        InterestProfile: lambda: InterestProfile(volunteer_id="vol-1", audience={"education": {Channel.email: 3}},
                                                 regions={"lyon": 3}, locales={"fr": 3}),
        RelayRequested: lambda: RelayRequested(relay_id="r-1", volunteer_id="vol-1", message_id="m-1",
                                               jobs_queued={Channel.email: 3}),
        Suggestion: lambda: Suggestion(suggestion_id="s-1", volunteer_id="vol-1", message_id="m-1",
                                       matched_interests=("education",), audience_size=3, score=6.0,
                                       matched_regions=("lyon",)),
        ReleaseWatermark: lambda: ReleaseWatermark(partition="0-of-1", released_until=utcnow()),
        EmailJob: lambda: EmailJob(**ids, kind="relay", recipient_hash=HASH, sealed="c2VhbGVk"),
        SocialPostJob: lambda: SocialPostJob(**ids, text="Les écoles ferment.", link="https://campagne.example",
                                             credentials="c2VhbGVk"),
        DispatchResult: lambda: DispatchResult(**ids, channel=channel, status=DeliveryStatus.delivered,
                                               reason="250 ok"),
        DeadLetter: lambda: DeadLetter(**ids, channel=channel, reason="smtp 451", attempts=8),
        BounceReported: lambda: BounceReported(job_id="j-1", address_hash=HASH, status="5.1.1"),
        Suppressed: lambda: Suppressed(address_hash=HASH, reason="unsubscribe"),
    }[model]()


def channel_of(spec: SubjectSpec) -> Channel:
    token = spec.pattern.split(".")[1]
    return Channel(token) if token in Channel.__members__ else Channel.email


# -- each consuming service on a FakeBus, as its app wires it ------------------------------------


def database(tmp_path, store) -> Any:
    engine = make_engine(f"sqlite:///{tmp_path / 'evolution.db'}")
    store.create_schema(engine)
    return engine


def contacts(tmp_path) -> SimpleNamespace:
    engine = database(tmp_path, contacts_store)
    bus = FakeBus(catalogue.CONTACTS)
    contacts_handlers.register(bus, engine, SimpleNamespace(engine=engine))  # auto-relay reads the engine only
    return SimpleNamespace(bus=bus, engine=engine)


def feed(tmp_path) -> SimpleNamespace:
    engine = database(tmp_path, feed_store)
    bus = FakeBus(catalogue.FEED)
    feed_handlers.register(bus, engine)
    return SimpleNamespace(bus=bus, engine=engine)


def matcher(tmp_path) -> SimpleNamespace:
    from services.matcher.handlers import Handlers
    from services.matcher.outbound import Outbound
    from services.matcher.settings import MatcherSettings
    from services.matcher.store import MatcherState

    bus = FakeBus(catalogue.MATCHER)
    state = MatcherState.for_settings(MatcherSettings(_env_file=None, quiet_start=0, quiet_end=0))
    return SimpleNamespace(bus=bus, state=state, handlers=Handlers(bus, state, Outbound(bus), release_seconds=1))


def dispatch_email(tmp_path) -> SimpleNamespace:
    from services.dispatch.email.app import EmailDispatcher
    from services.dispatch.email.settings import EmailDispatchSettings

    bus = FakeBus(catalogue.DISPATCH_EMAIL)
    settings = EmailDispatchSettings(_env_file=None, from_address="relais@campagne.example",
                                     transit_key=SecretStr(TRANSIT_KEYS[Channel.email]),
                                     ledger_url=f"sqlite:///{tmp_path / 'ledger.db'}")
    return SimpleNamespace(bus=bus, dispatcher=EmailDispatcher(bus, settings))


def dispatch_social(service: str) -> Callable[[Any], SimpleNamespace]:
    def build(tmp_path) -> SimpleNamespace:
        from services.dispatch.social import settings as social_settings
        from services.dispatch.social.app import SocialDispatcher

        channel = Channel(service.removeprefix("dispatch-"))
        settings_class = next(c for c in vars(social_settings).values()
                              if isinstance(c, type) and getattr(c, "service", None) == service)
        jobs = catalogue.SOCIAL_JOBS[channel]
        results = next(s for s in SUBJECTS if s.producer == service)
        bus = FakeBus(service)
        settings = settings_class(_env_file=None, transit_key=SecretStr(TRANSIT_KEYS[channel]))
        poster = SimpleNamespace(channel=channel)  # never reached: the jobs here are of a withdrawn message
        return SimpleNamespace(bus=bus, results=results,
                               dispatcher=SocialDispatcher(bus, settings, poster, jobs, results))

    return build


SERVICES: dict[str, Callable[[Any], SimpleNamespace]] = {
    catalogue.CONTACTS: contacts, catalogue.FEED: feed, catalogue.MATCHER: matcher,
    catalogue.DISPATCH_EMAIL: dispatch_email,
    **{s: dispatch_social(s) for s in (catalogue.DISPATCH_MASTODON, catalogue.DISPATCH_BLUESKY, catalogue.DISPATCH_X)},
}


# -- what each consumer does with each event (the same with a v2-shaped one) ------------------------

Case = Callable[[SimpleNamespace, SubjectSpec], Awaitable[None]]
CASES: dict[tuple[str, type[BaseModel]], Case] = {}


def case(services: str | tuple[str, ...], model: type[BaseModel]) -> Callable[[Case], Case]:
    def register(fn: Case) -> Case:
        for service in (services,) if isinstance(services, str) else services:
            CASES[(service, model)] = fn
        return fn

    return register


async def deliver_v2(svc: SimpleNamespace, spec: SubjectSpec, event: BaseModel, *tokens: str) -> None:
    for msg in await svc.bus.deliver(spec, v2(event), *tokens):
        assert msg.settled in ("ack", None), f"{spec.pattern}: {msg.settled}"  # None: an ordered replay


def rows(engine, table) -> list:
    with Session(engine) as s:
        return list(s.exec(select(table)))


def add(engine, *items) -> None:
    with Session(engine) as s:
        s.add_all(items)
        s.commit()


def sent_item(spec: SubjectSpec) -> contacts_store.SentItem:
    return contacts_store.SentItem(job_id="j-1", relay_id="r-1", message_id="m-1", channel=channel_of(spec).value,
                                   status="queued")


@case(catalogue.CONTACTS, MessagePublished)
async def contacts_keep_the_message(svc, spec):
    await deliver_v2(svc, spec, published())
    [kept] = rows(svc.engine, contacts_store.CampaignMessage)
    assert (kept.message_id, kept.short_text, kept.priority) == ("m-1", "Court", 2)


@case(catalogue.CONTACTS, MessageWithdrawn)
async def contacts_withdraw_the_message(svc, spec):
    await svc.bus.deliver(catalogue.MESSAGE_PUBLISHED, published())
    await deliver_v2(svc, spec, sample(MessageWithdrawn))
    assert rows(svc.engine, contacts_store.CampaignMessage)[0].withdrawn_at is not None


@case(catalogue.CONTACTS, Taxonomy)
async def contacts_keep_the_taxonomy(svc, spec):
    await deliver_v2(svc, spec, sample(Taxonomy))
    assert [t.name for t in rows(svc.engine, contacts_store.TaxonomyTerm)] == ["education"]


@case(catalogue.CONTACTS, Suggestion)
async def contacts_fill_the_inbox(svc, spec):
    add(svc.engine, contacts_store.Volunteer(id="vol-1", display_name="Camille", email="camille@exemple.fr"))
    await deliver_v2(svc, spec, sample(Suggestion), "vol-1")
    assert [(i.suggestion_id, i.volunteer_id) for i in rows(svc.engine, contacts_store.InboxItem)] == [("s-1", "vol-1")]


@case(catalogue.CONTACTS, DispatchResult)
async def contacts_record_the_outcome(svc, spec):
    add(svc.engine, sent_item(spec))
    await deliver_v2(svc, spec, sample(DispatchResult, channel=channel_of(spec)))
    assert rows(svc.engine, contacts_store.SentItem)[0].status == "delivered"


@case(catalogue.CONTACTS, DeadLetter)
async def contacts_name_the_dead_letter(svc, spec):
    add(svc.engine, sent_item(spec))
    await deliver_v2(svc, spec, sample(DeadLetter))
    assert rows(svc.engine, contacts_store.SentItem)[0].reason.startswith("dead letter after 8 attempts")


@case(catalogue.CONTACTS, BounceReported)
async def contacts_suppress_the_bounced_address(svc, spec):
    await deliver_v2(svc, spec, sample(BounceReported))
    assert [(e.address_hash, e.reason) for e in svc.bus.events(catalogue.SUPPRESSION_ADDED)] == [(HASH, "bounce")]


@case(catalogue.FEED, Suggestion)
async def feed_counts_the_suggestion(svc, spec):
    await deliver_v2(svc, spec, sample(Suggestion), "vol-1")
    assert [(f.message_id, f.audience_size) for f in rows(svc.engine, feed_store.SuggestionFact)] == [("m-1", 3)]
    assert [r.region for r in rows(svc.engine, feed_store.SuggestionRegion)] == ["lyon"]


@case(catalogue.FEED, RelayRequested)
async def feed_counts_the_relay(svc, spec):
    await deliver_v2(svc, spec, sample(RelayRequested))
    assert [(q.channel, q.queued) for q in rows(svc.engine, feed_store.RelayQueued)] == [("email", 3)]


@case(catalogue.FEED, DispatchResult)
async def feed_counts_the_delivery(svc, spec):
    await deliver_v2(svc, spec, sample(DispatchResult, channel=channel_of(spec)))
    [fact] = rows(svc.engine, feed_store.DeliveryFact)
    assert (fact.job_id, fact.channel, fact.status) == ("j-1", channel_of(spec).value, "delivered")


@case(catalogue.MATCHER, InterestProfile)
async def matcher_indexes_the_profile(svc, spec):
    await deliver_v2(svc, spec, sample(InterestProfile), "vol-1")
    assert len(svc.state.index) == 1


@case(catalogue.MATCHER, Taxonomy)
async def matcher_applies_the_taxonomy(svc, spec):
    await deliver_v2(svc, spec, sample(Taxonomy))
    assert set(svc.state.index.taxonomy) == {"education"}


@case(catalogue.MATCHER, ReleaseWatermark)
async def matcher_reads_its_watermark(svc, spec):
    mark = sample(ReleaseWatermark)
    await deliver_v2(svc, spec, mark, "0-of-1")
    assert svc.state.released_until == mark.released_until


@case(catalogue.MATCHER, MessagePublished)
async def matcher_keeps_and_matches_the_message(svc, spec):
    await svc.bus.deliver(catalogue.PROFILE_UPDATED, sample(InterestProfile), "vol-1")
    svc.state.rebuilt.set()  # the start's rebuild is over: live messages are matched
    await deliver_v2(svc, spec, published())
    assert [r.event.message_id for r in svc.handlers.history.records] == ["m-1"]  # the replay for the rebuild
    assert [(s.volunteer_id, s.message_id) for s in svc.bus.events(catalogue.SUGGESTION_MADE)] == [("vol-1", "m-1")]


@case(catalogue.MATCHER, MessageWithdrawn)
async def matcher_keeps_the_withdrawal(svc, spec):
    await deliver_v2(svc, spec, sample(MessageWithdrawn))
    assert [r.event.message_id for r in svc.handlers.history.records] == ["m-1"]


@case(catalogue.DISPATCH_EMAIL, Suppressed)
async def dispatch_email_learns_the_suppression(svc, spec):
    await deliver_v2(svc, spec, sample(Suppressed))
    assert HASH in svc.dispatcher.suppressed


@case(catalogue.DISPATCH_EMAIL, MessageWithdrawn)
async def dispatch_email_learns_the_withdrawal(svc, spec):
    await deliver_v2(svc, spec, sample(MessageWithdrawn))
    assert "m-1" in svc.dispatcher.withdrawn.ids


@case(catalogue.DISPATCH_EMAIL, EmailJob)
async def dispatch_email_skips_a_job_to_a_suppressed_address(svc, spec):
    await svc.dispatcher.suppressed.replay.prepare()
    await svc.dispatcher.withdrawn.replay.prepare()
    await svc.bus.deliver(catalogue.SUPPRESSION_ADDED, sample(Suppressed))
    await deliver_v2(svc, spec, sample(EmailJob))
    [result] = svc.bus.events(catalogue.EMAIL_RESULT)
    assert (result.job_id, result.status) == ("j-1", DeliveryStatus.failed)


SOCIAL = (catalogue.DISPATCH_MASTODON, catalogue.DISPATCH_BLUESKY, catalogue.DISPATCH_X)


@case(SOCIAL, MessageWithdrawn)
async def social_learns_the_withdrawal(svc, spec):
    await deliver_v2(svc, spec, sample(MessageWithdrawn))
    assert "m-1" in svc.dispatcher.withdrawn.ids


@case(SOCIAL, SocialPostJob)
async def social_drops_a_job_of_a_withdrawn_message(svc, spec):
    await svc.dispatcher.withdrawn.replay.prepare()
    await svc.bus.deliver(catalogue.MESSAGE_WITHDRAWN, sample(MessageWithdrawn))
    await deliver_v2(svc, spec, sample(SocialPostJob))
    [result] = svc.bus.events(svc.results)
    assert (result.job_id, result.status, result.channel) == ("j-1", DeliveryStatus.failed, channel_of(spec))


CONSUMERS = [(spec, service) for spec in SUBJECTS for service in spec.consumers]


def test_every_consumer_of_the_catalogue_has_a_case():
    """A new subject or consumer needs its case here before it ships."""
    missing = [f"{service} <- {spec.pattern} ({spec.model.__name__})" for spec, service in CONSUMERS
               if (service, spec.model) not in CASES]
    assert not missing


@pytest.mark.parametrize(("spec", "service"), CONSUMERS, ids=[f"{s.pattern}->{c}" for s, c in CONSUMERS])
async def test_a_newer_producers_payload_is_handled_by_every_consumer(spec, service, tmp_path):
    run = CASES.get((service, spec.model))
    if run is None:
        pytest.fail(f"no case for {service} <- {spec.pattern}")
    svc = SERVICES[service](tmp_path)
    try:
        await run(svc, spec)
    finally:
        if hasattr(svc, "engine"):
            svc.engine.dispose()


# -- a breaking change: a new schema_version and its upcaster -------------------------------------


class Greeting(Event):
    """v2 of a (test) event: ``name`` split into ``given`` and ``family``."""

    schema_version: Literal[2] = 2
    given: str = Field(min_length=1)
    family: str = Field(min_length=1)


@upcaster(Greeting, 1)
def _greeting_v1_to_v2(payload: dict[str, Any]) -> dict[str, Any]:
    given, _, family = payload.pop("name").partition(" ")
    return {**payload, "schema_version": 2, "given": given, "family": family}


GREETINGS = SubjectSpec(pattern="test.greetings", stream=StreamSpec("TEST", ("test.greetings",), catalogue.FEED_STREAM.retention, "t"),
                        model=Greeting, producer="old-producer", consumers=("new-consumer",), description="test")


def test_an_upcaster_turns_a_v1_payload_into_the_current_model():
    v1 = b'{"schema_version": 1, "event_id": "e-1", "name": "Camille Dupont"}'
    greeting = read_event(Greeting, v1)
    assert (greeting.schema_version, greeting.given, greeting.family, greeting.event_id) == (2, "Camille", "Dupont", "e-1")
    current = Greeting(given="Léa", family="Martin")
    assert read_event(Greeting, current.model_dump_json()) == current  # a v2 payload is not touched


async def test_the_bus_upcasts_before_validating():
    bus = FakeBus("new-consumer")
    seen: list[Greeting] = []

    @bus.subscriber(GREETINGS, durable="greetings")
    async def greet(event: Greeting, _msg) -> None:
        seen.append(event)

    [msg] = await bus.deliver(GREETINGS, {"schema_version": 1, "name": "Camille Dupont", **NEWER})
    assert msg.settled == "ack" and [(g.given, g.family) for g in seen] == [("Camille", "Dupont")]
    [bad] = await bus.deliver(GREETINGS, b'{"schema_version": 1, "name": ')  # not JSON: terminated as ever
    assert bad.settled == "term" and len(seen) == 1


def test_the_sealed_content_of_an_email_job_stays_strict():
    """Unknown fields are ignored on events, never inside the seal."""
    from pydantic import ValidationError

    from shared.events import OpenedEmailJob
    from shared.sealed import open_email, seal_email
    from tests.support.transit_keys import EMAIL_SEALER

    opened = OpenedEmailJob(job_id="j-1", relay_id="r-1", message_id="m-1", volunteer_id="vol-1", recipient_hash=HASH,
                            sender_name="Camille", reply_to="camille@exemple.fr", recipient_name="Léa",
                            recipient_email="lea@exemple.fr", subject="Écoles", body_text="Texte",
                            unsubscribe_url="https://campagne.example/u/x")
    job = seal_email(opened, EMAIL_SEALER)
    assert read_event(EmailJob, json.dumps(v2(job))) == job  # the clear envelope tolerates a newer producer
    assert open_email(job, EMAIL_SEALER) == opened
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        OpenedEmailJob.model_validate({**opened.model_dump(), "bcc": "someone@exemple.fr"})
