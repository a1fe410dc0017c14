"""The generated NATS users, on a real nats-server: each service reaches
exactly its subjects. The matcher (and feed) can neither subscribe to a PII
subject nor read the stream holding it through the JetStream API; a
dispatcher cannot read another channel's jobs; and the whole path still
works when every service connects as its own user (test_deploy_e2e.py)."""

from __future__ import annotations

import subprocess

import pytest
from nats.errors import Error as NatsError
from nats.errors import TimeoutError as NatsTimeout

from shared.catalogue import (
    CONTACTS,
    DISPATCH_EMAIL,
    DISPATCH_MASTODON,
    EMAIL_JOB,
    FEED,
    MATCHER,
    SERVICES,
    SUBJECTS,
    subject_matches,
)
from shared.messaging import Bus, inbox_prefix
from tests.support.nats_auth import REFUSED, secured_config, server_env
from tests.support.paths import ROOT
from tools.nats_permissions import DEFAULT_PATH, permissions
from tools.nats_permissions import main as permissions_main
from tools.stack import free_port, nats_server_binary

JOBS = EMAIL_JOB.stream.name  # DISPATCH_JOBS


def test_the_committed_auth_conf_is_generated_from_the_current_catalogue():
    assert permissions_main(["--check", str(ROOT / DEFAULT_PATH)]) == 0, "run `make docs`"


