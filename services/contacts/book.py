"""The contact book's service layer: contacts sealed with the volunteer's
key, found through keyed hashes and search tokens. Every function takes an
open session and the caller's ``Book`` (their cipher); none does HTTP or
NATS, so the rules are testable on any database."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import and_, delete, func, insert, or_
from sqlmodel import Session, SQLModel, col, select

from services.contacts.crypto import BookCipher, MasterKey, new_data_key
from services.contacts.domain import (
    CONTACT_CHANNELS,
    AddressBlocked,
    Consent,
    ConsentSource,
    ContactFields,
    ContactView,
    consent_transition,
    stable_id,
)
from services.contacts.importing.model import ContactDraft
from services.contacts.importing.normalize import normalize_email
from services.contacts.store import (
    Contact,
    ContactAddress,
    ContactTag,
    ConsentEvent,
    ConsentRecord,
    ImportJob,
    InboxItem,
    InvitationSent,
    Invite,
    NetworkAccount,
    Relay,
    SearchToken,
    SentItem,
    Suppression,
    TaxonomyTerm,
    Volunteer,
)
from shared.db import insert_or_get
from shared.blind_index import BlindIndex
from shared.events import utcnow

SEALED_FIELDS = ("name", "emails", "phones", "handles", "notes")


class DuplicateAddress(ValueError):
    def __init__(self, kind: str, contact_id: str) -> None:
        super().__init__(f"{kind}s: this address is already in your book")
        self.kind, self.contact_id = kind, contact_id


class BookErased(LookupError):
    """The volunteer's key is gone: their book cannot be read any more."""


@dataclass
class Book:
    """One volunteer's book, opened with their key."""

    volunteer_id: str
    cipher: BookCipher
    index: BlindIndex


def open_book(session: Session, master: MasterKey, index: BlindIndex, volunteer: Volunteer) -> Book:
    """The volunteer's book; creates their data key on first use."""
    vol = session.get_one(Volunteer, volunteer.id)
    if vol.wrapped_key is None:
        if vol.key_version is not None:
            raise BookErased(vol.id)
        dek = new_data_key()
        vol.key_version, vol.wrapped_key = master.wrap(dek, vol.id)
        session.add(vol)
    else:
        assert vol.key_version is not None  # a wrapped key always names the master key that wrapped it
        dek = master.unwrap(vol.key_version, vol.wrapped_key, vol.id)
    return Book(vol.id, BookCipher(dek, vol.id), index)


# -- writing -----------------------------------------------------------------------


def _addresses(book: Book, emails: list[str], phones: list[str]) -> list[tuple[str, str]]:
    return [("email", book.index.email(e)) for e in emails] + [("phone", book.index.phone(p)) for p in phones]


def contacts_by_blind(session: Session, volunteer_id: str, blinds: list[str]) -> dict[str, str]:
    """Address hash -> contact id, for the hashes already in this book. The
    hash is keyed by kind too, so the hash alone identifies an address."""
    found: dict[str, str] = {}
    for start in range(0, len(blinds), 500):  # stay under bind-parameter limits
        found.update(session.exec(select(ContactAddress.blind, ContactAddress.contact_id).where(
            ContactAddress.volunteer_id == volunteer_id,
            col(ContactAddress.blind).in_(blinds[start:start + 500]))).all())
    return found


def find_by_addresses(session: Session, book: Book, emails: list[str], phones: list[str]) -> str | None:
    blinds = [b for _, b in _addresses(book, emails, phones)]
    found = contacts_by_blind(session, book.volunteer_id, blinds)
    return next((found[b] for b in blinds if b in found), None)


def channels_of(data: dict) -> list[str]:
    """How a contact can be reached: email, phone, and each social network."""
    found = set(data["handles"])
    found |= {"email"} if data["emails"] else set()
    found |= {"phone"} if data["phones"] else set()
    return sorted(found)


def index_rows(book: Book, contact_id: str, data: dict, interests, tags) -> dict[type[SQLModel], list[dict]]:
    """The rows that make a contact findable: address hashes, interests,
    tags and channels, search tokens. Plain dicts, for bulk inserts."""
    vid = book.volunteer_id
    addresses = [{"contact_id": contact_id, "kind": kind, "blind": blind, "volunteer_id": vid}
                 for kind, blind in dict.fromkeys(_addresses(book, data["emails"], data["phones"]))]
    tags_rows = [{"contact_id": contact_id, "kind": kind, "tag": word, "volunteer_id": vid}
                 for kind, words in (("interest", interests), ("tag", tags), ("channel", channels_of(data)))
                 for word in sorted(set(words))]
    # whole addresses: their words (local part, domain) are searchable too
    tokens = [{"contact_id": contact_id, "token": token, "volunteer_id": vid}
              for token in book.cipher.search_tokens(data["name"], *data["emails"])]
    return {ContactAddress: addresses, ContactTag: tags_rows, SearchToken: tokens}


