"""A contact answers through a signed link from an email, with no account:
a one-click unsubscribe (RFC 8058), or yes/no to an invitation. The link
is the proof; it carries ids and an address hash, never the address."""

from __future__ import annotations

from enum import Enum

from sqlmodel import Session

from services.contacts import book as book_ops
from services.contacts import outbound
from services.contacts.domain import Consent, ConsentSource
from services.contacts.store import ConsentRecord, Contact, Volunteer
from services.contacts.usecases._profile import republish
from services.contacts.usecases._unit import Contacts, opened, unit


class Answer(str, Enum):
    done = "done"  # the contact's consent changed
    refused = "refused"  # a "no" for a contact deleted since: the address still closes
    gone = "gone"  # nothing left to answer for
    closed = "closed"  # a "yes" to an address that unsubscribed or bounced: it stays closed


async def unsubscribe(ctx: Contacts, payload: dict) -> None:
    """Withdraw the contact's consent and add the address hash to the
    campaign-wide suppression list, then tell every dispatcher. It stops
    every message of the campaign to this address, from any volunteer."""

    def record(session: Session) -> None:
        book_ops.suppress_address(session, payload["b"], "unsubscribe")
        contact = session.get(Contact, payload["c"])
        vol = session.get(Volunteer, payload["v"])
        if contact is not None and vol is not None and vol.wrapped_key is not None:
            book = opened(session, ctx.keys, vol)
            book_ops.set_consent(session, book, contact.id, Consent.withdrawn, ConsentSource.unsubscribe)

    await unit(ctx.engine, record)
    await outbound.suppressed(ctx.bus, payload["b"], "unsubscribe")
    await republish(ctx, payload["v"])


async def answer_invitation(ctx: Contacts, payload: dict, yes: bool) -> Answer:
    """A "no" closes the address campaign-wide (every book: no invitation,
    no relay, no volunteer may confirm it), even when the volunteer deleted
    the contact meanwhile. Only the person takes it back: a later "yes"
    through this same link reopens it, unless they also unsubscribed or
    the address bounced, which stay for good."""
    target = Consent.confirmed if yes else Consent.withdrawn

    def record(session: Session) -> Answer:
        vol = session.get(Volunteer, payload["v"])
        record = session.get(ConsentRecord, (payload["c"], payload["ch"]))
        book = None
        if vol is not None and vol.wrapped_key is not None and record is not None:
            book = opened(session, ctx.keys, vol)
        blind = payload.get("b")
        if blind is None and book is not None:  # a link made before it carried the address hash
            blind = next(iter(book_ops.email_blinds(session, payload["c"])), None)
        if target is Consent.withdrawn and blind is not None:
            book_ops.suppress_address(session, blind, book_ops.REFUSED)
        if book is None:
            return Answer.refused if target is Consent.withdrawn and blind is not None else Answer.gone
        if target is Consent.confirmed and blind is not None and not book_ops.lift_refusal(session, blind):
            session.rollback()
            return Answer.closed
        book_ops.set_consent(session, book, payload["c"], target, ConsentSource.contact)
        return Answer.done

    outcome = await unit(ctx.engine, record)
    if outcome is Answer.done:
        await republish(ctx, payload["v"])
    return outcome
