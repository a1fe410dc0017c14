"""How a job becomes an email, and what an SMTP answer means. No I/O."""

from __future__ import annotations

import binascii
import re
import secrets
from email import message_from_bytes, policy
from email.header import Header
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from enum import StrEnum
from functools import lru_cache
from urllib.parse import quote

from services.dispatch.email.domain.render import Templates, first_name
from shared.events import EmailJob, OpenedEmailJob
from shared.text import CONTROL_CLASS

__all__ = ["Outcome", "UnsafeHeader", "classify_smtp_code", "compose", "compose_bytes", "first_name",
           "job_id_of_message_id", "wire"]

DEFAULT_TEMPLATES = Templates()


class UnsafeHeader(ValueError):
    """A value no encoding makes right in its header (an address, the job
    id in the Message-ID, the List-Id): the job is refused for good. The
    message names the header, never the value (it may be an address)."""

    def __init__(self, header: str) -> None:
        super().__init__(f"{header}: this value cannot be written in a mail header")
        self.header = header


# Line breaks and every other control, the set shared.text.HeaderText refuses
# at input (C0, DEL, C1, U+2028/9): input validation names the field,
# the writer below holds on its own whatever a job carries. Lone surrogates
# too: no charset writes them, and a job is JSON, which can carry them.
_CONTROLS = re.compile(rf"[{CONTROL_CLASS}\ud800-\udfff]")
# An addr-spec as the validators upstream accept it (no quoted local part,
# no comment): nothing that could close the <...> or add a second address.
_ADDR_CHAR = r"[^\s\"(),:;<>@\[\\\]\x00-\x1f\x7f-\x9f\ud800-\udfff]"
_ADDRESS = re.compile(rf"{_ADDR_CHAR}+@{_ADDR_CHAR}+")
# dot-atom text (RFC 5322): the Message-ID's job id and the List-Id.
_ATOMS = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+")
# What a URI may hold as it is (RFC 3986 reserved, unreserved and '%').
_URI = re.compile(r"[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=%]+")
_URI_SAFE = "-._~:/?#[]@!$&'()*+,;=%"
# A display name with one of these is a quoted string (email.utils.formataddr's rule).
_SPECIALS = re.compile(r'[][\\()<>@,:;".]')
_QUOTED = re.compile(r'[\\"]')


def _one_line(value: str) -> str:
    """Text for people (a name, a subject) on one header line. A line
    break there means nothing a reader needs, while a decoded one (an
    encoded word) would come back raw in the reply or forward a client
    builds from it: each control becomes a space, the words stay."""
    return _CONTROLS.sub(" ", value).strip() if _CONTROLS.search(value) else value


@lru_cache(maxsize=8)  # the setting's one value
def _list_id(value: str) -> str:
    return f"<{_checked('List-Id', value, _ATOMS)}>"


def _checked(header: str, value: str, pattern: re.Pattern) -> str:
    if not pattern.fullmatch(value):
        raise UnsafeHeader(header)
    return value


def message_id(job: EmailJob | OpenedEmailJob, from_address: str) -> str:
    """``<job id.random@domain>``: a bounce quoting it leads back to the job.
    A job id that is not dot-atom text is refused, not rewritten: a
    rewritten one would no longer lead a bounce back to its job."""
    return make_msgid(idstring=_checked("Message-ID", job.job_id, _ATOMS),
                      domain=from_address.rpartition("@")[2])


def job_id_of_message_id(value: str) -> str | None:
    """The job id inside a Message-ID we made: ``make_msgid`` writes
    ``<time.pid.random.idstring@domain>``, and the idstring is the job id."""
    local = value.strip().strip("<>").rpartition("@")[0]
    parts = local.split(".", 3)
    return parts[3] if len(parts) == 4 and parts[3] else None


def _header(value: str) -> str:
    """Unstructured text (the subject) as 7-bit text on one logical line:
    ASCII as it is, anything else as RFC 2047 encoded words (folded at 76
    as RFC 5322 asks). ASCII that looks like an encoded word (``=?``) is
    encoded too, so a reader sees those characters, not what they decode
    to."""
    value = _one_line(value)
    if value.isascii() and "=?" not in value:
        return value
    return _encoded(value)


@lru_cache(maxsize=1024)
def _encoded(value: str) -> str:
    # The subject and the volunteer's name repeat across a relay: cached.
    return Header(value, "utf-8").encode(linesep="\r\n")