def insert_rows(session: Session, rows: Mapping[type[SQLModel], list[dict]]) -> None:
    """Core executemany inserts: no ORM objects for what is only written."""
    connection = session.connection()
    for model, values in rows.items():
        if values:
            connection.execute(insert(model), values)


def _write_indexes(session: Session, book: Book, contact: Contact, data: dict, interests, tags) -> None:
    for model in (ContactAddress, ContactTag, SearchToken):
        session.exec(delete(model).where(col(model.contact_id) == contact.id))
    insert_rows(session, index_rows(book, contact.id, data, interests, tags))


def _seal(book: Book, contact: Contact, data: dict) -> None:
    contact.sealed = book.cipher.seal(contact.id, {k: data[k] for k in SEALED_FIELDS})
    contact.updated_at = utcnow()


def _data_of(fields: ContactFields | ContactDraft) -> dict:
    if isinstance(fields, ContactDraft):
        return {"name": fields.display_name, "emails": list(fields.emails), "phones": list(fields.phones),
                "handles": dict(fields.handles), "notes": fields.notes}
    return {"name": fields.name, "emails": list(dict.fromkeys(normalize_email(str(e)) for e in fields.emails)),
            "phones": list(dict.fromkeys(fields.phones)), "handles": dict(fields.handles), "notes": fields.notes}


def create_contact(session: Session, book: Book, fields: ContactFields | ContactDraft,
                   consent: Consent = Consent.unknown, proof: str | None = None,
                   source: ConsentSource = ConsentSource.volunteer) -> Contact:
    """Add a contact; DuplicateAddress if one of its addresses is in the book."""
    data = _data_of(fields)
    if existing := find_by_addresses(session, book, data["emails"], data["phones"]):
        raise DuplicateAddress("email" if data["emails"] else "phone", existing)
    contact = Contact(volunteer_id=book.volunteer_id, sealed=b"", locale=fields.locale,
                      commune=fields.commune, region=fields.region)
    _seal(book, contact, data)
    session.add(contact)
    session.flush()
    _write_indexes(session, book, contact, data, fields.interests, getattr(fields, "tags", ()))
    for channel in CONTACT_CHANNELS:
        session.add(ConsentRecord(contact_id=contact.id, channel=channel.value, volunteer_id=book.volunteer_id,
                                  state=Consent.unknown.value, source=source.value))
    if consent is not Consent.unknown:
        set_consent(session, book, contact.id, Consent(consent), source, proof)
    return contact


def read_contact(book: Book, contact: Contact) -> dict:
    return book.cipher.open(contact.id, contact.sealed)


def tags_of(session: Session, contact_id: str) -> tuple[list[str], list[str]]:
    return tags_of_many(session, [contact_id]).get(contact_id, ([], []))


def tags_of_many(session: Session, contact_ids: list[str]) -> dict[str, tuple[list[str], list[str]]]:
    """contact id -> (interests, tags), in one query."""
    found: dict[str, tuple[list[str], list[str]]] = {cid: ([], []) for cid in contact_ids}
    rows = session.exec(select(ContactTag.contact_id, ContactTag.kind, ContactTag.tag).where(
        col(ContactTag.contact_id).in_(contact_ids), col(ContactTag.kind).in_(("interest", "tag")))).all()
    for cid, kind, tag in sorted(rows):
        found[cid][0 if kind == "interest" else 1].append(tag)
    return found


def update_contact(session: Session, book: Book, contact: Contact, changes: dict) -> Contact:
    """Apply the given fields (a ContactPatch's set fields)."""
    data = read_contact(book, contact)
    interests, tags = tags_of(session, contact.id)
    if "emails" in changes:
        changes["emails"] = list(dict.fromkeys(normalize_email(str(e)) for e in changes["emails"]))
    for key in SEALED_FIELDS:
        if key in changes:
            data[key] = changes[key]
    if "emails" in changes or "phones" in changes:
        clash = session.exec(select(ContactAddress.contact_id, ContactAddress.kind).where(
            ContactAddress.volunteer_id == book.volunteer_id, ContactAddress.contact_id != contact.id,
            col(ContactAddress.blind).in_([b for _, b in _addresses(book, data["emails"], data["phones"])]),
        )).first()
        if clash:
            raise DuplicateAddress(clash[1], clash[0])
    if "emails" in changes:
        refuse_closed_on_confirmed(session, book, contact.id, data["emails"])
    for key in ("locale", "commune", "region"):
        if key in changes:
            setattr(contact, key, changes[key])
    _seal(book, contact, data)
    session.add(contact)
    _write_indexes(session, book, contact, data, changes.get("interests", interests), changes.get("tags", tags))
    return contact


