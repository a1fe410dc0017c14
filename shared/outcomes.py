"""What became of one dispatch job, and what that means to each reader.

A dispatcher says *what happened* (``OutcomeKind``); ``meaning`` alone says
which figure staff count it in and what the volunteer's history shows, so
the two never disagree about the same email (a bounce is a bounce to both).
Feed's figures and contacts' history read outcomes through it and nothing
else."""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum


class OutcomeKind(StrEnum):
    delivered = "delivered"  # accepted by the receiving server, or posted
    refused = "refused"  # the receiving server refused the email for good (SMTP 5xx)
    bounced = "bounced"  # accepted, then a delivery status notification said it failed for good
    suppressed = "suppressed"  # the address had opted out or bounced before: nothing was sent
    withdrawn = "withdrawn"  # the message was withdrawn before the job ran
    unreadable = "unreadable"  # the job (or its credentials) does not open with this dispatcher's key
    unsafe_header = "unsafe_header"  # a value no email header can hold
    egress_refused = "egress_refused"  # the volunteer's own server is not a public address
    token_revoked = "token_revoked"  # the network refused the credentials: the volunteer reconnects
    credentials_incomplete = "credentials_incomplete"
    rejected = "rejected"  # the network refused the post for good (4xx, duplicate, forbidden)
    failed_after_retries = "failed_after_retries"  # every attempt failed on something passing
    failed = "failed"  # anything else (an older producer's reason not known here)


class StaffFigure(StrEnum):
    """The channel figures staff see (feed's k-anonymous report)."""

    reached = "reached"
    opted_out = "opted_out"  # the recipient had unsubscribed: nothing was sent
    bounced = "bounced"  # the receiving server refused for good, at once or by a later notification
    dropped = "dropped"  # the message was withdrawn before the job ran
    failed = "failed"  # anything else


class VolunteerLine(StrEnum):
    """The columns of the volunteer's history."""

    delivered = "delivered"
    posted = "posted"
    bounced = "bounced"
    failed = "failed"
    pending = "pending"


@dataclass(frozen=True)
class Meaning:
    staff: StaffFigure
    volunteer: VolunteerLine


_STAFF = {
    OutcomeKind.delivered: StaffFigure.reached,
    OutcomeKind.refused: StaffFigure.bounced,
    OutcomeKind.bounced: StaffFigure.bounced,
    OutcomeKind.suppressed: StaffFigure.opted_out,
    OutcomeKind.withdrawn: StaffFigure.dropped,
}


def meaning(kind: OutcomeKind, channel: str) -> Meaning:
    """Which figure staff count this job in, and what its volunteer reads."""
    staff = _STAFF.get(kind, StaffFigure.failed)
    if staff is StaffFigure.reached:
        volunteer = VolunteerLine.delivered if channel == "email" else VolunteerLine.posted
    elif staff is StaffFigure.bounced:
        volunteer = VolunteerLine.bounced
    else:
        # which campaign-wide rule stopped a send (an opt-out) is not the volunteer's to know
        volunteer = VolunteerLine.failed
    return Meaning(staff, volunteer)


# -- results from before the kind existed --------------------------------------------------------

_EXACT = {kind.value: kind for kind in OutcomeKind} | {"credentials_unreadable": OutcomeKind.unreadable}
_PATTERNS = (  # the reasons older dispatchers and contacts wrote, in the only place that reads them
    (re.compile(r"smtp 5\d\d"), OutcomeKind.refused),
    (re.compile(r"bounce\b.*"), OutcomeKind.bounced),
    (re.compile(r"retries exhausted\b.*|dead letter\b.*"), OutcomeKind.failed_after_retries),
    (re.compile(r"http 4\d\d|duplicate|forbidden"), OutcomeKind.rejected),
)


def from_legacy(status: str, reason: str | None) -> OutcomeKind | None:
    """The kind a result without one meant (an older producer during a
    rolling deploy, or a row stored before): None while still pending."""
    if status == "delivered":
        return OutcomeKind.delivered
    if status != "failed":
        return None
    text = (reason or "").strip().lower()
    if text in _EXACT and text not in ("delivered", "failed"):
        return _EXACT[text]
    return next((kind for pattern, kind in _PATTERNS if pattern.fullmatch(text)), OutcomeKind.failed)


def stored_kind(outcome: str | None, status: str, reason: str | None) -> OutcomeKind | None:
    """A stored row's outcome; a row from before the kind, as its status and reason meant."""
    return OutcomeKind(outcome) if outcome else from_legacy(status, reason)


def volunteer_line(kind: OutcomeKind | None, channel: str) -> VolunteerLine:
    """One job in the volunteer's history (None: no result yet)."""
    return VolunteerLine.pending if kind is None else meaning(kind, channel).volunteer
