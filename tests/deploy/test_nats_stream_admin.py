"""No service may administer JetStream: on a real nats-server running the
generated deploy/nats/auth.conf, every service user tries every JetStream
admin API on every stream and every consumer, and each is refused while the
streams stay exactly as they were (config, messages, consumers). The
review's two attacks are replayed as written: dispatch-mastodon adding a
``republish`` of the email jobs into its own inbox (and a 1 s ``max_age``),
dispatch-email emptying SUPPRESSIONS. Streams are applied by
``python -m tools.streams apply`` as the user ``streams`` only, which may do
that and nothing else; services only wait for their streams."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import re
import subprocess
import sys
import time
from datetime import timedelta

import nats
import pytest
from nats.errors import Error as NatsError
from nats.errors import TimeoutError as NatsTimeout
from nats.js.api import ConsumerConfig, DeliverPolicy, RePublish

from shared.catalogue import (
    CONTACTS,
    DISPATCH_EMAIL,
    DISPATCH_JOBS_STREAM,
    DISPATCH_MASTODON,
    EMAIL_JOB,
    FEED_STREAM,
    MATCHER,
    SERVICES,
    STREAMS,
    SUBJECTS,
    SUPPRESSION_ADDED,
    SUPPRESSIONS_STREAM,
    streams_of,
    subject_matches,
)
from shared.messaging import APPLY_STREAMS, Bus, MissingStreams, inbox_prefix
from tests.support.nats_auth import REFUSED, Client
from tests.support.paths import ROOT
from tests.support.servers import apply_streams_now, start_nats
from tools.nats_permissions import OPS_USER, permissions
from tools.streams import STREAMS_USER, Outcome, apply, apply_streams
from tools.streams import main as streams_main

JOBS, SUPPRESSIONS = DISPATCH_JOBS_STREAM.name, SUPPRESSIONS_STREAM.name
VIOLATION = re.compile(r'publish to "([^"]+)"', re.IGNORECASE)  # nats-py lowercases the server's error
PII_JOB = b'{"recipient": "Camille Dupont <camille.dupont@exemple.fr>", "note": "pense a toi"}'


def concrete(pattern: str) -> str:
    return pattern.replace("*", "v1").replace(">", "v1")


def consumers_of(stream) -> dict[str, str]:
    """The durable each reading service has on ``stream``: name -> filter."""
    found: dict[str, str] = {}
    for spec in SUBJECTS:
        if spec.stream.name == stream.name:
            for service in spec.consumers:
                found.setdefault(service, spec.pattern)
    return found


async def seed(ops: Client) -> None:
    """A message on every subject and the readers' durables on every stream,
    so that a purge, a delete or an expiry would show."""
    js = ops.nc.jetstream()
    for spec in SUBJECTS:
        await js.publish(concrete(spec.pattern), b'{"seed": true}', stream=spec.stream.name)
    for stream in STREAMS:
        for name, filter_subject in consumers_of(stream).items():
            await js.add_consumer(stream.name, ConsumerConfig(durable_name=name, filter_subject=filter_subject))


async def snapshot(ops: Client) -> dict[str, tuple]:
    js = ops.nc.jetstream()
    found = {}
    for stream in STREAMS:
        info = await js.stream_info(stream.name)
        names = sorted(c.name for c in await js.consumers_info(stream.name))
        found[stream.name] = (info.config.as_dict(), info.state.messages, names)
    return found


def admin_requests(user: str, stream, consumers: list[str]) -> dict[str, bytes]:
    """Every JetStream admin API on one stream, with a body that would do
    harm if it were served."""
    name, drop = stream.name, f"{inbox_prefix(user)}.attack"
    expiring = json.dumps(dataclasses.replace(stream.config(), max_age=1.0).as_dict()).encode()
    exfiltrating = json.dumps(dataclasses.replace(
        stream.config(), max_age=1.0, republish=RePublish(src=">", dest=f"{drop}.republished.>")).as_dict()).encode()
    requests = {
        f"$JS.API.STREAM.CREATE.{name}": expiring,
        f"$JS.API.STREAM.UPDATE.{name}": exfiltrating,
        f"$JS.API.STREAM.DELETE.{name}": b"",
        f"$JS.API.STREAM.PURGE.{name}": b"{}",
        f"$JS.API.STREAM.MSG.DELETE.{name}": b'{"seq": 1}',
        f"$JS.API.STREAM.MSG.GET.{name}": b'{"seq": 1}',
        f"$JS.API.DIRECT.GET.{name}": b'{"seq": 1}',
        f"$JS.API.STREAM.SNAPSHOT.{name}": json.dumps({"deliver_subject": f"{drop}.snapshot"}).encode(),
        f"$JS.API.STREAM.RESTORE.{name}": json.dumps({"config": {"name": name}, "state": {}}).encode(),
        f"$JS.API.STREAM.PEER.REMOVE.{name}": b'{"peer": "maillage-test"}',
        f"$JS.API.STREAM.LEADER.STEPDOWN.{name}": b"",
        f"$JS.API.STREAM.CREATE.COPY_OF_{name}": json.dumps(
            {"name": f"COPY_OF_{name}", "sources": [{"name": name}]}).encode(),
    }
    for consumer in consumers:
        requests |= {
            f"$JS.API.CONSUMER.DELETE.{name}.{consumer}": b"",
            f"$JS.API.CONSUMER.PAUSE.{name}.{consumer}": b'{"pause_until": "2999-01-01T00:00:00Z"}',
            f"$JS.API.CONSUMER.LEADER.STEPDOWN.{name}.{consumer}": b"",
            f"$JS.API.CONSUMER.UNPIN.{name}.{consumer}": b'{"group": "g"}',
            f"$JS.API.CONSUMER.DURABLE.CREATE.{name}.{consumer}": json.dumps(
                {"stream_name": name, "config": {"durable_name": consumer, "ack_policy": "explicit",
                                                 "filter_subject": "nothing.at.all"}}).encode(),
        }
    return requests


ACCOUNT_REQUESTS = {
    "$JS.API.META.LEADER.STEPDOWN": b"",
    "$JS.API.ACCOUNT.PURGE.MAILLAGE": b"",
    "$JS.API.SERVER.REMOVE": b'{"peer": "maillage-test"}',
    "$JS.API.STREAM.TEMPLATE.CREATE.T": b'{"name": "T", "config": {"subjects": [">"]}, "max_streams": 1}',
}


async def test_every_service_is_refused_every_jetstream_admin_api_on_every_stream(connect):
    ops = await connect(OPS_USER)
    await seed(ops)
    before = await snapshot(ops)
    consumers = {s.name: before[s.name][2] for s in STREAMS}
    assert all(consumers.values()), "every stream has a reader's durable to attack"

    sent: dict[str, set[str]] = {}
    replies: dict[str, list] = {}
    clients: dict[str, Client] = {}
    for user in SERVICES:
        client = clients[user] = await connect(user)
        got = replies[user] = []

        async def collect(msg, got=got) -> None:
            got.append((msg.subject, msg.data[:200]))

        # where any answer, republished message or snapshot chunk would land
        await client.nc.subscribe(f"{inbox_prefix(user)}.attack.>", cb=collect)
        requests = dict(ACCOUNT_REQUESTS)
        for stream in STREAMS:
            requests |= admin_requests(user, stream, consumers[stream.name])
        for i, (subject, body) in enumerate(requests.items()):
            await client.nc.publish(subject, body, reply=f"{inbox_prefix(user)}.attack.reply.{i}")
        await client.nc.flush()
        sent[user] = set(requests)

    # the server reports every refusal: wait for all of them
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        refused = {u: {m.group(1).lower() for e in c.violations() if (m := VIOLATION.search(e))}
                   for u, c in clients.items()}
        if all({s.lower() for s in sent[u]} <= refused[u] for u in SERVICES):
            break
        await asyncio.sleep(0.1)
    for user in SERVICES:
        assert {s.lower() for s in sent[user]} - refused[user] == set(), f"{user} was not refused these"
    await asyncio.sleep(1.5)  # a 1 s max_age, had it been set, has emptied the streams by now
    for user in SERVICES:
        assert replies[user] == [], f"{user} got an answer or data: {replies[user][:3]}"
    assert await snapshot(ops) == before, "a stream's config, messages or consumers changed"
    assert len(sent[DISPATCH_EMAIL]) > 150  # every API on every stream, not a sample


async def test_dispatch_mastodon_cannot_republish_the_email_jobs_into_its_inbox(connect, secured):
    """The review's attack, as written: STREAM.UPDATE of DISPATCH_JOBS
    adding a republish of dispatch.email.jobs into the caller's inbox, then a
    1 s max_age. Both refused; the job reaches dispatch-email only. The same
    update by a user allowed to make it does leak (the control), so the
    refusal is what stops it."""
    mastodon = await connect(DISPATCH_MASTODON)
    stolen_subject = f"{inbox_prefix(DISPATCH_MASTODON)}.stolen"
    stolen = await mastodon.nc.subscribe(stolen_subject)
    js = mastodon.nc.jetstream(timeout=REFUSED)
    hijack = dataclasses.replace(DISPATCH_JOBS_STREAM.config(), republish=RePublish(src=EMAIL_JOB.pattern,
                                                                                   dest=stolen_subject))
    with pytest.raises(NatsTimeout):
        await js.update_stream(hijack)
    assert await mastodon.refused(f"$JS.API.STREAM.UPDATE.{JOBS}")
    with pytest.raises(NatsTimeout):
        await js.update_stream(dataclasses.replace(DISPATCH_JOBS_STREAM.config(), max_age=1.0))
    with pytest.raises(NatsTimeout):  # nor a stream of its own over the same subjects
        await js.add_stream(name="MASTODON_COPY", subjects=[EMAIL_JOB.pattern])

    contacts = await connect(CONTACTS)
    await contacts.nc.jetstream().publish(EMAIL_JOB.pattern, PII_JOB, stream=JOBS)
    with pytest.raises(NatsTimeout):
        await stolen.next_msg(timeout=1.5)  # also past the 1 s max_age it asked for

    ops = await connect(OPS_USER)
    info = await ops.nc.jetstream().stream_info(JOBS)
    assert info.config.republish is None
    assert info.config.max_age == pytest.approx(DISPATCH_JOBS_STREAM.max_age.total_seconds())
    assert info.state.messages == 1
    email = await connect(DISPATCH_EMAIL)  # the job is still there, for its own dispatcher
    pull = await email.nc.jetstream().pull_subscribe(EMAIL_JOB.pattern, durable=DISPATCH_EMAIL, stream=JOBS)
    [job] = await pull.fetch(1, timeout=5)
    assert job.data == PII_JOB
    await job.ack_sync()

    # control: with the right to update, the same config does deliver the job into mastodon's inbox
    await ops.nc.jetstream().update_stream(hijack)
    await contacts.nc.jetstream().publish(EMAIL_JOB.pattern, PII_JOB, stream=JOBS)
    leaked = await stolen.next_msg(timeout=5)
    assert leaked.data == PII_JOB


async def test_dispatch_email_cannot_empty_suppressions(connect):
    """The review's second attack: dispatch-email emptying SUPPRESSIONS
    (max_age 1 s, or a purge, a delete, a message delete): all refused, every
    suppression still there, and still readable by dispatch-email the way
    it replays them."""
    contacts = await connect(CONTACTS)
    for i in range(3):
        await contacts.nc.jetstream().publish(SUPPRESSION_ADDED.pattern, b'{"hash": "%d"}' % i, stream=SUPPRESSIONS)
    email = await connect(DISPATCH_EMAIL)
    js = email.nc.jetstream(timeout=REFUSED)
    with pytest.raises(NatsTimeout):
        await js.update_stream(dataclasses.replace(SUPPRESSIONS_STREAM.config(), max_age=1.0))
    with pytest.raises(NatsTimeout):
        await js.purge_stream(SUPPRESSIONS)
    with pytest.raises(NatsTimeout):
        await js.delete_msg(SUPPRESSIONS, 1)
    with pytest.raises(NatsTimeout):
        await js.delete_stream(SUPPRESSIONS)
    for api in ("UPDATE", "PURGE", "MSG.DELETE", "DELETE"):
        assert await email.refused(f"$JS.API.STREAM.{api}.{SUPPRESSIONS}"), api
    await asyncio.sleep(1.2)

    ops = await connect(OPS_USER)
    info = await ops.nc.jetstream().stream_info(SUPPRESSIONS)
    assert (info.state.messages, info.config.max_age) == (3, 0)
    replay = await email.nc.jetstream().subscribe(SUPPRESSION_ADDED.pattern, stream=SUPPRESSIONS,
                                                  ordered_consumer=True, deliver_policy=DeliverPolicy.ALL)
    assert [json.loads((await replay.next_msg(timeout=5)).data)["hash"] for _ in range(3)] == ["0", "1", "2"]


def test_no_service_grant_reaches_an_admin_api_and_every_one_is_denied():
    """The generator's promise over the whole catalogue, offline: no allow
    of any service matches an admin API of any stream, and an explicit deny
    does (a later, broader allow could not reopen it)."""
    for service in SERVICES:
        grants = permissions(service)
        for stream in STREAMS:
            for subject in admin_requests(service, stream, ["some-consumer"]):
                assert not any(subject_matches(g, subject) for g in grants["publish"]), (service, subject)
                assert any(subject_matches(d, subject) for d in grants["deny"]), (service, subject)
        for subject in ACCOUNT_REQUESTS:
            assert any(subject_matches(d, subject) for d in grants["deny"]), (service, subject)


def streams_cli(*args: str, url: str, password: str | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAILLAGE_")}
    env["MAILLAGE_NATS_URL"] = url
    if password:
        env["MAILLAGE_NATS_PASSWORD"] = password
    return subprocess.run([sys.executable, "-m", "tools.streams", *args], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=60)


def outcomes(out: str) -> dict[str, str]:
    """stream -> what the CLI says it did."""
    found = {}
    for line in out.splitlines():
        for name in (s.name for s in STREAMS):
            if re.match(rf"^(.+?)\s+{name}(:|$)", line):
                found[name] = re.match(rf"^(.+?)\s+{name}", line).group(1).strip()
    return found


async def test_the_streams_user_applies_the_catalogue_and_can_do_nothing_else(connect, secured, monkeypatch,
                                                                              capsys):
    """The ops step as the Job runs it: a separate process as the user
    ``streams``. A second apply changes nothing; a tampered stream (a
    republish added by someone) is put back; a changed declaration updates
    in place, messages kept. Its user may not read, purge or delete."""
    password = secured.passwords[STREAMS_USER]
    again = streams_cli("apply", url=secured.url, password=password)
    assert again.returncode == 0, again.stderr
    assert outcomes(again.stdout) == {s.name: "unchanged" for s in STREAMS}

    ops = await connect(OPS_USER)
    ops_js = ops.nc.jetstream()
    await ops_js.publish(EMAIL_JOB.pattern, PII_JOB, stream=JOBS)
    await ops_js.update_stream(dataclasses.replace(
        DISPATCH_JOBS_STREAM.config(), republish=RePublish(src=">", dest="elsewhere.>")))
    monkeypatch.setenv("MAILLAGE_NATS_PASSWORD", password)
    capsys.readouterr()
    assert await asyncio.to_thread(streams_main, ["check", "--url", secured.url]) == 1
    checked = capsys.readouterr().out
    assert outcomes(checked)[JOBS] == "would update" and "republish" in checked, checked
    assert (await ops_js.stream_info(JOBS)).config.republish is not None  # check changed nothing
    fixed = streams_cli("apply", url=secured.url, password=password)
    assert fixed.returncode == 0 and outcomes(fixed.stdout)[JOBS] == "updated", fixed.stdout
    info = await ops_js.stream_info(JOBS)
    assert info.config.republish is None and info.state.messages == 1

    changed = dataclasses.replace(FEED_STREAM, max_age=timedelta(days=1))
    [result] = await apply(secured.url, user=STREAMS_USER, password=password, specs=[changed])
    assert result.outcome is Outcome.UPDATED and "max_age" in result.detail
    assert (await ops_js.stream_info(FEED_STREAM.name)).config.max_age == pytest.approx(86400)

    streams = await connect(STREAMS_USER)
    js = streams.nc.jetstream(timeout=REFUSED)
    attempts = {"PURGE": lambda: js.purge_stream(JOBS), "DELETE": lambda: js.delete_stream(JOBS),
                "MSG.GET": lambda: js.get_msg(JOBS, 1), "MSG.DELETE": lambda: js.delete_msg(JOBS, 1)}
    for api, attempt in attempts.items():
        with pytest.raises((NatsTimeout, NatsError)):
            await attempt()
        assert await streams.refused(f"$JS.API.STREAM.{api}.{JOBS}"), api
    await streams.nc.subscribe(EMAIL_JOB.pattern)
    assert await streams.refused(f'Subscription to "{EMAIL_JOB.pattern}"')
    assert (await ops_js.stream_info(JOBS)).state.messages == 1

    # a service can neither log in as the step nor do what it does
    with pytest.raises(NatsError):
        await connect(STREAMS_USER, password=secured.passwords[MATCHER])
    matcher = await connect(MATCHER)
    with pytest.raises(NatsTimeout):
        await apply_streams(matcher.nc.jetstream(timeout=REFUSED), [dataclasses.replace(changed, max_age=timedelta(hours=2))])
    assert await matcher.refused(f"$JS.API.STREAM.UPDATE.{FEED_STREAM.name}")


@pytest.mark.nats  # starts its own server
def test_without_users_the_step_creates_then_leaves_alone(tmp_path, capsys):
    """The laptop's nats-server has no users: the step connects anonymously.
    --dry-run creates nothing; apply creates each stream once; check is
    clean afterwards; --help teaches by example; a server that is not there
    is a one-line error."""
    server = start_nats(tmp_path / "js", streams=False)
    try:
        dry = streams_cli("apply", "--dry-run", url=server.url)
        assert dry.returncode == 0 and outcomes(dry.stdout) == {s.name: "would create" for s in STREAMS}, dry
        assert streams_main(["check", "--url", server.url]) == 1  # nothing was created
        first = streams_cli("apply", url=server.url)
        assert first.returncode == 0 and outcomes(first.stdout) == {s.name: "created" for s in STREAMS}, first
        second = streams_cli("apply", url=server.url)
        assert outcomes(second.stdout) == {s.name: "unchanged" for s in STREAMS}, second
        assert streams_main(["check", "--url", server.url]) == 0
    finally:
        server.process.terminate()
        server.process.wait(10)
    capsys.readouterr()
    with pytest.raises(SystemExit):
        streams_main(["apply", "--help"])
    helptext = capsys.readouterr().out
    assert "examples:" in helptext and "python -m tools.streams apply --dry-run" in helptext
    assert "MAILLAGE_NATS_PASSWORD" in helptext
    assert streams_main(["apply", "--url", server.url]) == 2  # the server is gone
    err = capsys.readouterr().err
    assert "cannot apply the streams" in err and "Traceback" not in err


@pytest.mark.nats  # starts its own server
async def test_a_service_waits_for_its_streams_and_never_declares_one(tmp_path):
    """A service started before the streams step creates nothing, fails
    naming what is missing if the step never comes, starts once it has run,
    and its readiness names a stream that disappears."""
    server = start_nats(tmp_path / "js", streams=False)
    nc = await nats.connect(server.url)
    try:
        js = nc.jetstream()
        early = Bus(MATCHER, server.url, stream_wait=1.0)
        with pytest.raises(MissingStreams) as missing:
            await early.connect()
        assert missing.value.names == [s.name for s in streams_of(MATCHER)]
        assert APPLY_STREAMS in str(missing.value)
        assert await js.streams_info() == []  # it declared nothing
        await early.broker.stop()

        waiting = Bus(MATCHER, server.url, stream_wait=20.0)
        connecting = asyncio.create_task(waiting.connect())
        await asyncio.sleep(1.0)
        assert not connecting.done()
        await asyncio.to_thread(apply_streams_now, server.url)  # the Job runs while the pod waits
        await asyncio.wait_for(connecting, 10)
        assert await waiting.ready() == (True, "connected")
        await js.delete_stream("SUGGESTIONS")
        ok, detail = await waiting.ready()
        assert not ok and detail == f"missing streams: SUGGESTIONS (run `{APPLY_STREAMS}`)"
        await waiting.broker.stop()
    finally:
        await nc.close()
        server.process.terminate()
        server.process.wait(10)


@pytest.mark.parametrize("overlay", ["dev", "prod"])
def test_kubernetes_runs_the_step_as_a_job_under_the_streams_user(overlay):
    """deploy/k8s: one Job runs `python -m tools.streams apply` as the NATS
    user streams, its password from its own Secret (prod: made out of band),
    its replicas from the common settings; it reaches NATS and DNS only."""
    from tests.support.manifests import objects

    rendered = objects(overlay)
    [job] = [o for o in rendered if o["kind"] == "Job"]
    assert job["metadata"]["name"] == STREAMS_USER
    pod = job["spec"]["template"]["spec"]
    [main] = pod["containers"]
    assert main["args"] == ["python", "-m", "tools.streams", "apply"]
    assert {"name": "MAILLAGE_NATS_USER", "value": STREAMS_USER} in main["env"]
    assert {"secretRef": {"name": f"maillage-{STREAMS_USER}"}} in main["envFrom"]
    assert {"configMapRef": {"name": "maillage-common"}} in main["envFrom"]
    assert pod["restartPolicy"] == "OnFailure" and job["spec"]["ttlSecondsAfterFinished"] > 0
    assert main["securityContext"]["readOnlyRootFilesystem"] and pod["securityContext"]["runAsNonRoot"]
    [policy] = [o for o in rendered if o["kind"] == "NetworkPolicy" and o["metadata"]["name"] == STREAMS_USER]
    assert policy["spec"]["ingress"] == [] and {p["port"] for r in policy["spec"]["egress"] for p in r["ports"]} == \
        {4222, 53}
    secrets = [o for o in rendered if o["kind"] == "Secret" and o["metadata"]["name"] == f"maillage-{STREAMS_USER}"]
    assert [list(s["stringData"]) for s in secrets] == ([] if overlay == "prod" else [["MAILLAGE_NATS_PASSWORD"]])
    # no service workload carries the step's password or runs it
    for obj in rendered:
        if obj["kind"] in ("Deployment", "StatefulSet"):
            refs = [e for c in obj["spec"]["template"]["spec"]["containers"] for e in c.get("envFrom", [])]
            assert {"secretRef": {"name": f"maillage-{STREAMS_USER}"}} not in refs
