"""The volunteer invites a contact: one email saying who writes, on whose
behalf, where the address came from, with links to accept or refuse. Only
an unknown contact can be invited, only once, and an address only once
campaign-wide."""

from __future__ import annotations

from sqlmodel import Session

from services.contacts import book as book_ops
from services.contacts import domain, outbound
from services.contacts.book import Book
from services.contacts.domain import Consent, ConsentSource
from services.contacts.errors import Conflict, NotFound
from services.contacts.store import CampaignMessage, ConsentRecord, Volunteer
from services.contacts.usecases._owned import own
from services.contacts.usecases._unit import Contacts, in_book
from shared.events import Channel, EmailJob, OpenedEmailJob
from shared.sealed import seal_email


async def invite_contact(ctx: Contacts, vol: Volunteer, contact_id: str, message_id: str | None) -> dict:
    k, cfg = ctx.keys, ctx.settings

    def prepare(session: Session, book: Book) -> EmailJob:
        contact = own(session, book, contact_id)
        record = session.get_one(ConsentRecord, (contact.id, "email"))
        # This contact's own state may be named: it is the outcome of this
        # volunteer's own actions (their invitation, its answer, their own
        # email's unsubscribe link). What others did is not (below).
        if record.invited_at is not None or record.state != Consent.unknown.value:
            raise Conflict(f"consent: this contact is {record.state}"
                           + (f", invited on {record.invited_at:%Y-%m-%d}" if record.invited_at else "")
                           + "; an invitation is sent once")
        data = book_ops.read_contact(book, contact)
        if not data["emails"]:
            raise Conflict("emails: this contact has no email address")
        blind = k.index.email(data["emails"][0])
        message = session.get(CampaignMessage, message_id) if message_id else None
        if message_id and message is None:
            raise NotFound("message")
        # One invitation per address, ever, campaign-wide; the refusal reads
        # the same whether the person said no, unsubscribed, bounced, or was
        # invited from another book (domain.UNREACHABLE says why).
        if not book_ops.claim_invitation(session, contact.id, blind):
            raise Conflict(f"emails: {domain.UNREACHABLE}")
        # the address hash lets the person's "no" hold even if this contact is deleted meanwhile
        link = k.links.sign("consent", {"v": vol.id, "c": contact.id, "ch": "email", "b": blind},
                            ttl_seconds=60 * 86400)
        unsubscribe = k.links.sign("unsubscribe", {"v": vol.id, "c": contact.id, "b": blind})
        subject, text = domain.invitation_email(
            volunteer=vol.display_name, campaign=cfg.campaign_name,
            confirm_url=f"{cfg.public_url}/consent/{link}", message_title=message.title if message else None,
            message_body=message.email_body if message else None,
        )
        job = OpenedEmailJob(kind="invitation", job_id=domain.invitation_job_id(blind), relay_id="invitation",
                             message_id=message_id or "invitation", volunteer_id=vol.id,
                             sender_name=domain.header_name(vol.display_name), reply_to=vol.email,
                             recipient_name=domain.header_name(data["name"]),
                             recipient_email=data["emails"][0], recipient_hash=blind, subject=subject,
                             body_text=text, unsubscribe_url=f"{cfg.public_url}/u/{unsubscribe}")
        return seal_email(job, ctx.sealer[Channel.email])

    def mark_invited(session: Session, book: Book) -> dict:
        book_ops.set_consent(session, book, contact_id, Consent.invited, ConsentSource.invitation)
        session.flush()
        return book_ops.describe(session, book, own(session, book, contact_id))

    job = await in_book(ctx, vol, prepare)
    # Sent first, marked after: a failure in between is retried, and the
    # stable job id makes JetStream drop the second copy.
    await outbound.email_job(ctx.bus, job)
    return await in_book(ctx, vol, mark_invited)
