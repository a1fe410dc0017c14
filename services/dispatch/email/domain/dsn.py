"""Reading delivery status notifications (RFC 3464). No I/O.

A DSN is ``multipart/report; report-type=delivery-status``: a human part, a
``message/delivery-status`` part (one block for the message, one per
recipient: ``Action``, ``Status``, ``Final-Recipient``…), and the returned
message or its headers. A hard bounce is ``Action: failed`` with a
``Status: 5.x.x``; 4.x.x (delayed, mailbox full for now) is not one.

The job is found through the returned ``Message-ID`` (it carries the job
id), so nothing here needs the address: the dispatcher's ledger holds the
keyed hash of the recipient each job was sent to."""

from __future__ import annotations

import re
from dataclasses import dataclass
from email import message_from_bytes, message_from_string, policy
from email.message import Message

from services.dispatch.email.domain.message import job_id_of_message_id

STATUS = re.compile(r"^\s*([245])\.(\d{1,3})\.(\d{1,3})")


class NotADsn(ValueError):
    """The body is not a delivery status notification we can read."""


@dataclass(frozen=True)
class Bounce:
    job_id: str
    status: str  # "5.1.1"


@dataclass(frozen=True)
class DsnReading:
    hard: tuple[Bounce, ...]
    soft: int  # recipients delayed or failed with a 4.x.x: no suppression


def _returned_message_id(report: Message) -> str | None:
    for part in report.walk():
        ctype = part.get_content_type()
        if ctype == "message/rfc822":
            inner = part.get_payload()
            inner = inner[0] if isinstance(inner, list) and inner else inner
            if isinstance(inner, Message) and inner.get("Message-ID"):
                return str(inner["Message-ID"])
        elif ctype == "text/rfc822-headers":
            raw = part.get_payload(decode=True)
            headers = message_from_string(raw.decode("utf-8", "replace") if isinstance(raw, bytes) else "")
            if headers.get("Message-ID"):
                return str(headers["Message-ID"])
    return None


def _status_blocks(report: Message) -> list[Message]:
    for part in report.walk():
        if part.get_content_type() == "message/delivery-status":
            blocks = part.get_payload()
            if isinstance(blocks, list):
                return [b for b in blocks[1:] if isinstance(b, Message)]  # the first block is per-message
    raise NotADsn("no message/delivery-status part")


def read_dsn(raw: bytes) -> DsnReading:
    report = message_from_bytes(raw, policy=policy.compat32)
    if report.get_content_type() != "multipart/report":
        raise NotADsn(f"expected multipart/report, got {report.get_content_type()}")
    if str(report.get_param("report-type") or "").lower() != "delivery-status":
        raise NotADsn("report-type is not delivery-status")
    blocks = _status_blocks(report)
    if not blocks:
        raise NotADsn("no per-recipient block in the delivery status")
    message_id = _returned_message_id(report)
    job_id = job_id_of_message_id(message_id) if message_id else None
    hard, soft = [], 0
    for block in blocks:
        action = (block.get("Action") or "").strip().lower()
        status = STATUS.match(block.get("Status") or "")
        if action != "failed" or status is None:
            soft += action in ("failed", "delayed")
            continue
        code = ".".join(status.groups())
        if status.group(1) != "5":
            soft += 1
            continue
        if job_id is None:
            raise NotADsn("a hard bounce without the returned Message-ID: its job cannot be found")
        hard.append(Bounce(job_id, code))
    return DsnReading(tuple(hard), soft)