def refuse_closed_on_confirmed(session: Session, book: Book, contact_id: str, emails: list[str]) -> None:
    """An address a confirmed contact gains would be confirmed with it: the
    same refusal as confirming it directly (AddressBlocked)."""
    record = session.get(ConsentRecord, (contact_id, "email"))
    if record is None or record.state != Consent.confirmed.value:
        return
    known = set(email_blinds(session, contact_id))
    added = [b for b in (book.index.email(e) for e in emails) if b not in known]
    if closed(session, contact_id, added):
        raise AddressBlocked()


def merge_draft(session: Session, book: Book, contact: Contact, draft: ContactDraft,
                known_tags: tuple[list[str], list[str]] | None = None) -> bool:
    """Fold an imported row into an existing contact: union of addresses,
    handles, interests; fill empty fields. False if nothing changed."""
    data = read_contact(book, contact)
    interests, tags = known_tags or tags_of(session, contact.id)
    merged = dict(data)
    merged["emails"] = list(dict.fromkeys([*data["emails"], *draft.emails]))
    merged["phones"] = list(dict.fromkeys([*data["phones"], *draft.phones]))
    merged["handles"] = {**dict(draft.handles), **data["handles"]}
    merged["notes"] = data["notes"] or draft.notes
    new_interests = sorted(set(interests) | set(draft.interests))
    new_tags = sorted(set(tags) | set(draft.tags))
    clear = {k: getattr(contact, k) or getattr(draft, k) for k in ("locale", "commune", "region")}
    if (merged == data and new_interests == interests and new_tags == tags
            and all(getattr(contact, k) == v for k, v in clear.items())):
        return False
    if merged["emails"] != data["emails"]:
        refuse_closed_on_confirmed(session, book, contact.id, merged["emails"])
    for k, v in clear.items():
        setattr(contact, k, v)
    _seal(book, contact, merged)
    session.add(contact)
    _write_indexes(session, book, contact, merged, new_interests, new_tags)
    return True


# -- the campaign-wide rules on an address ---------------------------------------------
#
# A refusal, an unsubscribe or a bounce (Suppression), and the one invitation
# an address may ever get (InvitationSent), are kept by keyed hash apart from
# the books, so they hold in every book, for a contact deleted and added
# again as much as for another volunteer's copy of the same person.

FINAL_REASONS = frozenset({"unsubscribe", "bounce", "complaint"})  # what the dispatchers replay for good
REFUSED = "refused"  # the person's "no" to an invitation: theirs to take back


def invitation_claim(contact_id: str) -> str:
    return stable_id("invitation-claim", contact_id)


def email_blinds(session: Session, contact_id: str) -> list[str]:
    return list(session.exec(select(ContactAddress.blind).where(
        ContactAddress.contact_id == contact_id, ContactAddress.kind == "email")))


def closed(session: Session, contact_id: str, blinds: list[str]) -> bool:
    """True when the campaign-wide rules close one of these addresses to
    this contact row: a suppression, or the one invitation already sent
    from another row (another book, or this book before a delete). Both
    read the same to the volunteer (domain.UNREACHABLE), so what they are
    refused never tells them which it was."""
    if not blinds:
        return False
    if session.exec(select(Suppression.blind).where(col(Suppression.blind).in_(blinds))).first() is not None:
        return True
    return session.exec(select(InvitationSent.blind).where(
        col(InvitationSent.blind).in_(blinds), col(InvitationSent.claim) != invitation_claim(contact_id))).first() is not None


def claim_invitation(session: Session, contact_id: str, blind: str) -> bool:
    """Take the address's one invitation for this contact row (committed
    before the send, so two books inviting at once cannot both win); True
    if it is this row's, which also lets this row retry a failed send."""
    if session.get(Suppression, blind) is not None:
        return False
    mine = invitation_claim(contact_id)
    row = insert_or_get(session, InvitationSent(blind=blind, claim=mine), InvitationSent, blind)
    return row is not None and row.claim == mine


def suppress_address(session: Session, blind: str, reason: str) -> None:
    """Close an address campaign-wide. A final reason (unsubscribe, bounce)
    replaces a refusal, which the person could otherwise lift while the
    dispatchers still hold the address closed."""
    row = insert_or_get(session, Suppression(blind=blind, reason=reason), Suppression, blind)
    if row.reason == REFUSED and reason in FINAL_REASONS:
        row.reason = reason
        session.add(row)


