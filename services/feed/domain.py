"""Feed's rules, free of I/O: who may do what, what a publishable message
is, how a message moves from draft to withdrawn, and how staff aggregates
are worded so that no figure singles anyone out."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Annotated
from urllib.parse import urlsplit

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints

from services.feed import content
from shared.events import EmailVariant, InterestName, TaxonomyTerm, Variants
from shared.outcomes import OutcomeKind, StaffFigure, meaning
from shared.text import HeaderText

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


class StaffEmailVariant(EmailVariant):
    """The email variant as staff write it: its subject becomes every
    relayed email's Subject header, so a control character in it is a 422
    naming ``variants.email.subject`` rather than a header to smuggle."""

    subject: HeaderText = Field(min_length=1, max_length=200)


class StaffVariants(Variants):
    email: StaffEmailVariant


class MessageDraft(BaseModel):
    """A campaign message as staff write it (a draft, or a one-step publish)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    # The CLI's and the console's default subject is the title: refused at
    # the title, the error names what the writer typed.
    title: HeaderText = Field(min_length=1, max_length=200)
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
    variants: StaffVariants

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
#
# Every figure staff can see (the message list, a message's stats, /reach,
# the timeline, the console and its live stream, the CLI) comes from
# ``staff_report`` and nothing else reads the facts for staff. Its rules
# count *volunteers*, because a volunteer relaying to forty friends is still
# one person whose relay must not be read off a figure:
#
# 1. A cell is shown only when at least k distinct volunteers contributed to
#    it: 300 recipients reached through three volunteers stay hidden.
# 2. A shown cell moves only when at least k volunteers changed it since the
#    value it last showed. Were it to follow the facts, two successive
#    reports would differ by one volunteer's relay (six volunteers relaying
#    one after another gave each one's size by subtraction).
# 3. Cells that add up (a channel's outcomes to its queued jobs; interest
#    and region slices to their total) form a group that moves as a whole,
#    at one cut, or not at all while one of its shown cells changed through
#    fewer than k volunteers: a fresh cell minus a stale neighbour would be
#    that handful's contribution. Within one cut, a slice whose complement
#    is a handful of volunteers is hidden (and a channel outcome hidden
#    alone takes the smallest fresh one with it), since the total minus the
#    slice would be theirs.
#
# A figure can therefore stand still for a while: that is the promise
# (DESIGN.md: "move only when k more contributed"), not a lag to tune away.
# What was shown is persisted by the caller (``ShownState``, JSON) and only
# ever replaced by a later cut that passes these rules, so a restart or a
# second replica cannot show a fresher figure that differences the old one.

CellKey = tuple[str, ...]  # ("relays",), ("channel", "email", "reached"), ("interest", "education", "audience")
TOTALS = ("volunteers_suggested", "audience", "relays")
SLICES = ("interest", "region")
SLICE_METRICS = (*TOTALS, "reached")
UNKNOWN_VOLUNTEER = ""  # facts without a volunteer count as one more person, never as many


class Cell(BaseModel):
    """One figure: null and ``suppressed`` while it may not be shown."""

    value: int | None
    suppressed: bool = False


HIDDEN = Cell(value=None, suppressed=True)


Outcome = StaffFigure  # a channel's figures; which one a job counts in is shared.outcomes.meaning's to say
CHANNEL_OUTCOMES = tuple(Outcome)


@dataclass(frozen=True)
class Facts:
    """What feed recorded about one message, up to a cut, each with the time
    it was recorded (the store's ``recorded_at``)."""

    suggestions: list[tuple[str, int, datetime]]  # volunteer, audience, recorded
    interests: list[tuple[str, str]]  # volunteer, interest matched
    regions: list[tuple[str, str]]  # volunteer, region reached
    relays: list[tuple[str, datetime, Mapping[str, int]]]  # volunteer, recorded, jobs queued per channel
    # volunteer, channel, what became of the jobs, what it was before if that changed (a bounce after
    # delivery), jobs, newest (recorded, or changed)
    deliveries: list[tuple[str, str, OutcomeKind, OutcomeKind | None, int, datetime]]


# cell -> volunteer -> (amount, last changed); an amount of 0: a volunteer whose jobs all left the cell
# (delivered, then bounced), who changed it then but no longer contributes to it
Contributions = dict[CellKey, dict[str, tuple[int, datetime]]]


