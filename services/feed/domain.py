"""Feed's rules, free of I/O: who may do what, what a publishable message
is, how a message moves from draft to withdrawn, and how staff aggregates
are worded so that no figure singles anyone out."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Annotated
from urllib.parse import urlsplit

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints

from services.feed import content
from shared.events import InterestName, TaxonomyTerm, Variants

# -- staff roles ------------------------------------------------------------------------------


class Role(StrEnum):
    editor = "editor"  # writes drafts
    publisher = "publisher"  # approves, publishes, withdraws
    admin = "admin"  # accounts, taxonomy, campaign settings (and all of the above)


_RANK = {Role.editor: 1, Role.publisher: 2, Role.admin: 3}


@dataclass(frozen=True)
class Actor:
    """Who acts: a staff account, the bootstrap admin, or the scheduler."""

    id: str
    name: str
    role: str


BOOTSTRAP = Actor(id="bootstrap", name="bootstrap admin", role=Role.admin.value)
SCHEDULER = Actor(id="system:scheduler", name="scheduler", role="system")


def role_allows(role: Role | str, needed: Role) -> bool:
    """A higher role may do what a lower one may."""
    try:
        return _RANK[Role(role)] >= _RANK[needed]
    except ValueError:
        return False


# -- the lifecycle ------------------------------------------------------------------------------


class State(StrEnum):
    draft = "draft"
    approved = "approved"
    scheduled = "scheduled"  # published by a publisher, waiting for its embargo (publish_at)
    published = "published"
    withdrawn = "withdrawn"
    expired = "expired"


class Action(StrEnum):
    edit = "edit"
    approve = "approve"
    publish = "publish"
    release = "release"  # the scheduler: the embargo is over
    withdraw = "withdraw"
    expire = "expire"


# action -> {from state: to state}
TRANSITIONS: dict[Action, dict[State, State]] = {
    Action.edit: {State.draft: State.draft, State.approved: State.draft},  # an edit needs a new approval
    Action.approve: {State.draft: State.approved},
    Action.publish: {State.approved: State.published},  # or scheduled, while embargoed
    Action.release: {State.scheduled: State.published},
    Action.withdraw: {State.draft: State.withdrawn, State.approved: State.withdrawn,
                      State.scheduled: State.withdrawn, State.published: State.withdrawn},
    # A scheduled message whose expiry passed before its embargo (feed was
    # down through both) expires without ever going out.
    Action.expire: {State.published: State.expired, State.scheduled: State.expired},
}
LIVE = frozenset({State.published})  # what the volunteers have: leaving it publishes a withdrawal


class TransitionError(ValueError):
    """An action the message's state does not allow (an HTTP 409)."""

    def __init__(self, state: State, action: Action) -> None:
        self.state, self.action = state, action
        moves = "; ".join(f"{a} → {b}" for a, b in TRANSITIONS[action].items())
        if action is Action.publish:
            moves += f" (or {State.scheduled} while its publish_at is ahead)"
        super().__init__(f"cannot {action} a message that is {state}: {action} goes {moves}")


def next_state(state: State | str, action: Action, *, embargoed: bool = False) -> State:
    """Where ``action`` takes a message in ``state``, or a TransitionError."""
    state = State(state)
    target = TRANSITIONS[action].get(state)
    if target is None:
        raise TransitionError(state, action)
    if action is Action.publish and embargoed:
        return State.scheduled
    return target


def from_states(action: Action) -> tuple[State, ...]:
    return tuple(TRANSITIONS[action])


# -- what staff write -------------------------------------------------------------------------


def _http_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc or any(c.isspace() for c in value):
        raise ValueError("must be an http(s) URL without spaces")
    return value


Link = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=2000),
                 AfterValidator(_http_url)]
Region = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
Locale = Annotated[str, StringConstraints(pattern=r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})*$")]
Markdown = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=50_000)]
LOCAL_PREFIX = "local:"


class MessageDraft(BaseModel):
    """A campaign message as staff write it (a draft, or a one-step publish)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    title: str = Field(min_length=1, max_length=200)
    body: Markdown = Field(description="Markdown; rendered to sanitized HTML (body_html)")
    link: Link | None = Field(default=None, description="the page the message points to")
    interests: list[InterestName] = Field(
        default_factory=list, max_length=20,
        description="taxonomy words, or local:<commune>; empty means the message suits everyone",
    )
    regions: list[Region] = Field(default_factory=list, max_length=50, description="empty: everywhere")
    locales: list[Locale] = Field(default_factory=list, max_length=20, description="empty: all")
    priority: int = Field(default=1, ge=0, le=3, description="0 low … 3 urgent")
    publish_at: AwareDatetime | None = Field(default=None, description="embargo: not before this time")
    expires_at: AwareDatetime | None = Field(default=None, description="withdrawn by itself at this time")
    variants: Variants

    def normalized_interests(self) -> tuple[str, ...]:
        return tuple(sorted(set(self.interests)))


class MessagePatch(BaseModel):
    """A partial edit of a draft: the fields sent replace the stored ones
    (``null`` clears an optional one)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    title: str | None = None
    body: str | None = None
    link: str | None = None
    interests: list[str] | None = None
    regions: list[str] | None = None
    locales: list[str] | None = None
    priority: int | None = None
    publish_at: AwareDatetime | None = None
    expires_at: AwareDatetime | None = None
    variants: dict | None = None