def lift_refusal(session: Session, blind: str) -> bool:
    """The person said yes through their own link: their earlier "no" no
    longer closes the address. An unsubscribe or a bounce stays (the
    dispatchers keep it for good). True if the address is open now."""
    row = session.get(Suppression, blind)
    if row is not None and row.reason == REFUSED:
        session.delete(row)
        session.flush()
        return True
    return row is None


def set_consent(session: Session, book: Book, contact_id: str, target: Consent, source: ConsentSource,
                proof: str | None = None, channel: str = "email") -> ConsentRecord:
    record = session.get_one(ConsentRecord, (contact_id, channel))
    new_state = consent_transition(Consent(record.state), target, source, proof)
    if (new_state is Consent.confirmed and record.state != new_state.value and source is ConsentSource.volunteer
            and closed(session, contact_id, email_blinds(session, contact_id))):
        raise AddressBlocked()
    if new_state.value != record.state or source is ConsentSource.contact:
        record.state, record.source, record.updated_at = new_state.value, source.value, utcnow()
        if target is Consent.invited:
            record.invited_at = record.updated_at
        if proof:
            record.proof = book.cipher.seal(f"proof:{contact_id}:{channel}", {"proof": proof})
        session.add(record)
        session.add(ConsentEvent(contact_id=contact_id, channel=channel, state=new_state.value, source=source.value))
    return record


def bulk_tag(session: Session, volunteer_id: str, contact_ids: list[str], kind: str,
             add: list[str], remove: list[str]) -> int:
    """Add and remove words on many contacts; returns how many rows changed."""
    changed = 0
    if remove:
        changed += session.exec(delete(ContactTag).where(
            col(ContactTag.contact_id).in_(contact_ids), col(ContactTag.kind) == kind, col(ContactTag.tag).in_(remove))).rowcount
    existing = set(session.exec(select(ContactTag.contact_id, ContactTag.tag).where(
        col(ContactTag.contact_id).in_(contact_ids), col(ContactTag.kind) == kind, col(ContactTag.tag).in_(add))).all())
    for cid in contact_ids:
        for word in set(add):
            if (cid, word) not in existing:
                session.add(ContactTag(contact_id=cid, kind=kind, tag=word, volunteer_id=volunteer_id))
                changed += 1
    return changed


def delete_contact(session: Session, contact_id: str) -> None:
    for model in (ContactAddress, ContactTag, SearchToken, ConsentEvent, ConsentRecord):
        session.exec(delete(model).where(col(model.contact_id) == contact_id))
    session.exec(delete(Contact).where(col(Contact.id) == contact_id))


def erase_volunteer(session: Session, volunteer_id: str) -> None:
    """Crypto-shred: the key goes first, then every row of the book."""
    vol = session.get_one(Volunteer, volunteer_id)
    vol.wrapped_key, vol.token_hash = None, None
    vol.auto_relay_interests = None  # nothing is relayed in the name of an erased volunteer
    vol.key_version = vol.key_version or 0
    session.add(vol)
    ids = select(Contact.id).where(Contact.volunteer_id == volunteer_id)
    for model in (ContactAddress, ContactTag, SearchToken, ConsentEvent, ConsentRecord):
        session.exec(delete(model).where(col(model.contact_id).in_(ids)))
    session.exec(delete(Contact).where(col(Contact.volunteer_id) == volunteer_id))
    relays = select(Relay.id).where(Relay.volunteer_id == volunteer_id)
    session.exec(delete(SentItem).where(col(SentItem.relay_id).in_(relays)))
    session.exec(delete(Invite).where(col(Invite.volunteer_id) == volunteer_id))
    for owned in (InboxItem, Relay, ImportJob, NetworkAccount):
        session.exec(delete(owned).where(col(owned.volunteer_id) == volunteer_id))


# -- reading -------------------------------------------------------------------------


