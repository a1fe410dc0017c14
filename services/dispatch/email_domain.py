"""How a job becomes an email, and what an SMTP answer means. No I/O."""

from __future__ import annotations

import binascii
import secrets
from email import message_from_bytes, policy
from email.header import Header
from email.message import EmailMessage
from email.utils import formataddr, formatdate, make_msgid
from enum import StrEnum
from functools import lru_cache

from services.dispatch.email_render import Templates, first_name
from shared.events import EmailJob

__all__ = ["Outcome", "classify_smtp_code", "compose", "compose_bytes", "first_name", "job_id_of_message_id",
           "wire"]

DEFAULT_TEMPLATES = Templates()


def message_id(job: EmailJob, from_address: str) -> str:
    """``<job id.random@domain>``: a bounce quoting it leads back to the job."""
    return make_msgid(idstring=job.job_id, domain=from_address.rpartition("@")[2])


def job_id_of_message_id(value: str) -> str | None:
    """The job id inside a Message-ID we made: ``make_msgid`` writes
    ``<time.pid.random.idstring@domain>``, and the idstring is the job id."""
    local = value.strip().strip("<>").rpartition("@")[0]
    parts = local.split(".", 3)
    return parts[3] if len(parts) == 4 and parts[3] else None


def _header(value: str) -> str:
    """A header value as 7-bit text: ASCII as it is, anything else as
    RFC 2047 encoded words (folded at 76 as RFC 5322 asks)."""
    if value.isascii():
        return value
    return _encoded(value)


@lru_cache(maxsize=1024)
def _encoded(value: str) -> str:
    # The subject and the volunteer's name repeat across a relay: cached.
    return Header(value, "utf-8").encode(linesep="\r\n")


@lru_cache(maxsize=1024)
def _address(name: str, address: str) -> str:
    return formataddr((name, address), charset="utf-8")


def _qp(text: str) -> bytes:
    """Quoted-printable UTF-8 with CRLF line ends (binascii: C speed)."""
    return binascii.b2a_qp(text.encode(), istext=True).replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def compose_bytes(job: EmailJob, from_address: str, list_id: str,
                  templates: Templates = DEFAULT_TEMPLATES) -> bytes:
    """The email, as SMTP carries and DKIM signs it (CRLF, 7-bit).

    ``From:`` the campaign's address under the volunteer's name (so it
    passes the campaign domain's SPF/DKIM), ``Reply-To:`` the volunteer, so
    the contact answers the person they know; RFC 8058 one-click
    unsubscribe, which mailbox providers require of bulk senders. Text and
    HTML alternatives of the same personal message.

    Written out directly rather than through ``email.message.EmailMessage``:
    the stdlib's header registry costs milliseconds per message, most of
    the dispatcher's time (measured by ``make bench-email``)."""
    text, html = templates.render(job)
    boundary = f"=_maillage_{secrets.token_hex(12)}"
    headers = [
        ("From", _address(job.sender_name, from_address)),
        ("Reply-To", _address(job.sender_name, str(job.reply_to))),
        ("To", _address(job.recipient_name, str(job.recipient_email))),
        ("Subject", _header(job.subject)),
        ("Date", formatdate(localtime=False)),
        ("Message-ID", message_id(job, from_address)),
        ("List-Id", f"<{list_id}>"),
        ("List-Unsubscribe", f"<{job.unsubscribe_url}>"),
        ("List-Unsubscribe-Post", "List-Unsubscribe=One-Click"),
        ("MIME-Version", "1.0"),
        ("Content-Type", f'multipart/alternative; boundary="{boundary}"'),
    ]
    head = "".join(f"{name}: {value}\r\n" for name, value in headers).encode()
    part = ("--{b}\r\nContent-Type: text/{kind}; charset=\"utf-8\"\r\n"
            "Content-Transfer-Encoding: quoted-printable\r\n\r\n")
    return b"".join((
        head, b"\r\n",
        part.format(b=boundary, kind="plain").encode(), _qp(text), b"\r\n",
        part.format(b=boundary, kind="html").encode(), _qp(html), b"\r\n",
        f"--{boundary}--\r\n".encode(),
    ))


def compose(job: EmailJob, from_address: str, list_id: str,
            templates: Templates = DEFAULT_TEMPLATES) -> EmailMessage:
    """The same email, parsed back: what a mail client reads."""
    return message_from_bytes(compose_bytes(job, from_address, list_id, templates), policy=policy.default)


def wire(msg: EmailMessage) -> bytes:
    """Any message as SMTP carries it (CRLF line ends)."""
    return msg.as_bytes(policy=policy.SMTP)


class Outcome(StrEnum):
    delivered = "delivered"
    retry = "retry"  # 4xx, lost connection: try again later
    failed = "failed"  # 5xx: the server refused for good


def classify_smtp_code(code: int) -> Outcome:
    if 200 <= code < 300:
        return Outcome.delivered
    if 500 <= code < 600:
        return Outcome.failed
    return Outcome.retry


def slows_down(code: int) -> bool:
    """421 (service closing) and 451 (local error, often a rate limit): the
    server asks us to go slower, not just to retry this one."""
    return code in (421, 451)
