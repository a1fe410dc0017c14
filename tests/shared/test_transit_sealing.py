"""Issue 11, finding 11: what dispatch jobs carry about people is sealed
per channel. The attacks, on real parts:

- someone who reads the DISPATCH_JOBS stream (the ``ops`` user, the
  nats-server's file store, a backup of it) after a real invitation and a
  real relay with a note finds no name, no address, no note, no link, no
  credential: only ids and keyed hashes;
- a dispatcher holding its own channel's key (as its settings give it)
  cannot open another channel's job, and a job lifted onto its subject is
  terminated with a typed failure, nothing sent, nothing retried;
- a job whose clear part was altered (another job id, another recipient
  hash to dodge a suppression, another message to dodge a withdrawal)
  does not open.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import Iterator
from pathlib import Path

import nats
import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr, ValidationError

from services.contacts.app import create_app
from services.contacts.settings import ContactsSettings
from services.dispatch.email.settings import EmailDispatchSettings
from services.dispatch.social.settings import MastodonDispatchSettings
from shared.catalogue import DISPATCH_JOBS_STREAM, EMAIL_JOB, MASTODON_JOB
from shared.events import Channel, DeliveryStatus, EmailJob, SocialPostJob
from shared.sealed import SealError, TransitKeys, TransitSealer, open_credentials, open_email, seal_email, seal_post
from shared.settings import CommonSettings
from tests.support.apps import KEYS, PROVISIONING_TOKEN
from tests.support.contacts_api import offer
from tests.support.dispatch_email import consumer_settled, dispatcher, job, results
from tests.support.http_api import add_contact, new_volunteer
from tests.support.social import MASTODON, running
from tests.support.social import results as social_results
from tests.support.transit_keys import CONTACTS_TRANSIT_KEYS, TRANSIT_KEYS, opened_job

OWN_SMTP = "127.0.0.1:2587"  # the volunteer's own server: allowed by the egress policy, never reached here
NOTE = "Ça me tient à cœur, on en parlait au marché-de-la-Croix-Rousse"
X_TOKEN = "x-token-of-alice-0123456789"
SMTP_PASSWORD = "smtp-secret-of-alice-42"
CONTACTS_KEYS = TransitKeys.from_secret(SecretStr(CONTACTS_TRANSIT_KEYS))


def own_key(channel: Channel) -> TransitSealer:
    """The key a dispatcher of ``channel`` holds, from its own settings."""
    return TransitSealer.from_secret(channel, SecretStr(TRANSIT_KEYS[channel]))


@pytest.fixture
def contacts(nats_url: str, tmp_path: Path) -> Iterator[TestClient]:
    settings = ContactsSettings(provisioning_token=PROVISIONING_TOKEN, database_url=f"sqlite:///{tmp_path}/c.db",
                                common=CommonSettings(nats_url=nats_url, egress_allow=OWN_SMTP), **KEYS)
    with TestClient(create_app(settings)) as client:
        yield client


def raw_jobs(nats_url: str) -> list[tuple[str, bytes]]:
    """(subject, bytes) of every job the stream holds, read as any reader of
    the stream reads it (direct get by sequence: nothing consumed)."""

    async def fetch() -> list[tuple[str, bytes]]:
        nc = await nats.connect(nats_url)
        try:
            js = nc.jetstream()
            state = (await js.stream_info(DISPATCH_JOBS_STREAM.name)).state
            return [(m.subject, m.data) for m in
                    [await js.get_msg(DISPATCH_JOBS_STREAM.name, seq) for seq in range(state.first_seq, state.last_seq + 1)]]
        finally:
            await nc.close()

    return asyncio.run(fetch())


def store_bytes(store: Path) -> bytes:
    """Every byte of the nats-server's JetStream file store (message blocks, indexes)."""
    return b"".join(p.read_bytes() for p in sorted(store.rglob("*")) if p.is_file())


LINKS = ContactsSettings.model_fields["public_url"].default.split("//", 1)[1]  # host:port, as every link starts


def forms(secret: str) -> set[bytes]:
    """The ways a value could sit in a stored payload: UTF-8, JSON-escaped, case-folded."""
    return {secret.encode(), secret.lower().encode(), json.dumps(secret).strip('"').encode()}