@dataclass(frozen=True)
class Problem:
    """One reason a message is refused: where (a body location) and why."""

    loc: tuple[str | int, ...]
    msg: str
    kind: str  # counted in metrics: taxonomy, schedule, limits, injection


def schedule_problems(publish_at: datetime | None, expires_at: datetime | None, now: datetime) -> list[Problem]:
    if expires_at is None:
        return []
    if publish_at is not None and expires_at <= publish_at:
        return [Problem(("expires_at",), f"expires_at ({expires_at.isoformat()}) is not after publish_at "
                        f"({publish_at.isoformat()}): a message cannot expire before its embargo ends",
                        "schedule")]
    if expires_at <= now:
        return [Problem(("expires_at",), f"expires_at ({expires_at.isoformat()}) is already past", "schedule")]
    return []


def interest_problems(interests: Iterable[str], taxonomy: frozenset[str] | None) -> list[Problem]:
    """Once the campaign has a taxonomy, messages use its words only;
    ``local:<commune>`` is always allowed."""
    problems = []
    for i, interest in enumerate(interests):
        if interest.startswith(LOCAL_PREFIX):
            if interest == LOCAL_PREFIX:
                problems.append(Problem(("interests", i), "interests: local: needs a commune (local:<commune>)",
                                        "taxonomy"))
        elif taxonomy is not None and interest not in taxonomy:
            problems.append(Problem(("interests", i), f"interests: unknown interest {interest!r}: "
                                    "not in the campaign's taxonomy (GET /taxonomy)", "taxonomy"))
    return problems


def content_problems(draft: MessageDraft, limits: tuple[content.ChannelLimit, ...]) -> list[Problem]:
    problems = []
    if found := content.active_content(draft.body):
        problems.append(Problem(("body",), "body: script injection refused (" + ", ".join(found)
                                + "): write Markdown; plain formatting HTML is fine", "injection"))
    if draft.variants.short is not None:
        problems += [Problem(("variants", "short", "text"), sentence, "limits")
                     for sentence in content.short_post_problems(draft.variants.short.text, draft.link, limits)]
    return problems


def message_problems(draft: MessageDraft, *, taxonomy: frozenset[str] | None,
                     limits: tuple[content.ChannelLimit, ...], now: datetime) -> list[Problem]:
    """Every rule a schema cannot say: the taxonomy, the channel limits,
    script injection, and a coherent schedule."""
    return (interest_problems(draft.interests, taxonomy) + content_problems(draft, limits)
            + schedule_problems(draft.publish_at, draft.expires_at, now))


# -- the taxonomy -------------------------------------------------------------------------------