def contributions(facts: Facts) -> Contributions:
    """Each cell's contributions, volunteer by volunteer: what they add and
    when that last changed. A volunteer who adds nothing is no contributor."""
    cells: Contributions = {}

    def add(key: CellKey, volunteer: str, amount: int, at: datetime) -> None:
        if amount <= 0:
            return
        old = cells.setdefault(key, {}).get(volunteer)
        cells[key][volunteer] = (amount, at) if old is None else (old[0] + amount, max(old[1], at))

    slices: dict[str, list[CellKey]] = {}
    for volunteer, interest in facts.interests:
        slices.setdefault(volunteer, []).append(("interest", interest))
    for volunteer, region in facts.regions:
        slices.setdefault(volunteer, []).append(("region", region))
    suggested_at: dict[str, datetime] = {}
    for volunteer, audience, at in facts.suggestions:
        suggested_at[volunteer] = at
        for prefix in [(), *slices.get(volunteer, ())]:
            add((*prefix, "volunteers_suggested"), volunteer, 1, at)
            add((*prefix, "audience"), volunteer, audience, at)

    def in_slices(volunteer: str, metric: str, amount: int, at: datetime) -> None:
        # A relay or a result may arrive before its suggestion: it joins the
        # slices when the suggestion does, and that is when the slice changed.
        if volunteer in suggested_at:
            for prefix in slices.get(volunteer, ()):
                add((*prefix, metric), volunteer, amount, max(at, suggested_at[volunteer]))

    for volunteer, at, queued in facts.relays:
        add(("relays",), volunteer, 1, at)
        for channel, n in queued.items():
            add(("channel", channel, "queued"), volunteer, n, at)
        in_slices(volunteer, "relays", 1, at)
    moved_out = []
    for volunteer, channel, kind, previous, n, at in facts.deliveries:
        figure = meaning(kind, channel).staff
        add(("channel", channel, figure.value), volunteer, n, at)
        if figure is Outcome.reached:
            in_slices(volunteer, "reached", n, at)
        if previous is not None:
            moved_out.append((volunteer, channel, meaning(previous, channel).staff, at))

    def touch(key: CellKey, volunteer: str, at: datetime) -> None:
        old = cells.setdefault(key, {}).get(volunteer, (0, at))
        cells[key][volunteer] = (old[0], max(old[1], at))

    # A job that left a figure (reached, then bounced) changed that figure
    # too: its volunteer is one of those who changed it then, even with
    # nothing left in it, or a figure could drop by one volunteer's bounce
    # while the report thought it untouched.
    for volunteer, channel, figure, at in moved_out:
        touch(("channel", channel, figure.value), volunteer, at)
        if figure is Outcome.reached and volunteer in suggested_at:
            for prefix in slices.get(volunteer, ()):
                touch((*prefix, "reached"), volunteer, at)
    return cells


@dataclass(frozen=True)
class Shown:
    """A cell's last shown value and the cut it was taken at. ``hidden``:
    kept back at the current cut (a complement too small), though shown once."""

    value: int
    as_of: datetime
    hidden: bool = False


@dataclass(frozen=True)
class ShownState:
    """Every figure staff were shown for one message, and the reach timeline
    (the channels' reached values as they were shown, with their cut)."""

    cells: Mapping[CellKey, Shown] = field(default_factory=dict)
    timeline: Mapping[str, tuple[tuple[datetime, int], ...]] = field(default_factory=dict)

    def to_json(self) -> dict:
        return {"cells": [{"cell": list(key), "value": s.value, "as_of": s.as_of.isoformat(), "hidden": s.hidden}
                          for key, s in sorted(self.cells.items())],
                "timeline": {ch: [[at.isoformat(), n] for at, n in points] for ch, points in self.timeline.items()}}

    @classmethod
    def from_json(cls, data: Mapping | None) -> ShownState:
        if not data:
            return cls()
        return cls(cells={tuple(c["cell"]): Shown(c["value"], datetime.fromisoformat(c["as_of"]), c["hidden"])
                          for c in data.get("cells", ())},
                   timeline={ch: tuple((datetime.fromisoformat(at), n) for at, n in points)
                             for ch, points in data.get("timeline", {}).items()})


def group_of(key: CellKey) -> str:
    """Cells that add up share a group: a channel's outcomes and queued jobs,
    the channels' reached and the slices' reached; each total with its slices."""
    if key[0] == "channel" or key[-1] == "reached":
        return "delivery"
    return key[-1]