def test_the_jobs_stream_and_its_file_store_hold_no_identity(contacts: TestClient, nats_url: str, tmp_path: Path):
    alice_id, alice = new_volunteer(contacts, "Alice Martin", "alice.martin@benevoles.example")
    for network, body in {
        "x": {"access_token": X_TOKEN, "handle": "@alice"},
        "email": {"host": "127.0.0.1", "port": 2587, "security": "starttls", "username": "alice.perso",
                  "password": SMTP_PASSWORD, "from_address": "alice.perso@perso.example"},
    }.items():
        r = contacts.put(f"/me/networks/{network}", headers=alice, json=body)
        assert r.status_code == 200 and r.json()["connected"], r.text
    add_contact(contacts, alice, "Camille Durand", "camille.durand@exemple.fr", ["education"])
    louis = add_contact(contacts, alice, "Louis Petit", "louis.petit@exemple.fr", ["housing"], consent="unknown")
    assert contacts.post(f"/contacts/{louis['id']}/invite", headers=alice, json={}).status_code == 200

    suggestion = offer(contacts, nats_url, ["education"], {alice_id: alice}, title="Nos écoles")[alice_id]
    relayed = contacts.post(f"/inbox/{suggestion}/relay", headers=alice, json={"note": NOTE})
    assert relayed.status_code == 200, relayed.text

    stored = raw_jobs(nats_url)
    kinds = sorted((subject, json.loads(data).get("kind")) for subject, data in stored)
    assert kinds == [("dispatch.email.jobs", "invitation"), ("dispatch.email.jobs", "relay"),
                     ("dispatch.x.jobs", None)]
    secrets = ("Alice Martin", "alice.martin@benevoles", "alice.perso", "Camille", "camille.durand", "Louis Petit",
               "louis.petit", NOTE, "marché", "Croix-Rousse", X_TOKEN, SMTP_PASSWORD,
               # the links themselves (a bare "/u/" can occur in base64 ciphertext by chance)
               f"{LINKS}/u/", f"{LINKS}/consent/")
    for subject, data in stored:
        for secret in secrets:
            assert not any(form in data for form in forms(secret)), (subject, secret)
    # what is in clear is what routing, dedupe, suppression and withdrawal need
    email_jobs = [EmailJob.model_validate_json(data) for subject, data in stored if subject == EMAIL_JOB.pattern]
    assert {j.kind for j in email_jobs} == {"invitation", "relay"} and all(j.sealed for j in email_jobs)
    # ...and dispatch-email, holding the email key, reads everything back
    relay = next(opened_job(json.loads(j.model_dump_json())) for j in email_jobs if j.kind == "relay")
    assert (relay["recipient_name"], relay["recipient_email"], relay["note"]) == (
        "Camille Durand", "camille.durand@exemple.fr", NOTE)
    assert relay["smtp_account"]["password"] == SMTP_PASSWORD and relay["reply_to"] == "alice.perso@perso.example"

    # The file store on disk (every stream, as a backup of the server holds
    # it): the job ids are there, so this is the right store, and no secret is.
    store = tmp_path / "jetstream"
    ids = [j.job_id.encode() for j in email_jobs]
    for _ in range(100):  # the server writes its blocks out shortly after storing
        on_disk = store_bytes(store)
        if all(i in on_disk for i in ids):
            break
        time.sleep(0.05)
    assert all(i in on_disk for i in ids)
    for secret in secrets:
        assert not any(form in on_disk for form in forms(secret)), secret


def email_job_sealed_with(channel: Channel, n: int = 1) -> EmailJob:
    """An email job sealed exactly as contacts seals one, but with ``channel``'s key."""
    return seal_email(job(n), TransitSealer(Channel.email, base64.b64decode(TRANSIT_KEYS[channel])))


def post(channel: Channel, n: int = 1, creds: dict | None = None) -> SocialPostJob:
    return seal_post(creds or {"access_token": f"token-{channel.value}-{n}"}, CONTACTS_KEYS[channel],
                     job_id=f"{channel.value}-{n}", relay_id="relay-1", message_id="m-1", volunteer_id="vol-alice",
                     text="Réunion sur nos écoles")