def taxonomy_digest(terms: Iterable[TaxonomyTerm]) -> str:
    """A hash of the content: the Nats-Msg-Id of its publication, so the
    same taxonomy published twice is stored once."""
    canonical = sorted((t.model_dump(mode="json") for t in terms), key=lambda t: t["name"])
    return hashlib.sha256(json.dumps(canonical, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


def duplicate_terms(terms: Iterable[TaxonomyTerm]) -> list[Problem]:
    seen: set[str] = set()
    problems = []
    for i, term in enumerate(terms):
        if term.name in seen:
            problems.append(Problem(("terms", i, "name"), f"terms.{i}.name: {term.name!r} appears twice", "taxonomy"))
        seen.add(term.name)
    return problems


# -- aggregates ---------------------------------------------------------------------------------


class MessageStats(BaseModel):
    """The publisher's operational view of one message: exact totals, no
    breakdown (the k-anonymous breakdown is ``GET /messages/{id}/reach``)."""

    volunteers_suggested: int = 0
    relays: int = 0
    emails_queued: int = 0
    emails_delivered: int = 0
    emails_failed: int = 0


class Cell(BaseModel):
    """One figure of a breakdown: null and ``suppressed`` under k."""

    value: int | None
    suppressed: bool = False


def cell(n: int, k: int) -> Cell:
    """Under k (zero included: "nobody" is a figure too) the value is hidden."""
    return Cell(value=None, suppressed=True) if n < k else Cell(value=n)


def suppress_group(values: Mapping[str, int], k: int, *, total_shown: bool) -> dict[str, Cell]:
    """Cells that add up to a figure staff can see (the outcomes of the
    emails queued): hiding one alone would let it be read by subtraction,
    so a second one, the smallest shown, is hidden with it."""
    cells = {name: cell(n, k) for name, n in values.items()}
    hidden = [name for name, c in cells.items() if c.suppressed]
    shown = sorted((n, name) for name, n in values.items() if not cells[name].suppressed)
    if total_shown and len(hidden) == 1 and shown:
        cells[shown[0][1]] = Cell(value=None, suppressed=True)
    return cells


class Outcome(StrEnum):
    """What became of one dispatch job, as staff may count it."""

    reached = "reached"
    opted_out = "opted_out"  # the recipient had unsubscribed: nothing was sent
    bounced = "bounced"  # the receiving server refused for good (5xx)
    dropped = "dropped"  # the message was withdrawn before the job ran
    failed = "failed"  # anything else


def delivery_outcome(status: str, reason: str | None) -> Outcome:
    if status == "delivered":
        return Outcome.reached
    reason = (reason or "").lower()
    if reason == "suppressed":
        return Outcome.opted_out
    if reason == "withdrawn":
        return Outcome.dropped
    if reason.startswith("smtp 5"):
        return Outcome.bounced
    return Outcome.failed


CHANNEL_OUTCOMES = tuple(Outcome)


class ChannelReach(BaseModel):
    """One channel: jobs queued by relays, and what became of them."""

    queued: Cell
    reached: Cell
    opted_out: Cell
    bounced: Cell
    dropped: Cell
    failed: Cell


class SliceReach(BaseModel):
    """Volunteers whose suggestion matched this interest (or reached this
    region), and what their relays did (a volunteer in two slices counts in
    both)."""

    volunteers_suggested: Cell
    audience: Cell
    relays: Cell
    reached: Cell


class Reach(BaseModel):
    """How far a message travelled, k-anonymous: every figure under ``k``
    is null with ``suppressed: true``."""

    message_id: str
    k: int
    volunteers_suggested: Cell
    audience: Cell = Field(description="confirmed contacts the suggested volunteers could relay to")
    relays: Cell
    channels: dict[str, ChannelReach]
    by_interest: dict[str, SliceReach]
    by_region: dict[str, SliceReach] = Field(
        description="the targeted regions; for a message without targeting, only the regions "
                    "with at least k volunteers suggested")


def reach_report(message_id: str, interests: Iterable[str], counts: Mapping, k: int,
                 channels: Iterable[str], regions: Iterable[str] = ()) -> Reach:
    """Shape raw counts for staff. Breakdown rows are the message's own
    interests and targeted regions, whatever the facts say: a row's mere
    presence must not tell that some volunteer matched it. A message that
    targets no region lists the regions where at least ``k`` volunteers were
    suggested, which tells nothing about any one of them."""
    outcomes: dict[str, dict[str, int]] = {ch: {o.value: 0 for o in Outcome} for ch in channels}
    for channel, status, reason, n in counts["results"]:
        if channel in outcomes:
            outcomes[channel][delivery_outcome(status, reason).value] += n
    by_channel = {}
    for ch, per_outcome in outcomes.items():
        queued = cell(counts["queued"].get(ch, 0), k)
        by_channel[ch] = ChannelReach(queued=queued,
                                      **suppress_group(per_outcome, k, total_shown=not queued.suppressed))
    region_rows = set(regions) or {r for r, row in counts["by_region"].items() if row["volunteers_suggested"] >= k}
    return Reach(message_id=message_id, k=k,
                 volunteers_suggested=cell(counts["volunteers_suggested"], k),
                 audience=cell(counts["audience"], k), relays=cell(counts["relays"], k),
                 channels=by_channel,
                 by_interest=_slices(set(interests), counts["by_interest"], k),
                 by_region=_slices(region_rows, counts["by_region"], k))


def _slices(rows: set[str], counts: Mapping[str, Mapping[str, int]], k: int) -> dict[str, SliceReach]:
    empty = {"volunteers_suggested": 0, "audience": 0, "relays": 0, "reached": 0}
    return {row: SliceReach(**{name: cell(n, k) for name, n in counts.get(row, empty).items()})
            for row in sorted(rows)}


class TimelinePoint(BaseModel):
    at: datetime
    reached: int


class Timeline(BaseModel):
    """Recipients reached over time, per channel, cumulative. A point is
    shown only once the count grew by at least ``k`` since the previous one,
    so no difference between two points can be a single person, nor tell
    when one contact got the message."""

    message_id: str
    k: int
    channels: dict[str, list[TimelinePoint]]


def reach_timeline(message_id: str, delivered: Iterable[tuple[datetime, str]], k: int,
                   channels: Iterable[str], max_points: int = 60) -> Timeline:
    """``delivered``: (when, channel) of each delivered job, in time order."""
    times: dict[str, list[datetime]] = {ch: [] for ch in channels}
    for at, channel in delivered:
        if channel in times:
            times[channel].append(at)
    series = {}
    for channel, ats in times.items():
        step = max(k, -(-len(ats) // max_points))  # coarser steps keep a long campaign to max_points
        series[channel] = [TimelinePoint(at=ats[n - 1], reached=n) for n in range(step, len(ats) + 1, step)]
    return Timeline(message_id=message_id, k=k, channels=series)