def views(session: Session, volunteer_id: str) -> list[ContactView]:
    """Interests, email consent and primary email hash of every contact: what
    the profile and the relay rules need, without opening a blob."""
    consent = dict(session.exec(select(ConsentRecord.contact_id, ConsentRecord.state).where(
        ConsentRecord.volunteer_id == volunteer_id, ConsentRecord.channel == "email")).all())
    interests: dict[str, set[str]] = {}
    for cid, tag in session.exec(select(ContactTag.contact_id, ContactTag.tag).where(
            ContactTag.volunteer_id == volunteer_id, ContactTag.kind == "interest")):
        interests.setdefault(cid, set()).add(tag)
    has_email = {cid for cid in session.exec(select(ContactAddress.contact_id).where(
        ContactAddress.volunteer_id == volunteer_id, ContactAddress.kind == "email"))}
    places = {cid: (region, locale) for cid, region, locale in session.exec(
        select(Contact.id, Contact.region, Contact.locale).where(Contact.volunteer_id == volunteer_id))}
    return [
        ContactView(cid, frozenset(interests.get(cid, ())), Consent(state), *places.get(cid, (None, None)))
        for cid, state in consent.items() if cid in has_email
    ]


def taxonomy(session: Session) -> set[str]:
    return set(session.exec(select(TaxonomyTerm.name)))


@dataclass(frozen=True)
class PageQuery:
    q: str | None = None
    interest: str | None = None
    tag: str | None = None
    consent: Consent | None = None
    channel: str | None = None  # email, phone, mastodon, bluesky …
    cursor: str | None = None
    limit: int = 50


def encode_cursor(contact: Contact) -> str:
    return base64.urlsafe_b64encode(json.dumps([contact.created_at.isoformat(), contact.id]).encode()).decode()


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        at, cid = json.loads(base64.urlsafe_b64decode(cursor.encode()))
        return datetime.fromisoformat(at), cid
    except (ValueError, TypeError) as exc:
        raise ValueError("cursor: not a cursor this API gave") from exc


def _filtered(book: Book, query: PageQuery, stmt):
    vid = book.volunteer_id
    stmt = stmt.where(Contact.volunteer_id == vid)
    if query.q:
        for token in book.cipher.query_tokens(query.q):
            stmt = stmt.where(col(Contact.id).in_(select(SearchToken.contact_id).where(
                SearchToken.volunteer_id == vid, SearchToken.token == token)))
    for kind, word in (("interest", query.interest), ("tag", query.tag), ("channel", query.channel)):
        if word:
            stmt = stmt.where(col(Contact.id).in_(select(ContactTag.contact_id).where(
                ContactTag.volunteer_id == vid, ContactTag.kind == kind, ContactTag.tag == word)))
    if query.consent:
        stmt = stmt.where(col(Contact.id).in_(select(ConsentRecord.contact_id).where(
            ConsentRecord.volunteer_id == vid, ConsentRecord.channel == "email",
            ConsentRecord.state == query.consent.value)))
    return stmt


def count_matching(session: Session, book: Book, query: PageQuery) -> int:
    return session.exec(_filtered(book, query, select(func.count()).select_from(Contact))).one()


def page(session: Session, book: Book, query: PageQuery) -> tuple[list[Contact], str | None]:
    """One page of the book, oldest first, keyset-paginated: the cost of a
    page does not grow with the book."""
    stmt = _filtered(book, query, select(Contact))
    if query.cursor:
        at, cid = decode_cursor(query.cursor)
        stmt = stmt.where(or_(col(Contact.created_at) > at, and_(col(Contact.created_at) == at, col(Contact.id) > cid)))
    rows = list(session.exec(stmt.order_by(Contact.created_at, Contact.id).limit(query.limit + 1)))
    more = len(rows) > query.limit
    rows = rows[: query.limit]
    return rows, encode_cursor(rows[-1]) if more and rows else None


def export_rows(session: Session, book: Book) -> Iterator[dict]:
    """Every contact, opened, in pages (bounded memory)."""
    cursor = None
    while True:
        rows, cursor = page(session, book, PageQuery(cursor=cursor, limit=500))
        for contact in rows:
            yield describe(session, book, contact)
        if cursor is None:
            return


def describe(session: Session, book: Book, contact: Contact) -> dict:
    data = read_contact(book, contact)
    interests, tags = tags_of(session, contact.id)
    consent = {r.channel: {"state": r.state, "source": r.source, "updated_at": r.updated_at.isoformat(),
                           "invited_at": r.invited_at.isoformat() if r.invited_at else None}
               for r in session.exec(select(ConsentRecord).where(ConsentRecord.contact_id == contact.id))}
    sent = [{"message_id": s.message_id, "channel": s.channel, "status": s.status,
             "at": s.updated_at.isoformat()}
            for s in session.exec(select(SentItem).where(SentItem.contact_id == contact.id))]
    return {"id": contact.id, **data, "locale": contact.locale, "commune": contact.commune,
            "region": contact.region, "interests": interests, "tags": tags, "consent": consent,
            "history": sent, "created_at": contact.created_at.isoformat(),
            "updated_at": contact.updated_at.isoformat()}
