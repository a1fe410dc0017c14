"""What a dispatch job carries about people, sealed for its channel.

contacts is the only service that holds identities; a dispatcher needs one
recipient's (or one account's) for one job. So each job carries them sealed
(AES-256-GCM) with a key per channel: contacts holds every channel's key
(it seals), each dispatcher only its own (it opens). JetStream's file
store, its ``ops`` user and any other dispatcher see ciphertext only, and
dispatch-mastodon, say, cannot open an email job nor a Bluesky job.

The associated data binds the channel, the job id and the clear fields the
dispatcher acts on (the suppression hash, the message): a blob lifted into
another job, another channel, or a job whose clear part was altered does
not open."""

from __future__ import annotations

import base64
import binascii
import json
import os
from collections.abc import Mapping
from typing import Annotated, Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from pydantic import SecretStr, StringConstraints, TypeAdapter, ValidationError

from shared.events import Channel, EmailJob, EmailJobContent, OpenedEmailJob, SocialPostJob

NONCE_BYTES = 12


class SealError(Exception):
    """The blob does not open with this key for this job (wrong key or channel, another job, tampered),
    or what it holds is not what the job should carry. Never says what it held."""


def key_from_secret(secret: SecretStr | str, setting: str) -> bytes:
    """A base64 32-byte key from a setting; a bad one says which setting."""
    value = secret.get_secret_value() if isinstance(secret, SecretStr) else secret
    try:
        key = base64.b64decode(value.strip(), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"{setting}: not base64") from exc
    if len(key) != 32:
        raise ValueError(f"{setting}: expected 32 bytes (base64), got {len(key)}")
    return key


def transit_key_list(secret: SecretStr, setting: str = "transit_key") -> list[bytes]:
    """A dispatcher's ``transit_key``: its channel's key, then any previous ones, comma-separated."""
    keys = [key_from_secret(part, setting) for part in secret.get_secret_value().split(",") if part.strip()]
    if not keys:
        raise ValueError(f"{setting}: no key")
    return keys


class TransitSealer:
    """One channel's key: seals (contacts) and opens (that channel's
    dispatcher). A dispatcher may also hold the channel's previous keys
    (``transit_key`` = ``<new>,<old>``) while jobs sealed before a rotation
    drain from the stream; it seals, if ever, with the first."""

    def __init__(self, channel: Channel, key: bytes, *previous: bytes) -> None:
        self.channel = Channel(channel)
        self._aead = AESGCM(key)
        self._opening = (self._aead, *(AESGCM(k) for k in previous))

    @classmethod
    def from_secret(cls, channel: Channel, secret: SecretStr, setting: str = "transit_key") -> TransitSealer:
        return cls(channel, *transit_key_list(secret, setting))

    def _bound(self, job_id: str, bound: tuple[str, ...]) -> bytes:
        # NUL cannot occur in a channel name; JSON keeps the job id and the
        # clear fields apart whatever they hold.
        return self.channel.value.encode() + b"\x00" + json.dumps([job_id, *bound]).encode()

    def seal(self, job_id: str, data: dict[str, Any], bound: tuple[str, ...] = ()) -> str:
        nonce = os.urandom(NONCE_BYTES)
        plain = json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode()
        return base64.b64encode(nonce + self._aead.encrypt(nonce, plain, self._bound(job_id, bound))).decode()

    def open(self, job_id: str, sealed: str, bound: tuple[str, ...] = ()) -> Any:
        try:
            blob = base64.b64decode(sealed, validate=True)
            aad = self._bound(job_id, bound)
            for aead in self._opening:
                try:
                    return json.loads(aead.decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], aad))
                except InvalidTag:
                    continue
        except (binascii.Error, ValueError):
            pass
        raise SealError(f"does not open with the {self.channel.value} key for this job")