def advance(state: ShownState, cells: Contributions, k: int, cut: datetime) -> ShownState | None:
    """The state after ``cut``, or None when no figure may move."""
    shown = dict(state.cells)
    keys = set(cells) | set(shown)
    moved: dict[CellKey, Shown] = {}
    for group in sorted({group_of(key) for key in keys}):
        moved |= _advance_group(sorted(key for key in keys if group_of(key) == group), shown, cells, k, cut)
    if not moved or all(shown.get(key) == s for key, s in moved.items()):
        return None
    timeline = dict(state.timeline)
    for key, s in moved.items():
        if key[0] == "channel" and key[2] == Outcome.reached and s.as_of == cut and not s.hidden:
            timeline[key[1]] = (*timeline.get(key[1], ()), (cut, s.value))
    return ShownState(cells=shown | moved, timeline=timeline)


def _advance_group(members: list[CellKey], shown: Mapping[CellKey, Shown], cells: Contributions, k: int,
                   cut: datetime) -> dict[CellKey, Shown]:
    fresh: dict[CellKey, int] = {}
    for key in members:
        contributors = cells.get(key, {})
        before = shown.get(key)
        if before is None:
            if sum(1 for amount, _ in contributors.values() if amount > 0) >= k:
                fresh[key] = sum(amount for amount, _ in contributors.values())
            continue
        changed = sum(1 for _, at in contributors.values() if at > before.as_of)
        if 0 < changed < k:
            return {}  # rule 3: the whole group waits for k volunteers in this cell
        if changed >= k:
            fresh[key] = sum(amount for amount, _ in contributors.values())
    if not fresh:
        return {}
    visible = set(fresh) | {key for key in members if key in shown}
    hide = _complements(members, visible, set(fresh), fresh, cells, k)
    out = {}
    for key in members:
        if key in fresh and key not in hide:
            out[key] = Shown(fresh[key], cut)
        elif (before := shown.get(key)) is not None:
            out[key] = Shown(before.value, before.as_of, hidden=key in hide)
    return out


def _complements(members: list[CellKey], visible: set[CellKey], fresh: set[CellKey], values: Mapping[CellKey, int],
                 cells: Contributions, k: int) -> set[CellKey]:
    """The cells to keep back at this cut so that no total minus what is
    shown of its parts is a handful (1 to k-1) of volunteers. Only a fresh
    cell can be kept back usefully: an unchanged one is already known."""
    group = set(members)
    hide: set[CellKey] = set()

    def who(keys) -> set[str]:
        return {v for key in keys for v, (amount, _) in cells.get(key, {}).items() if amount > 0}

    def smallest_fresh(keys) -> CellKey | None:
        candidates = sorted((values[key], key) for key in keys if key in fresh and key not in hide)
        return candidates[0][1] if candidates else None

    def handful(n: int) -> bool:
        return 0 < n < k

    # a channel's outcomes against its queued jobs
    for channel in sorted({key[1] for key in group if key[0] == "channel"}):
        total = ("channel", channel, "queued")
        parts: list[CellKey] = [("channel", channel, o.value) for o in Outcome]
        while total in visible - hide:
            held = who([p for p in parts if p not in visible or p in hide])
            if not handful(len(held)) or (pick := smallest_fresh([p for p in parts if p in visible])) is None:
                break
            hide.add(pick)

    # each slice family against its total
    for dimension in SLICES:
        for metric in SLICE_METRICS:
            parts = [key for key in group if key[0] == dimension and key[-1] == metric]
            if metric == "reached":
                totals = [key for key in group if key[0] == "channel" and key[2] == Outcome.reached]
                everyone = who(totals)
                # A slice's reached adds up every channel: beside a channel
                # kept back, it would give that channel away by subtraction.
                if any(t in cells and (t not in visible or t in hide) for t in totals):
                    hide |= {p for p in parts if p in fresh}
                    continue
            else:
                totals = [(metric,)] if (metric,) in group else []
                everyone = who(totals)
            # the total or a shown slice holding another, minus it, must not be a handful;
            # nor may the total minus all the shown slices
            only = next((t for t in totals if t in fresh), None) if len(totals) == 1 else None
            while parts and totals and all(t in visible and t not in hide for t in totals):
                shown_parts = [p for p in parts if p in visible and p not in hide]
                sets = {p: who([p]) for p in shown_parts}
                pick = None
                for p in shown_parts:
                    wider = [(everyone, only), *((sets[q], q) for q in shown_parts if q != p and sets[p] <= sets[q])]
                    for members_of, q in wider:
                        if handful(len(members_of - sets[p])):
                            pick = next((x for x in (p, q) if x is not None and x in fresh), None)
                            if pick is not None:  # else both are known already: nothing new to hide
                                break
                    if pick is not None:
                        break
                if pick is None and handful(len(everyone - who(shown_parts))):
                    pick = smallest_fresh(shown_parts) or only
                if pick is None:
                    break
                hide.add(pick)
    return hide


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
    """How far a message travelled, k-anonymous over volunteers: a figure
    is null with ``suppressed: true`` until k volunteers contributed to it,
    and moves only when k more did."""

    message_id: str
    k: int
    volunteers_suggested: Cell
    audience: Cell = Field(description="confirmed contacts the suggested volunteers could relay to")
    relays: Cell
    channels: dict[str, ChannelReach]
    by_interest: dict[str, SliceReach]
    by_region: dict[str, SliceReach] = Field(
        description="the targeted regions; for a message without targeting, only the regions "
                    "shown with at least k volunteers suggested")