def test_the_config_passes_nats_server_own_check(tmp_path):
    conf, passwords = secured_config(tmp_path, free_port())
    ok = subprocess.run([nats_server_binary(), "-t", "-c", str(conf)], env=server_env(passwords),
                        capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    # without the passwords in its environment the server refuses to start: no default password
    bad = subprocess.run([nats_server_binary(), "-t", "-c", str(conf)], env={}, capture_output=True, text=True)
    assert bad.returncode != 0 and "NATS_PASSWORD_" in bad.stderr + bad.stdout


def test_no_service_but_the_job_s_consumer_may_read_a_pii_subject():
    """The generator's promise, over the whole catalogue: a PII subject is
    published by its producer only, and readable only through a consumer
    whose filter is that subject, created by a declared consumer."""
    pii = [s for s in SUBJECTS if s.carries_pii]
    assert pii, "the catalogue declares PII subjects"
    for service in SERVICES:
        grants = permissions(service)
        assert grants["subscribe"] == [f"{inbox_prefix(service)}.>"]
        for spec in pii:
            stream = spec.stream.name
            creates = [g for g in grants["publish"] if g.startswith(f"$JS.API.CONSUMER.CREATE.{stream}")]
            pulls = [g for g in grants["publish"] if g.startswith(f"$JS.API.CONSUMER.MSG.NEXT.{stream}.")]
            if service in spec.consumers:
                assert f"$JS.API.CONSUMER.CREATE.{stream}.{service}.{spec.pattern}" in creates
            else:
                # the short form carries its filter in the body: it could read anything
                assert f"$JS.API.CONSUMER.CREATE.{stream}" not in creates, (service, stream)
                filters = [g.split(".", 6)[6] for g in creates]
                assert not any(subject_matches(f, spec.pattern) for f in filters), (service, spec.pattern)
                # pulling only from a consumer of its own name, never another's
                assert all(p.endswith(f".{service}") for p in pulls), (service, pulls)
            if service != spec.producer:
                assert not any(subject_matches(g, spec.pattern) for g in grants["publish"]), (service, spec)


async def test_the_matcher_is_refused_the_email_jobs_while_dispatch_email_reads_them(connect, secured):
    # contacts declares its streams and queues a job, as its own user
    contacts = Bus(CONTACTS, secured.url, password=secured.passwords[CONTACTS])
    await contacts.connect()
    js_contacts = contacts.broker.connection.jetstream()

    matcher = await connect(MATCHER)
    sub = await matcher.nc.subscribe(EMAIL_JOB.pattern)
    assert await matcher.refused(f'Subscription to "{EMAIL_JOB.pattern}"')

    await js_contacts.publish(EMAIL_JOB.pattern, b'{"job": 1}', stream=JOBS)
    with pytest.raises(NatsTimeout):  # the refused subscription never sees the job
        await sub.next_msg(timeout=REFUSED)

    # nor can it read the stream through the JetStream API
    js = matcher.nc.jetstream(timeout=REFUSED)
    with pytest.raises(NatsTimeout):
        await js.stream_info(JOBS)
    assert await matcher.refused(f"$JS.API.STREAM.INFO.{JOBS}")
    with pytest.raises((NatsTimeout, NatsError)):
        await js.pull_subscribe(EMAIL_JOB.pattern, durable=MATCHER, stream=JOBS)
    with pytest.raises((NatsTimeout, NatsError)):
        await js.subscribe(EMAIL_JOB.pattern, stream=JOBS, ordered_consumer=True)
    assert await matcher.refused(f"$JS.API.CONSUMER.CREATE.{JOBS}")
    # nor snoop on the replies dispatch-email gets
    await matcher.nc.subscribe(f"{inbox_prefix(DISPATCH_EMAIL)}.>")
    assert await matcher.refused(f'Subscription to "{inbox_prefix(DISPATCH_EMAIL)}.>"')

    # the email dispatcher, as its own user, pulls and acks the same job
    sender = await connect(DISPATCH_EMAIL)
    pull = await sender.nc.jetstream().pull_subscribe(EMAIL_JOB.pattern, durable=DISPATCH_EMAIL, stream=JOBS)
    [job] = await pull.fetch(1, timeout=5)
    assert job.data == b'{"job": 1}'
    await job.ack_sync()
    assert not sender.errors
    await contacts.stop()


async def test_a_dispatcher_reads_only_its_own_channel(connect, secured):
    contacts = Bus(CONTACTS, secured.url, password=secured.passwords[CONTACTS])
    await contacts.connect()
    await contacts.broker.connection.jetstream().publish(EMAIL_JOB.pattern, b"{}", stream=JOBS)
    email = await connect(DISPATCH_EMAIL)
    await email.nc.jetstream().pull_subscribe(EMAIL_JOB.pattern, durable=DISPATCH_EMAIL, stream=JOBS)

    mastodon = await connect(DISPATCH_MASTODON)
    js = mastodon.nc.jetstream(timeout=REFUSED)
    with pytest.raises((NatsTimeout, NatsError)):  # a consumer of its own on the email jobs
        await js.pull_subscribe(EMAIL_JOB.pattern, durable=DISPATCH_MASTODON, stream=JOBS)
    assert await mastodon.refused(f"$JS.API.CONSUMER.CREATE.{JOBS}.{DISPATCH_MASTODON}.{EMAIL_JOB.pattern}")
    # pulling from the email dispatcher's consumer
    inbox = mastodon.nc.new_inbox()
    got = await mastodon.nc.subscribe(inbox)
    await mastodon.nc.publish(f"$JS.API.CONSUMER.MSG.NEXT.{JOBS}.{DISPATCH_EMAIL}", b'{"batch": 1}', reply=inbox)
    assert await mastodon.refused(f"$JS.API.CONSUMER.MSG.NEXT.{JOBS}.{DISPATCH_EMAIL}")
    with pytest.raises(NatsTimeout):
        await got.next_msg(timeout=REFUSED)
    await contacts.stop()


async def test_feed_cannot_publish_a_job_and_a_wrong_password_is_refused(connect, secured):
    feed = await connect(FEED)
    with pytest.raises((NatsTimeout, NatsError)):
        await feed.nc.jetstream(timeout=REFUSED).publish(EMAIL_JOB.pattern, b"{}")
    assert await feed.refused(f'Publish to "{EMAIL_JOB.pattern}"')
    with pytest.raises(NatsError):
        await connect(MATCHER, password="not-the-password")


def test_the_helm_values_run_a_jetstream_cluster_and_give_every_user_its_password():
    import yaml

    from tests.support.nats_auth import USERS
    from tools.nats_permissions import password_variable

    values = yaml.safe_load((ROOT / "deploy/nats/values.yaml").read_text())
    config = values["config"]
    assert config["cluster"]["enabled"] and config["cluster"]["replicas"] == 3
    assert config["jetstream"]["fileStore"]["enabled"] and not config["jetstream"]["memoryStore"]["enabled"]
    assert config["merge"]["00$include"] == "auth.conf"
    env = values["container"]["env"]
    assert set(env) == {password_variable(u) for u in USERS}
    for user in USERS:
        assert env[password_variable(user)]["valueFrom"]["secretKeyRef"] == {"name": "maillage-nats-users", "key": user}
    assert values["promExporter"]["enabled"]