class TransitKeys:
    """Every channel's sealer: contacts' side. ``transit_keys`` is
    ``email:<base64>,mastodon:<base64>,bluesky:<base64>,x:<base64>``, a
    distinct key per channel (one shared key would let any dispatcher open
    every channel's jobs)."""

    def __init__(self, keys: Mapping[Channel, bytes]) -> None:
        self._sealers = {Channel(c): TransitSealer(Channel(c), k) for c, k in keys.items()}

    @classmethod
    def from_secret(cls, secret: SecretStr, setting: str = "transit_keys") -> TransitKeys:
        keys: dict[Channel, bytes] = {}
        for part in filter(None, (p.strip() for p in secret.get_secret_value().split(","))):
            name, sep, value = part.partition(":")
            if not sep or name.strip() not in Channel.__members__:
                # never echoes the part: it may be a key written without its channel
                raise ValueError(f"{setting}: expected channel:<base64 key> pairs, channels {', '.join(Channel)}")
            channel = Channel(name.strip())
            if channel in keys:
                raise ValueError(f"{setting}: {channel.value} given twice")
            keys[channel] = key_from_secret(value, f"{setting} ({channel.value})")
        if missing := [c.value for c in Channel if c not in keys]:
            raise ValueError(f"{setting}: no key for {', '.join(missing)}: contacts seals every channel's jobs")
        if len(set(keys.values())) < len(keys):
            raise ValueError(f"{setting}: two channels share a key; each channel needs its own")
        return cls(keys)

    def __getitem__(self, channel: Channel) -> TransitSealer:
        return self._sealers[Channel(channel)]


# -- the jobs ---------------------------------------------------------------------------------------

def _email_bound(job: EmailJob | OpenedEmailJob) -> tuple[str, ...]:
    # what the dispatcher decides on before or without opening: suppression
    # (the hash), withdrawal (the message), the volunteer's rate, the kind
    return (job.kind, job.relay_id, job.message_id, job.volunteer_id, job.recipient_hash)


def seal_email(opened: OpenedEmailJob, sealer: TransitSealer) -> EmailJob:
    """The job as NATS carries it: the ids in clear, everything about people sealed."""
    if sealer.channel is not Channel.email:
        raise ValueError(f"an email job is sealed with the email key, not the {sealer.channel.value} one")
    content = opened.content()
    data = content.model_dump(mode="json", exclude={"smtp_account"})
    data["smtp_account"] = content.smtp_account.transit() if content.smtp_account else None
    clear = opened.model_dump(include=set(EmailJob.model_fields) - {"sealed"})
    return EmailJob(**clear, sealed=sealer.seal(opened.job_id, data, _email_bound(opened)))


_CONTENT = frozenset(EmailJobContent.model_fields)
_ROUTING = tuple(name for name in EmailJob.model_fields if name != "sealed")


def open_email(job: EmailJob, sealer: TransitSealer) -> OpenedEmailJob:
    """The job with its content, validated as contacts validated it; SealError if it does not open."""
    data = sealer.open(job.job_id, job.sealed, _email_bound(job))
    # content fields only: a sealed "job_id" or "recipient_hash" must not
    # stand beside (or for) the clear ones the dispatcher already acted on
    if not isinstance(data, dict) or not data.keys() <= _CONTENT:
        raise SealError("the sealed content is not a valid email job")
    try:
        # one validation of the whole (the clear part again: cheaper than assembling two models)
        return OpenedEmailJob.model_validate({**data, **{name: getattr(job, name) for name in _ROUTING}})
    except ValidationError:
        raise SealError("the sealed content is not a valid email job") from None


def _social_bound(job: SocialPostJob) -> tuple[str, ...]:
    return (job.relay_id, job.message_id, job.volunteer_id)


# A network's credentials: short strings under a few names (tokens, handle,
# instance URL); what each network needs is its adapter's to check.
SocialCredentials = TypeAdapter(dict[Annotated[str, StringConstraints(pattern=r"^[a-z_]{1,40}$")],
                                     Annotated[str, StringConstraints(max_length=4000)] | None])


def seal_post(credentials: dict, sealer: TransitSealer, **fields: Any) -> SocialPostJob:
    """A post job with the account's credentials sealed for it only, with its network's key."""
    if sealer.channel is Channel.email:
        raise ValueError("a post job is sealed with its network's key, not the email one")
    job = SocialPostJob(**fields, credentials="-")  # the clear part, validated before it is bound
    sealed = sealer.seal(job.job_id, SocialCredentials.validate_python(credentials), _social_bound(job))
    return job.model_copy(update={"credentials": sealed})


def open_credentials(job: SocialPostJob, sealer: TransitSealer) -> dict[str, str | None]:
    data = sealer.open(job.job_id, job.credentials, _social_bound(job))
    try:
        return SocialCredentials.validate_python(data)
    except ValidationError:
        raise SealError("the sealed credentials are not a network account") from None


__all__ = ["SealError", "SocialCredentials", "TransitKeys", "TransitSealer", "key_from_secret", "open_credentials",
           "open_email", "seal_email", "seal_post", "transit_key_list"]