def test_a_dispatchers_key_opens_its_own_channel_and_no_other():
    mastodon, email = own_key(Channel.mastodon), own_key(Channel.email)
    letter = seal_email(job(1), CONTACTS_KEYS[Channel.email])
    assert open_email(letter, email).recipient_email == "camille1@exemple.fr"
    assert open_credentials(post(Channel.mastodon), mastodon) == {"access_token": "token-mastodon-1"}
    with pytest.raises(SealError):
        open_email(letter, mastodon)  # dispatch-mastodon reading an email job
    for other in (Channel.bluesky, Channel.x):
        with pytest.raises(SealError):
            open_credentials(post(other), mastodon)  # nor another network's account
    with pytest.raises(SealError):
        open_credentials(post(Channel.mastodon), email)  # dispatch-email reading a Mastodon account
    # the same bytes under another channel's name do not open either: the channel is bound
    renamed = TransitSealer(Channel.bluesky, bytes(32))
    blob = TransitSealer(Channel.mastodon, bytes(32)).seal("m-1", {"access_token": "t"})
    with pytest.raises(SealError):
        renamed.open("m-1", blob)


def test_keys_are_one_per_channel_and_required(monkeypatch):
    for name in ("MAILLAGE_DISPATCH_EMAIL_TRANSIT_KEY", "MAILLAGE_DISPATCH_MASTODON_TRANSIT_KEY"):
        monkeypatch.delenv(name, raising=False)
    keys = dict(part.split(":", 1) for part in CONTACTS_TRANSIT_KEYS.split(","))
    shared = ",".join(f"{c}:{keys['email']}" for c in keys)  # one key for all: what the finding found
    missing = ",".join(f"{c}:{k}" for c, k in keys.items() if c != "x")
    for value, why in ((shared, "share a key"), (missing, "no key for x"), ("email", "channel:<base64 key>")):
        with pytest.raises(ValidationError, match=why) as refused:
            ContactsSettings(provisioning_token=PROVISIONING_TOKEN, **{**KEYS, "transit_keys": value})
        assert refused.value.errors()[0]["loc"] == ("transit_keys",)
        assert keys["email"] not in str(refused.value)  # a key never lands in an error
    with pytest.raises(ValidationError, match="transit_key"):  # a dispatcher does not start without its key
        EmailDispatchSettings(from_address="relais@campagne.example", _env_file=None)
    with pytest.raises(ValidationError, match="transit_key"):
        MastodonDispatchSettings(_env_file=None)
    with pytest.raises(ValidationError, match="32 bytes"):
        MastodonDispatchSettings(transit_key="c2hvcnQ=")


async def test_dispatch_mastodon_terminates_jobs_sealed_for_another_channel(nats_url, fake):
    """Blobs of an email job and of a Bluesky job lifted onto
    dispatch.mastodon.jobs: the running dispatcher reports each failed
    (credentials_unreadable), once, and posts nothing; its own job goes."""
    email_blob = seal_email(job(1), CONTACTS_KEYS[Channel.email]).sealed
    bluesky_blob = post(Channel.bluesky, creds={"access_token": "tok-alice"}).credentials
    own = seal_post(MASTODON(fake), CONTACTS_KEYS[Channel.mastodon], job_id="job-3", relay_id="relay-1",
                    message_id="m-1", volunteer_id="vol-alice", text="Réunion n°3 sur nos écoles")
    lifted = [own.model_copy(update={"job_id": f"job-{n}", "credentials": blob})
              for n, blob in ((1, email_blob), (2, bluesky_blob))]
    async with running("mastodon", nats_url, fake) as contacts:
        for j in (*lifted, own):
            await contacts.publish(MASTODON_JOB, j, msg_id=j.job_id)
        reported = {r.job_id: r for r in await social_results(nats_url, "mastodon", 3)}
    assert {k: (r.status, r.reason) for k, r in reported.items()} == {
        "job-1": (DeliveryStatus.failed, "credentials_unreadable"),
        "job-2": (DeliveryStatus.failed, "credentials_unreadable"),
        "job-3": (DeliveryStatus.delivered, None)}
    # one request to the instance, for its own job: the lifted Bluesky blob held a working Mastodon token
    assert fake.calls == ["mastodon.statuses"]
    assert [s["content"] for s in fake.statuses] == ["Réunion n°3 sur nos écoles"]