class MessageStats(BaseModel):
    """A message's headline figures, the same cells as its reach."""

    volunteers_suggested: Cell
    relays: Cell
    emails_queued: Cell
    emails_delivered: Cell
    emails_failed: Cell


class TimelinePoint(BaseModel):
    at: datetime
    reached: int


class Timeline(BaseModel):
    """Recipients reached over time, per channel, cumulative: each point is
    a value the reach showed, at the cut it was taken, so two points differ
    by at least k volunteers' deliveries."""

    message_id: str
    k: int
    channels: dict[str, list[TimelinePoint]]


@dataclass(frozen=True)
class StaffReport:
    reach: Reach
    stats: MessageStats
    timeline: Timeline


def render(state: ShownState, message_id: str, interests: Iterable[str], regions: Iterable[str], k: int,
           channels: Iterable[str], max_points: int = 60) -> StaffReport:
    """The figures of ``state`` as staff see them. Breakdown rows are the
    message's own interests and targeted regions, whatever the facts say (a
    row's presence must not tell that someone matched it); an untargeted
    message lists the regions shown with k volunteers suggested."""

    def cell(*key: str) -> Cell:
        s = state.cells.get(key)
        return HIDDEN if s is None or s.hidden else Cell(value=s.value)

    def row(dimension: str, name: str) -> SliceReach:
        return SliceReach(**{metric: cell(dimension, name, metric) for metric in SLICE_METRICS})

    channels = list(channels)
    region_rows = set(regions) or {key[1] for key in state.cells if key[0] == "region"
                                   and key[2] == "volunteers_suggested" and not cell(*key).suppressed}
    reach = Reach(message_id=message_id, k=k, volunteers_suggested=cell("volunteers_suggested"),
                  audience=cell("audience"), relays=cell("relays"),
                  channels={ch: ChannelReach(queued=cell("channel", ch, "queued"),
                                             **{o.value: cell("channel", ch, o.value) for o in Outcome})
                            for ch in channels},
                  by_interest={name: row("interest", name) for name in sorted(set(interests))},
                  by_region={name: row("region", name) for name in sorted(region_rows)})
    email = reach.channels.get("email")
    stats = MessageStats(volunteers_suggested=reach.volunteers_suggested, relays=reach.relays,
                         emails_queued=email.queued if email else HIDDEN,
                         emails_delivered=email.reached if email else HIDDEN,
                         emails_failed=email.failed if email else HIDDEN)
    timeline = Timeline(message_id=message_id, k=k, channels={
        ch: [TimelinePoint(at=at, reached=n) for at, n in _thin(state.timeline.get(ch, ()), max_points)]
        for ch in channels})
    return StaffReport(reach=reach, stats=stats, timeline=timeline)


def _thin(points: tuple[tuple[datetime, int], ...], most: int) -> list[tuple[datetime, int]]:
    """At most ``most`` of the points, evenly spread, the latest kept: a
    subset of what was shown tells nothing more."""
    if len(points) <= most:
        return list(points)
    step = len(points) / most
    return [points[min(len(points) - 1, round((i + 1) * step) - 1)] for i in range(most)]


def staff_report(message_id: str, interests: Iterable[str], regions: Iterable[str], facts: Facts,
                 state: ShownState, k: int, cut: datetime, channels: Iterable[str]) -> tuple[StaffReport, ShownState | None]:
    """The one report staff figures come from: the facts recorded up to
    ``cut`` move the shown state where the rules allow; the report renders
    what is then shown. Returns the new state to persist (None: unchanged)."""
    moved = advance(state, contributions(facts), k, cut)
    return render(moved or state, message_id, interests, regions, k, channels), moved
