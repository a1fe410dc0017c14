"""How a job becomes an email, and what an SMTP answer means. No I/O."""

from __future__ import annotations

from email.message import EmailMessage
from email.utils import formataddr, make_msgid
from enum import StrEnum

from shared.events import EmailJob


def first_name(full_name: str) -> str:
    return full_name.strip().split()[0] if full_name.strip() else ""


def compose(job: EmailJob, from_address: str, list_id: str) -> EmailMessage:
    """``From:`` the campaign's address under the volunteer's name (so it
    passes the campaign domain's SPF/DKIM), ``Reply-To:`` the volunteer, so
    the contact answers the person they know; RFC 8058 one-click
    unsubscribe, which mailbox providers require of bulk senders."""
    msg = EmailMessage()
    msg["From"] = formataddr((job.sender_name, from_address))
    msg["Reply-To"] = formataddr((job.sender_name, str(job.reply_to)))
    msg["To"] = formataddr((job.recipient_name, str(job.recipient_email)))
    msg["Subject"] = job.subject
    msg["Message-ID"] = make_msgid(idstring=job.job_id, domain=from_address.rpartition("@")[2])
    msg["List-Id"] = f"<{list_id}>"
    msg["List-Unsubscribe"] = f"<{job.unsubscribe_url}>"
    msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    greeting = f"Bonjour {first_name(job.recipient_name)},".replace(" ,", ",")
    footer = f"Ne plus recevoir ces messages / Unsubscribe: {job.unsubscribe_url}"
    msg.set_content(f"{greeting}\n\n{job.body_text}\n\n— {job.sender_name}\n\n--\n{footer}\n")
    return msg


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
