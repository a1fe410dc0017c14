"""Turning a suggestion into jobs, under the campaign-wide rules: never to
a suppressed address (an unsubscribe, a bounce, or a refused invitation, in
any book), never the same message twice to one person (whoever
relays it), never more than the cap per person per window. All on keyed
hashes: no rule ever compares addresses.

Each job carries the recipient, the text, the volunteer's note and
address (and their own SMTP account, when they connected one: their emails
go through it) sealed with the email channel's transit key, for that job
only (``shared.sealed``): NATS keeps ids and a keyed hash in clear."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import timedelta

from sqlalchemy import func
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from services.contacts import book as book_ops
from services.contacts import domain, networks
from services.contacts.book import Book
from services.contacts.domain import RecipientHistory, skip_reason
from services.contacts.store import CampaignMessage, Contact, DeliveryLedger, Relay, SentItem, Suppression, Volunteer
from shared.events import Channel, EmailJob, OpenedEmailJob, utcnow
from shared.links import LinkSigner
from shared.sealed import TransitKeys, seal_email


@dataclass
class RelayPlan:
    jobs: list[EmailJob] = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=dict)


def history_of(session: Session, blind: str, message_id: str, relay_id: str, since) -> RecipientHistory:
    got = session.get(DeliveryLedger, (blind, message_id))
    # other messages only, in one query: a concurrent reservation of this
    # message cannot be counted against the cap
    others = session.exec(select(func.count()).where(
        DeliveryLedger.blind == blind, DeliveryLedger.at >= since, DeliveryLedger.message_id != message_id)).one()
    return RecipientHistory(
        suppressed=session.get(Suppression, blind) is not None,
        got_this_message=got is not None and got.relay_id != relay_id,
        messages_in_window=others,
    )


def plan_relay(session: Session, book: Book, vol: Volunteer, msg: CampaignMessage, relay_id: str, *,
               public_url: str, links: LinkSigner, sealer: TransitKeys, cap: int, window: timedelta,
               note: str | None = None) -> RelayPlan:
    """Reserve each recipient in the ledger and build their job. The ledger
    row is the lock: of two volunteers relaying to the same person at the
    same moment, one insert wins and the other skips them."""
    plan, skipped = RelayPlan(), Counter[str]()
    since = utcnow() - window
    own = networks.email_identity(session, book)
    # through their own server the email is from their own address, so replies go there too
    sender_name, reply_to = ((own.display_name or vol.display_name, str(own.from_address)) if own
                             else (vol.display_name, vol.email))
    for view in domain.relay_recipients(book_ops.views(session, vol.id), msg.interests):
        contact = session.get_one(Contact, view.contact_id)
        data = book_ops.read_contact(book, contact)
        if not data["emails"]:
            skipped[domain.Skip.no_address.value] += 1
            continue
        address = data["emails"][0]
        blind = book.index.email(address)
        jid = domain.job_id(relay_id, contact.id, Channel.email)
        sent = SentItem(job_id=jid, relay_id=relay_id, contact_id=contact.id,
                        message_id=msg.message_id, channel="email", status="queued")
        rule = skip_reason(history_of(session, blind, msg.message_id, relay_id, since), cap)
        if rule is None and not _reserve(session, blind, msg.message_id, relay_id, sent):
            rule = domain.Rule.already_received
        if rule is not None:
            # counted, not named: which rule it was is about other people (domain.Skip)
            skipped[domain.Skip.unreachable.value] += 1
            continue
        token = links.sign("unsubscribe", {"v": vol.id, "c": contact.id, "b": blind})
        plan.jobs.append(seal_email(OpenedEmailJob(
            job_id=jid, relay_id=relay_id, message_id=msg.message_id, volunteer_id=vol.id,
            sender_name=domain.header_name(sender_name), reply_to=reply_to,
            recipient_name=domain.header_name(data["name"]),
            recipient_email=address, recipient_hash=blind, subject=domain.header_name(msg.email_subject),
            body_text=msg.email_body, unsubscribe_url=f"{public_url}/u/{token}", note=note,
            smtp_account=own,
        ), sealer[Channel.email]))
    plan.skipped = dict(skipped)
    return plan


def _reserve(session: Session, blind: str, message_id: str, relay_id: str, sent: SentItem) -> bool:
    """Claim this recipient for this message, with the history row, in one
    commit. True if ours (or already ours, on a retried relay)."""
    existing = session.get(DeliveryLedger, (blind, message_id))
    if existing is not None:
        if existing.relay_id != relay_id:
            return False
        session.merge(sent)
    else:
        session.add_all([DeliveryLedger(blind=blind, message_id=message_id, relay_id=relay_id), sent])
    try:
        session.commit()
        return True
    except IntegrityError:  # reserved concurrently: by another relay, or by this one's double click
        session.rollback()
        winner = session.get(DeliveryLedger, (blind, message_id))
        return winner is not None and winner.relay_id == relay_id


def relay_outcomes(session: Session, relay_id: str) -> tuple[Relay | None, dict[str, dict[str, int]], dict[str, str | None]]:
    """The relay, its jobs counted per channel and status, and why each
    social post failed (one post per network: its reason, if any)."""
    rows = session.exec(select(SentItem.channel, SentItem.status, func.count()).where(
        SentItem.relay_id == relay_id).group_by(SentItem.channel, SentItem.status)).all()
    counts: dict[str, dict[str, int]] = {}
    for channel, state, n in rows:
        counts.setdefault(channel, {})[state] = n
    reasons = dict(session.exec(select(SentItem.channel, SentItem.reason).where(
        col(SentItem.relay_id) == relay_id, col(SentItem.channel) != Channel.email.value, col(SentItem.reason).is_not(None))).all())
    return session.get(Relay, relay_id), counts, reasons
