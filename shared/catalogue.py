"""Every JetStream stream and NATS subject of Maillage, declared once.

Services never spell a subject themselves: they take a ``SubjectSpec`` from
here, and ``shared.messaging`` refuses to publish or subscribe to anything that is
not declared, or by a service that is not its declared producer/consumer.
The README's subject table and the NATS permission config are generated from
this module.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from nats.js.api import DiscardPolicy, RetentionPolicy, StorageType, StreamConfig
from pydantic import BaseModel

from shared import events

FEED = "feed"
MATCHER = "matcher"
CONTACTS = "contacts"
DISPATCH_EMAIL = "dispatch-email"
DISPATCH_MASTODON = "dispatch-mastodon"
DISPATCH_BLUESKY = "dispatch-bluesky"
DISPATCH_X = "dispatch-x"
SERVICES = (FEED, MATCHER, CONTACTS, DISPATCH_EMAIL, DISPATCH_MASTODON, DISPATCH_BLUESKY, DISPATCH_X)

DAY = 24 * 3600


@dataclass(frozen=True)
class StreamSpec:
    name: str
    subjects: tuple[str, ...]
    retention: RetentionPolicy
    description: str
    max_age: timedelta = timedelta(days=120)
    duplicate_window: timedelta = timedelta(minutes=2)
    max_msgs_per_subject: int = -1
    max_bytes: int = -1
    discard: DiscardPolicy = DiscardPolicy.OLD

    def config(self, replicas: int = 1) -> StreamConfig:
        return StreamConfig(
            name=self.name,
            description=self.description,
            subjects=list(self.subjects),
            retention=self.retention,
            storage=StorageType.FILE,
            max_age=self.max_age.total_seconds(),
            duplicate_window=self.duplicate_window.total_seconds(),
            max_msgs_per_subject=self.max_msgs_per_subject,
            max_bytes=self.max_bytes,
            discard=self.discard,
            num_replicas=replicas,
        )


@dataclass(frozen=True)
class SubjectSpec:
    """One subject (a NATS pattern: ``*`` stands for a volunteer id)."""

    pattern: str
    stream: StreamSpec
    model: type[BaseModel]
    producer: str
    consumers: tuple[str, ...]
    description: str
    carries_pii: bool = False
    key: str | None = None  # what the ``*`` token holds, for the docs

    def subject(self, *tokens: str) -> str:
        """The concrete subject, with each ``*`` replaced by a token."""
        parts = self.pattern.split(".")
        wildcards = [i for i, p in enumerate(parts) if p == "*"]
        if len(tokens) != len(wildcards):
            raise ValueError(f"{self.pattern} takes {len(wildcards)} token(s), got {len(tokens)}")
        for i, token in zip(wildcards, tokens, strict=True):
            if not token or any(c in token for c in ".*> \t\r\n"):
                raise ValueError(f"invalid subject token {token!r} for {self.pattern}")
            parts[i] = token
        return ".".join(parts)

    def matches(self, subject: str) -> bool:
        return subject_matches(self.pattern, subject)


def subject_matches(pattern: str, subject: str) -> bool:
    """NATS wildcard matching: ``*`` one token, ``>`` one or more trailing."""
    p, s = pattern.split("."), subject.split(".")
    for i, token in enumerate(p):
        if token == ">":
            return len(s) > i
        if i >= len(s) or (token != "*" and token != s[i]):
            return False
    return len(p) == len(s)


FEED_STREAM = StreamSpec(
    name="FEED",
    subjects=("feed.messages.>",),
    retention=RetentionPolicy.LIMITS,
    description="Campaign messages as staff publish them.",
)
TAXONOMY_STREAM = StreamSpec(
    name="TAXONOMY",
    subjects=("feed.taxonomy",),
    retention=RetentionPolicy.LIMITS,
    max_age=timedelta(0),
    max_msgs_per_subject=1,  # the current taxonomy, replayed by every service on start
    description="The campaign's interest taxonomy (the latest version).",
)
PROFILES_STREAM = StreamSpec(
    name="PROFILES",
    subjects=("contacts.profiles.*",),
    retention=RetentionPolicy.LIMITS,
    max_age=timedelta(0),  # a profile lives until replaced
    max_msgs_per_subject=1,  # the last profile per volunteer: matchers rebuild from it
    description="Each volunteer's latest opt-in interest profile (counts only).",
)
RELAYS_STREAM = StreamSpec(
    name="RELAYS",
    subjects=("contacts.relays",),
    retention=RetentionPolicy.LIMITS,
    description="Relay clicks, as counts for staff aggregates.",
)
SUGGESTIONS_STREAM = StreamSpec(
    name="SUGGESTIONS",
    subjects=("matcher.suggestions.*",),
    retention=RetentionPolicy.LIMITS,
    max_age=timedelta(days=30),
    description="Matcher suggestions, one subject per volunteer.",
)
MATCHER_STATE_STREAM = StreamSpec(
    name="MATCHER_STATE",
    subjects=("matcher.state.*",),
    retention=RetentionPolicy.LIMITS,
    max_age=timedelta(0),
    max_msgs_per_subject=1,  # the latest watermark per partition
    description="Each matcher partition's release watermark, read back on restart.",
)
DISPATCH_JOBS_STREAM = StreamSpec(
    name="DISPATCH_JOBS",
    subjects=("dispatch.*.jobs",),
    retention=RetentionPolicy.WORK_QUEUE,
    max_age=timedelta(days=7),
    # Dedupe a whole relay even if the volunteer's client retries it later.
    duplicate_window=timedelta(hours=1),
    description="One job per recipient or post; work-queue, removed once acked.",
)
DISPATCH_RESULTS_STREAM = StreamSpec(
    name="DISPATCH_RESULTS",
    subjects=("dispatch.*.results",),
    retention=RetentionPolicy.LIMITS,
    description="What became of each dispatch job (no recipient identity).",
)
DISPATCH_DEAD_STREAM = StreamSpec(
    name="DISPATCH_DEAD",
    subjects=("dispatch.*.dead",),
    retention=RetentionPolicy.LIMITS,
    max_age=timedelta(days=30),
    description="Dead letters: jobs that failed on every attempt (ids only), for operations to replay.",
)
DISPATCH_BOUNCES_STREAM = StreamSpec(
    name="DISPATCH_BOUNCES",
    subjects=("dispatch.*.bounces",),
    retention=RetentionPolicy.LIMITS,
    description="Hard bounces read from delivery status notifications (address hashes only).",
)
OUTCOMES_STREAM = StreamSpec(
    name="OUTCOMES",
    subjects=("contacts.outcomes",),
    retention=RetentionPolicy.LIMITS,
    description="What became of a job, learnt after its dispatch result (a hard bounce): no recipient identity.",
)

SUPPRESSIONS_STREAM = StreamSpec(
    name="SUPPRESSIONS",
    subjects=("contacts.suppressions",),
    retention=RetentionPolicy.LIMITS,
    max_age=timedelta(0),  # an opt-out is for good; dispatchers replay it all on start
    description="Keyed hashes of addresses that must never be written to again.",
)

STREAMS: tuple[StreamSpec, ...] = (
    FEED_STREAM,
    TAXONOMY_STREAM,
    PROFILES_STREAM,
    RELAYS_STREAM,
    SUGGESTIONS_STREAM,
    MATCHER_STATE_STREAM,
    DISPATCH_JOBS_STREAM,
    DISPATCH_RESULTS_STREAM,
    DISPATCH_DEAD_STREAM,
    DISPATCH_BOUNCES_STREAM,
    OUTCOMES_STREAM,
    SUPPRESSIONS_STREAM,
)

MESSAGE_PUBLISHED = SubjectSpec(
    pattern="feed.messages.published",
    stream=FEED_STREAM,
    model=events.MessagePublished,
    producer=FEED,
    consumers=(MATCHER, CONTACTS),
    description="A campaign message went public.",
)
MESSAGE_WITHDRAWN = SubjectSpec(
    pattern="feed.messages.withdrawn",
    stream=FEED_STREAM,
    model=events.MessageWithdrawn,
    producer=FEED,
    consumers=(MATCHER, CONTACTS, DISPATCH_EMAIL, DISPATCH_MASTODON, DISPATCH_BLUESKY, DISPATCH_X),
    description="A message was withdrawn or expired: drop its suggestions and pending jobs.",
)
TAXONOMY_PUBLISHED = SubjectSpec(
    pattern="feed.taxonomy",
    stream=TAXONOMY_STREAM,
    model=events.Taxonomy,
    producer=FEED,
    consumers=(CONTACTS, MATCHER),
    description="The campaign's interest taxonomy changed.",
)
PROFILE_UPDATED = SubjectSpec(
    pattern="contacts.profiles.*",
    key="volunteer id",
    stream=PROFILES_STREAM,
    model=events.InterestProfile,
    producer=CONTACTS,
    consumers=(MATCHER,),
    description="A volunteer's opt-in interest profile changed.",
)
RELAY_REQUESTED = SubjectSpec(
    pattern="contacts.relays",
    stream=RELAYS_STREAM,
    model=events.RelayRequested,
    producer=CONTACTS,
    consumers=(FEED,),
    description="A volunteer relayed a message (counts per channel).",
)
SUGGESTION_MADE = SubjectSpec(
    pattern="matcher.suggestions.*",
    key="volunteer id",
    stream=SUGGESTIONS_STREAM,
    model=events.Suggestion,
    producer=MATCHER,
    consumers=(CONTACTS, FEED),
    description="This message fits this volunteer's network.",
)
RELEASE_WATERMARK = SubjectSpec(
    pattern="matcher.state.*",
    key="partition",
    stream=MATCHER_STATE_STREAM,
    model=events.ReleaseWatermark,
    producer=MATCHER,
    consumers=(MATCHER,),
    description="A matcher partition released its queues up to this time.",
)
EMAIL_JOB = SubjectSpec(
    pattern="dispatch.email.jobs",
    stream=DISPATCH_JOBS_STREAM,
    model=events.EmailJob,
    producer=CONTACTS,
    consumers=(DISPATCH_EMAIL,),
    description="Send one email to one contact.",
    carries_pii=True,
)
EMAIL_RESULT = SubjectSpec(
    pattern="dispatch.email.results",
    stream=DISPATCH_RESULTS_STREAM,
    model=events.DispatchResult,
    producer=DISPATCH_EMAIL,
    consumers=(FEED, CONTACTS),
    description="Outcome of one email job.",
)
EMAIL_DEAD = SubjectSpec(
    pattern="dispatch.email.dead",
    stream=DISPATCH_DEAD_STREAM,
    model=events.DeadLetter,
    producer=DISPATCH_EMAIL,
    consumers=(CONTACTS,),
    description="An email job failed on every attempt: its ids, for replay (contacts rebuilds the job).",
)
EMAIL_BOUNCE = SubjectSpec(
    pattern="dispatch.email.bounces",
    stream=DISPATCH_BOUNCES_STREAM,
    model=events.BounceReported,
    producer=DISPATCH_EMAIL,
    consumers=(CONTACTS,),
    description="A hard bounce (RFC 3464 DSN) for a job: contacts suppresses the address.",
)
# Contacts, not dispatch: the job's relay, message and volunteer are in its
# history, where the bounce already lands; dispatch keeps only the recipient.
OUTCOME_REVISED = SubjectSpec(
    pattern="contacts.outcomes",
    stream=OUTCOMES_STREAM,
    model=events.DispatchResult,
    producer=CONTACTS,
    consumers=(FEED,),
    description="A job's outcome changed after its result (an email delivered, then bounced): "
                "staff figures move it as the volunteer's history does.",
)


def _social_subjects(network: str, dispatcher: str, label: str) -> tuple[SubjectSpec, SubjectSpec]:
    """A social network's job and result subjects: every network is
    declared alike, so one shape for all."""
    job = SubjectSpec(
        pattern=f"dispatch.{network}.jobs",
        stream=DISPATCH_JOBS_STREAM,
        model=events.SocialPostJob,
        producer=CONTACTS,
        consumers=(dispatcher,),
        description=f"Post a message on one volunteer's {label} account (credentials sealed).",
        carries_pii=True,  # the volunteer's account credentials, sealed
    )
    result = SubjectSpec(
        pattern=f"dispatch.{network}.results",
        stream=DISPATCH_RESULTS_STREAM,
        model=events.DispatchResult,
        producer=dispatcher,
        consumers=(FEED, CONTACTS),
        description=f"Outcome of one {label} post (token_revoked: the volunteer must reconnect).",
    )
    return job, result


MASTODON_JOB, MASTODON_RESULT = _social_subjects("mastodon", DISPATCH_MASTODON, "Mastodon")
BLUESKY_JOB, BLUESKY_RESULT = _social_subjects("bluesky", DISPATCH_BLUESKY, "Bluesky")
X_JOB, X_RESULT = _social_subjects("x", DISPATCH_X, "X")
SOCIAL_JOBS = {events.Channel.mastodon: MASTODON_JOB, events.Channel.bluesky: BLUESKY_JOB, events.Channel.x: X_JOB}
DISPATCH_RESULT_SUBJECTS = (EMAIL_RESULT, MASTODON_RESULT, BLUESKY_RESULT, X_RESULT)  # feed and contacts follow all

SUPPRESSION_ADDED = SubjectSpec(
    pattern="contacts.suppressions",
    stream=SUPPRESSIONS_STREAM,
    model=events.Suppressed,
    producer=CONTACTS,
    consumers=(DISPATCH_EMAIL,),
    description="An address (as a keyed hash) unsubscribed or bounced: never write to it again.",
)

SUBJECTS: tuple[SubjectSpec, ...] = (
    MESSAGE_PUBLISHED,
    MESSAGE_WITHDRAWN,
    TAXONOMY_PUBLISHED,
    PROFILE_UPDATED,
    RELAY_REQUESTED,
    SUGGESTION_MADE,
    RELEASE_WATERMARK,
    EMAIL_JOB,
    EMAIL_RESULT,
    EMAIL_DEAD,
    EMAIL_BOUNCE,
    OUTCOME_REVISED,
    MASTODON_JOB,
    MASTODON_RESULT,
    BLUESKY_JOB,
    BLUESKY_RESULT,
    X_JOB,
    X_RESULT,
    SUPPRESSION_ADDED,
)


def spec_for(subject: str) -> SubjectSpec | None:
    return next((s for s in SUBJECTS if s.matches(subject)), None)


def streams_of(service: str) -> tuple[StreamSpec, ...]:
    """The streams a service touches, in catalogue order."""
    used = {s.stream.name for s in SUBJECTS if service == s.producer or service in s.consumers}
    return tuple(s for s in STREAMS if s.name in used)