async def test_dispatch_email_terminates_altered_or_foreign_jobs_and_sends_nothing(nats_url, smtp_server, capsys):
    """On a running dispatch-email: a job whose job id, recipient hash or
    message was changed after sealing, and one sealed with the Mastodon key,
    each end failed ``unreadable`` at once (no retry), no email leaves, the
    log names the job only; an untouched job still goes."""
    good = seal_email(job(5), CONTACTS_KEYS[Channel.email])
    altered = [
        seal_email(job(1), CONTACTS_KEYS[Channel.email]).model_copy(update={"job_id": "job-1-moved"}),
        # a suppressed person's job given another hash to slip past the suppression check
        seal_email(job(2), CONTACTS_KEYS[Channel.email]).model_copy(update={"recipient_hash": good.recipient_hash}),
        seal_email(job(3), CONTACTS_KEYS[Channel.email]).model_copy(update={"message_id": "m-other"}),
        email_job_sealed_with(Channel.mastodon, 4),
    ]
    for tampered in altered:  # the same, without NATS: none opens
        with pytest.raises(SealError):
            open_email(tampered, own_key(Channel.email))
    async with dispatcher(nats_url, smtp_server) as (contacts, _):
        for j in (*altered, good):
            await contacts.publish(EMAIL_JOB, j, msg_id=j.job_id)
        reported = {r.job_id: r for r, _ in await results(nats_url, 5)}
        await consumer_settled(nats_url)  # terminated: nothing pending, nothing redelivered
    assert {k: (r.status, r.reason) for k, r in reported.items()} == {
        **{j.job_id: (DeliveryStatus.failed, "unreadable") for j in altered},
        "job-5": (DeliveryStatus.delivered, None)}
    assert [rcpts for _, rcpts in smtp_server.recorder.envelopes] == [["camille5@exemple.fr"]]
    logged = capsys.readouterr()
    assert "email.job_unreadable" in logged.out + logged.err
    for n in range(1, 5):
        assert f"camille{n}" not in (logged.out + logged.err).lower()


def test_sealed_content_cannot_stand_for_the_clear_part():
    """Only the content is read from the sealed field: one that also names
    a job id or a recipient hash (to differ from what the dispatcher checked
    in clear) does not open, even under the right key and binding."""
    opened = job(1)
    clear = seal_email(opened, CONTACTS_KEYS[Channel.email])
    content = opened.content().model_dump(mode="json")
    bound = (opened.kind, opened.relay_id, opened.message_id, opened.volunteer_id, opened.recipient_hash)
    for extra in ({"recipient_hash": "f" * 64}, {"job_id": "job-other"}, {"unknown": 1}):
        forged = clear.model_copy(update={"sealed": CONTACTS_KEYS[Channel.email].seal(
            opened.job_id, {**content, **extra}, bound)})
        with pytest.raises(SealError):
            open_email(forged, own_key(Channel.email))
    assert open_email(clear, own_key(Channel.email)) == opened


def test_a_rotation_opens_jobs_sealed_before_it_with_the_previous_key_only_where_given():
    """contacts seals with the new email key; dispatch-email given
    '<new>,<old>' still opens the jobs queued before, and neither key
    opens another channel's job."""
    old, new = (base64.b64encode(bytes([b]) * 32).decode() for b in (1, 2))
    queued = seal_email(job(1), TransitSealer.from_secret(Channel.email, SecretStr(old)))
    fresh = seal_email(job(2), TransitSealer.from_secret(Channel.email, SecretStr(new)))
    rotating = EmailDispatchSettings(from_address="relais@campagne.example", transit_key=f"{new},{old}",
                                     _env_file=None)
    both = TransitSealer.from_secret(Channel.email, rotating.transit_key)
    assert [open_email(j, both).recipient_email for j in (queued, fresh)] == ["camille1@exemple.fr",
                                                                              "camille2@exemple.fr"]
    with pytest.raises(SealError):
        open_email(queued, TransitSealer.from_secret(Channel.email, SecretStr(new)))  # after the old key is dropped
    with pytest.raises(SealError):  # the email keys, old and new, open no Mastodon job
        open_credentials(post(Channel.mastodon), TransitSealer.from_secret(Channel.mastodon, rotating.transit_key))
