"""The differencing attack on staff figures (issue 11, finding 6), run
against two feed replicas as separate processes (real HTTP, one PostgreSQL,
a real nats-server carrying the events as contacts and the dispatchers
would publish them).

Eleven volunteers relay one after another, each to a different number of
contacts. After each relay, staff read every surface: the message list, the
message's stats, its reach, its timeline, the console's list page, the
console's live stream (SSE) and the CLI (`maillage publish list` and
`reach`), alternating between the replicas. The attacker knows who relayed
between two readings; any figure that differs between two readings fewer
than k relays apart hands them that handful's relay sizes. The test asserts
that never happens, and that the figures do appear (and move) once k
volunteers contributed, so it would fail if they were merely always hidden.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime
from itertools import pairwise
from pathlib import Path

import httpx
import pytest
from sqlmodel import Session

from services.feed.domain import ShownState, staff_report
from services.feed.reporting import CHANNELS, _save, report
from services.feed.store import (
    Message,
    ReachShown,
    RelayFact,
    RelayQueued,
    SuggestionFact,
    SuggestionInterest,
    add_once,
    create_schema,
    message_facts,
)
from shared.catalogue import EMAIL_RESULT, RELAY_REQUESTED, SUGGESTION_MADE
from shared.db import make_engine
from shared.events import Channel, DeliveryStatus, DispatchResult, RelayRequested, Suggestion, utcnow
from tests.support.apps import STAFF_TOKEN
from tests.support.feed import ADMIN, message, publish_raw, running_feed
from tests.support.paths import ROOT
from tests.support.waiting import poll
from tools import cli
from tools.stack import free_port

K = 5
# Feed replicas as processes, racing on one database.
pytestmark = pytest.mark.slow
SETTLE = 0.3
# Relay sizes, all different, none k, and no sum of k of them is one of them (so a difference that
# equals a size can only be that volunteer's); the first is large: 4 volunteers reaching 83 people
# are still 4 people.
SIZES = [60, 8, 3, 12, 7, 2, 9, 4, 11, 6, 13]


@pytest.fixture
def replicas(nats_url: str, pg_url: str, tmp_path: Path) -> Iterator[list[str]]:
    """Two feed processes on one database, sharing the NATS consumers."""
    engine = make_engine(pg_url)
    create_schema(engine)  # as the deployment's migration step does, before the replicas start
    engine.dispose()
    procs, urls, logs = [], [], []
    try:
        for n in range(2):
            port = free_port()
            env = {**os.environ, "MAILLAGE_NATS_URL": nats_url, "MAILLAGE_FEED_HTTP_PORT": str(port),
                   "MAILLAGE_FEED_DATABASE_URL": pg_url, "MAILLAGE_FEED_STAFF_TOKEN": STAFF_TOKEN,
                   "MAILLAGE_FEED_COOKIE_SECURE": "false", "MAILLAGE_FEED_REACH_SETTLE_SECONDS": str(SETTLE),
                   # only staff readings take figures here, so each is taken between two whole relays
                   # (the scheduler's own readings: test_the_timeline_is_taken_while_nobody_looks)
                   "MAILLAGE_FEED_REACH_REFRESH_SECONDS": "3600", "PYTHONUNBUFFERED": "1"}
            logs.append(tmp_path / f"feed-{n}.log")
            with open(logs[-1], "wb") as log:
                procs.append(subprocess.Popen([sys.executable, "-m", "services.feed"], cwd=ROOT, env=env,
                                              stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL))
            urls.append(f"http://127.0.0.1:{port}")
        for url, proc, log in zip(urls, procs, logs, strict=True):
            ready(url, proc, log)
        yield urls
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(15)


def ready(url: str, proc: subprocess.Popen, log: Path) -> None:
    def up() -> bool:
        assert proc.poll() is None, log.read_text(errors="replace")
        try:
            return httpx.get(f"{url}/readyz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    poll(up, bool, timeout=60, what=f"feed at {url}")


def events(mid: str, n: int, size: int) -> list:
    """Volunteer n: suggested (``size`` contacts concerned), relays to
    them by email, and every email is delivered."""
    v = f"vol{n}"
    return [
        (SUGGESTION_MADE.subject(v), f"s-{v}", Suggestion(
            suggestion_id=f"s-{v}", volunteer_id=v, message_id=mid, audience_size=size,
            matched_interests=("education",), matched_regions=("Bretagne",))),
        (RELAY_REQUESTED.subject(), f"r-{v}", RelayRequested(
            relay_id=f"r-{v}", volunteer_id=v, message_id=mid, jobs_queued={Channel.email: size})),
        *((EMAIL_RESULT.subject(), f"j-{v}-{j}", DispatchResult(
            job_id=f"j-{v}-{j}", relay_id=f"r-{v}", message_id=mid, volunteer_id=v, channel=Channel.email,
            status=DeliveryStatus.delivered)) for j in range(size)),
    ]


def recorded(engine, mid: str, volunteers: int, jobs: int) -> bool:
    """The test's own look at the facts, only to know feed counted the
    events before staff read (staff never see this)."""
    with Session(engine) as s:
        f = message_facts(s, mid, utcnow())
    return (len(f.suggestions), len(f.relays), sum(d[4] for d in f.deliveries)) == (volunteers, volunteers, jobs)


def flat(node, path: tuple = ()) -> dict[tuple, int | None]:
    """Every figure of a report: {"value", "suppressed"} cells, by where they are."""
    if isinstance(node, dict) and set(node) == {"value", "suppressed"}:
        return {path: node["value"]}
    out: dict[tuple, int | None] = {}
    if isinstance(node, dict):
        for key, child in node.items():
            out |= flat(child, (*path, key))
    return out


def volunteers_behind(where: tuple, value: int) -> int:
    """How many of the first volunteers a shown value adds up (the test
    knows each one's relay): a count of people, or a count of recipients."""
    people = where[-1] in ("volunteers_suggested", "relays")
    for p in range(1, len(SIZES) + 1):
        if (p if people else sum(SIZES[:p])) == value:
            return p
    raise AssertionError(f"{where}: {value} adds up no prefix of the volunteers")


def run_cli(*args: str, url: str) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        cli.main(["publish", "--feed-url", url, "--staff-token", STAFF_TOKEN, *args])
    return out.getvalue()


def console(url: str) -> httpx.Client:
    """A staff member signed in to the console of one replica."""
    browser = httpx.Client(base_url=url, timeout=10)
    page = browser.get("/console/sign-in").text
    csrf = re.search(r'name="csrf" value="([^"]+)"', page).group(1)
    signed = browser.post("/console/sign-in", data={"token": STAFF_TOKEN, "csrf": csrf})
    assert signed.status_code == 303, signed.text
    return browser


def first_frame(browser: httpx.Client, mid: str) -> dict:
    with browser.stream("GET", f"/console/messages/{mid}/reach/events") as stream:
        lines = stream.iter_lines()
        assert next(lines) == "event: reach"
        return json.loads(next(lines).removeprefix("data: "))["reach"]


def read_everything(url: str, browser: httpx.Client, mid: str) -> dict[tuple, object]:
    """What staff can see of the message, on every surface of one replica."""
    # The list shows the figures as last shown (the scheduler's readings are off here): read after.
    with httpx.Client(base_url=url, headers=ADMIN, timeout=10) as http:
        detail = http.get(f"/messages/{mid}").json()
        reach = http.get(f"/messages/{mid}/reach").json()
        timeline = http.get(f"/messages/{mid}/reach/timeline").json()
        listed = next(m for m in http.get("/messages").json() if m["id"] == mid)
    seen: dict[tuple, object] = {}
    seen |= {("list", *p): v for p, v in flat(listed["stats"]).items()}
    seen |= {("detail", *p): v for p, v in flat(detail["stats"]).items()}
    seen |= {("reach", *p): v for p, v in flat(reach).items()}
    seen |= {("sse", *p): v for p, v in flat(first_frame(browser, mid)).items()}
    seen[("timeline",)] = [(p["at"], p["reached"]) for p in timeline["channels"]["email"]]
    seen |= {("timeline", n, "reached"): p["reached"] for n, p in enumerate(timeline["channels"]["email"])}
    page = browser.get("/console/messages").text
    seen[("console list",)] = re.search(r"[^>]*relais, [^<]*courriels distribués", page).group()
    seen[("console page",)] = re.findall(r"<strong>([^<]*)</strong>", browser.get(f"/console/messages/{mid}").text)
    seen[("cli list",)] = run_cli("list", url=url)
    seen[("cli reach",)] = run_cli("reach", mid, url=url)
    return seen


def test_volunteers_relaying_one_after_another_cannot_be_told_apart(replicas: list[str], nats_url: str,
                                                                       pg_url: str):
    a, b = replicas
    made = httpx.post(f"{a}/messages", headers=ADMIN, json=message(), timeout=10)
    assert made.status_code == 201, made.text
    mid = made.json()["id"]
    engine = make_engine(pg_url)
    browsers = [console(a), console(b)]
    reports: list[dict[tuple, object]] = []
    try:
        for n, size in enumerate(SIZES):
            publish_raw(nats_url, events(mid, n, size))
            poll(lambda n=n: recorded(engine, mid, n + 1, sum(SIZES[:n + 1])), bool, timeout=20,
                 what=f"volunteer {n}'s relay counted")
            time.sleep(SETTLE + 0.2)  # older than the settle time: the report may count them
            reports.append(read_everything(replicas[n % 2], browsers[n % 2], mid))
    finally:
        for browser in browsers:
            browser.close()
        engine.dispose()

    # The attack. The attacker knows who relayed when, so a shown value is worth as much as the
    # set of volunteers it adds up; two values of one figure differ by the volunteers between
    # their sets. Every value shown must add up the first p volunteers for some p >= k, and two
    # values of one figure, p and q volunteers, must be k volunteers apart at least.
    numbers = [{w: v for w, v in r.items() if isinstance(v, int)} for r in reports]
    for where in set().union(*numbers):
        shown = sorted({r[where] for r in numbers if where in r})
        counted = [volunteers_behind(where, value) for value in shown]
        assert all(p >= K for p in counted), (where, shown, counted)
        assert all(q - p >= K for p, q in pairwise(counted)), (where, shown, counted)
        assert not {q - p for p in shown for q in shown} & set(SIZES), where  # no relay size by subtraction
    # Every other surface says what the API says, and changes only when it does.
    for (earlier, later), (before, after) in zip(pairwise(reports), pairwise(numbers), strict=True):
        if before == after:
            assert {w: v for w, v in earlier.items() if w not in before} == \
                   {w: v for w, v in later.items() if w not in after}

    # 60 recipients, then 83 after four relays: still four people, so nothing is shown
    assert all(v is None for w, v in reports[3].items() if w[0] in ("list", "detail", "reach", "sse"))
    assert reports[3][("timeline",)] == [] and "&lt; 5 relais, &lt; 5 courriels distribués" in reports[3][("console list",)]
    # the figures do appear at k volunteers, move at 2k, and agree across surfaces and replicas
    for n, relays in ((4, 5), (9, 10)):
        seen, reached = reports[n], sum(SIZES[:relays])
        assert seen[("reach", "relays")] == seen[("list", "relays")] == seen[("sse", "relays")] == relays
        assert seen[("detail", "emails_delivered")] == seen[("reach", "channels", "email", "reached")] == reached
        assert seen[("reach", "by_interest", "education", "audience")] == reached
        assert seen[("timeline",)][-1][1] == reached
        assert f"{relays} relais, {reached} courriels distribués" in seen[("console list",)]
        assert f"relays {relays}, emails delivered {reached}" in seen[("cli list",)]
        assert f"relays {relays}" in seen[("cli reach",)] and f"reached {reached}" in seen[("cli reach",)]
    assert [reached for _, reached in reports[-1][("timeline",)]] == [sum(SIZES[:5]), sum(SIZES[:10])]


def test_a_restart_or_a_racing_replica_cannot_show_a_fresher_figure(db_url: str):
    """What was shown is kept: a new process reading the same facts shows
    the same figure, one more volunteer moves nothing, and of two replicas
    moving the figure at once, one wins and the other reports its figure."""
    engine = make_engine(db_url)
    create_schema(engine)
    with Session(engine) as s:
        s.add(Message(id="m1", title="t", body="b", interests=["education"],
                      variants={"email": {"subject": "s", "body": "b"}}))
        s.commit()

    def relay(n: int, size: int) -> None:
        with Session(engine) as s:
            add_once(s, SuggestionFact(message_id="m1", volunteer_id=f"v{n}", audience_size=size),
                     SuggestionInterest(message_id="m1", volunteer_id=f"v{n}", interest="education"))
            add_once(s, RelayFact(relay_id=f"r{n}", message_id="m1", volunteer_id=f"v{n}"),
                     RelayQueued(relay_id=f"r{n}", channel="email", message_id="m1", queued=size))

    def read(on) -> dict:
        with Session(on) as s:
            return flat(report(s, s.get(Message, "m1"), K, 0).reach.model_dump())

    try:
        for n, size in enumerate(SIZES[:5]):
            relay(n, size)
        shown = read(engine)
        assert (shown[("relays",)], shown[("channels", "email", "queued")]) == (5, sum(SIZES[:5]))
        relay(5, SIZES[5])
        restarted = make_engine(db_url)  # another process: nothing in memory, the same database
        assert read(restarted) == shown
        restarted.dispose()

        for n in range(6, 10):
            relay(n, SIZES[n])
        with Session(engine) as s:  # a replica reads the stored state, then another moves it first
            row = s.get(ReachShown, "m1")
            stale = ShownState.from_json(row.state)
            _, moved = staff_report("m1", ["education"], [], message_facts(s, "m1", utcnow()), stale, K, utcnow(),
                                    CHANNELS)
            assert moved is not None
        winner = read(engine)
        assert winner[("relays",)] == 10
        with Session(engine) as s:
            assert not _save(s, "m1", row, moved)  # its version is gone: it must report the winner's
        assert read(engine) == winner
    finally:
        engine.dispose()


def test_the_timeline_is_taken_while_nobody_looks(nats_url: str, db_url: str):
    """Feed takes live messages' figures by itself: a publisher opening the
    reach after ten relays finds points taken while the relays went out,
    not one point at the time they looked. (The scheduler may take a figure
    mid-batch: any cut passes the same rules.)"""
    with running_feed(nats_url, db_url, reach_refresh_seconds=0.2, reach_settle_seconds=0.1) as feed:
        mid = feed.post("/messages", headers=ADMIN, json=message()).json()["id"]
        engine = feed.app.state.engine
        taken, steps = 0, []
        for first in (0, 5):
            publish_raw(nats_url, [e for n in range(first, first + 5) for e in events(mid, n, SIZES[n])])
            poll(lambda first=first: recorded(engine, mid, first + 5, sum(SIZES[:first + 5])), bool, timeout=20,
                 what="the relays counted")
            taken = len(poll(lambda: _stored_steps(engine, mid), lambda points, taken=taken: len(points) > taken,
                             timeout=10,
                             what="the scheduler taking the figures"))
            steps.append(utcnow())
        timeline = feed.get(f"/messages/{mid}/reach/timeline", headers=ADMIN).json()["channels"]["email"]
        stored = _stored_steps(engine, mid)
    assert [(datetime.fromisoformat(p["at"]), p["reached"]) for p in timeline] == stored
    reached = [p["reached"] for p in timeline]
    assert len(reached) >= 2 and reached == sorted(set(reached)) and reached[-1] <= sum(SIZES[:10])
    # the first point was taken before the second batch went out, the last after it: nobody was reading
    assert datetime.fromisoformat(timeline[0]["at"]) < steps[0] < datetime.fromisoformat(timeline[-1]["at"])


def _stored_steps(engine, mid: str) -> list:
    with Session(engine) as s:
        row = s.get(ReachShown, mid)
        return list(ShownState.from_json(row.state).timeline.get("email", ())) if row else []