@lru_cache(maxsize=1024)
def _address(header: str, name: str, address: str) -> str:
    """``name <address>``. An address is refused rather than mended (a
    mended address is someone else's); the name is text for people,
    written on one line, quoted or RFC 2047 encoded as it needs."""
    _checked(header, address, _ADDRESS)
    name = _one_line(name)
    if not name:
        return address
    if name.isascii() and "=?" not in name:
        # formataddr's quoting, without its refusal of an address in UTF-8
        # (RFC 6531), which EmailStr accepts: a raise here was a job
        # redelivered until JetStream gave up on it
        if _SPECIALS.search(name):
            name = '"' + _QUOTED.sub(r"\\\g<0>", name) + '"'
        return f"{name} <{address}>"
    return f"{_encoded(name)} <{address}>"


def _unsubscribe(url: str) -> str:
    """The RFC 8058 URL inside ``<...>``: percent-encoded where it holds
    anything a URI may not (a space, a control, '<' or '>', non-ASCII), so
    it stays one URL and cannot close the brackets to add another target.
    A URI as contacts signs it is unchanged."""
    return url if _URI.fullmatch(url) else quote(url, safe=_URI_SAFE, errors="replace")


def _qp(text: str) -> bytes:
    """Quoted-printable UTF-8 with CRLF line ends (binascii: C speed). A
    bare CR is a line break too: binascii would leave it raw in the body,
    where SMTP reads CR and LF only as a pair."""
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    # errors="replace": a lone surrogate (JSON can carry one) is a "?", not a crash redelivered forever
    return binascii.b2a_qp(text.encode(errors="replace"), istext=True).replace(b"\n", b"\r\n")


def compose_bytes(job: OpenedEmailJob, from_address: str, list_id: str,
                  templates: Templates = DEFAULT_TEMPLATES) -> bytes:
    """The email, as SMTP carries and DKIM signs it (CRLF, 7-bit).

    ``From:`` the campaign's address under the volunteer's name (so it
    passes the campaign domain's SPF/DKIM), ``Reply-To:`` the volunteer, so
    the contact answers the person they know; RFC 8058 one-click
    unsubscribe, which mailbox providers require of bulk senders. Text and
    HTML alternatives of the same personal message.

    Written out directly rather than through ``email.message.EmailMessage``:
    the stdlib's header registry costs milliseconds per message, most of
    the dispatcher's time (measured by ``make bench-email``). So this
    function alone keeps every header one header, whatever the job holds:
    text for people is put on one line and encoded, the unsubscribe URL
    percent-encoded, and what cannot be mended (addresses, ids) raises
    ``UnsafeHeader``: the job fails for good, it is not retried."""
    text, html = templates.render(job)
    boundary = f"=_maillage_{secrets.token_hex(12)}"
    headers = [
        ("From", _address("From", job.sender_name, from_address)),
        ("Reply-To", _address("Reply-To", job.sender_name, str(job.reply_to))),
        ("To", _address("To", job.recipient_name, str(job.recipient_email))),
        ("Subject", _header(job.subject)),
        ("Date", formatdate(localtime=False)),
        ("Message-ID", message_id(job, from_address)),
        ("List-Id", _list_id(list_id)),
        ("List-Unsubscribe", f"<{_unsubscribe(job.unsubscribe_url)}>"),
        ("List-Unsubscribe-Post", "List-Unsubscribe=One-Click"),
        ("MIME-Version", "1.0"),
        ("Content-Type", f'multipart/alternative; boundary="{boundary}"'),
    ]
    # The last word, whatever the helpers above become: no value holds a
    # line break other than folding (CRLF then a space), nor a control. One
    # pass over all of them ('|' between two values: a CRLF ending one value
    # is not taken for a fold by a space starting the next).
    if _CONTROLS.search("|".join(value for _, value in headers).replace("\r\n ", "")):
        raise UnsafeHeader(next(name for name, value in headers if _CONTROLS.search(value.replace("\r\n ", ""))))
    head = "".join(f"{name}: {value}\r\n" for name, value in headers).encode()
    part = ("--{b}\r\nContent-Type: text/{kind}; charset=\"utf-8\"\r\n"
            "Content-Transfer-Encoding: quoted-printable\r\n\r\n")
    return b"".join((
        head, b"\r\n",
        part.format(b=boundary, kind="plain").encode(), _qp(text), b"\r\n",
        part.format(b=boundary, kind="html").encode(), _qp(html), b"\r\n",
        f"--{boundary}--\r\n".encode(),
    ))


def compose(job: OpenedEmailJob, from_address: str, list_id: str,
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
