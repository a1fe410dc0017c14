"""An import's steps: a chunk of parsed rows becomes contacts (merged
with the book's, or new), with the outcome of every row; its report row,
opened. The run itself, chunk by chunk, is usecases/import_file.py."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import BinaryIO

from sqlmodel import Session, col, select

from services.contacts import book as book_ops
from services.contacts.book import Book
from services.contacts import domain
from services.contacts.domain import CONTACT_CHANNELS, Consent, ConsentSource
from services.contacts.importing import ContactDraft, RowOutcome
from services.contacts.store import ConsentRecord, Contact, ImportRow
from shared.events import new_id, utcnow

CHUNK = 500


class CountingReader:
    """Counts the bytes the parser has read, for the progress bar."""

    def __init__(self, raw: BinaryIO) -> None:
        self.raw, self.count = raw, 0

    def read(self, size: int = -1) -> bytes:
        data = self.raw.read(size)
        self.count += len(data)
        return data

    def readline(self, size: int = -1) -> bytes:
        data = self.raw.readline(size)
        self.count += len(data)
        return data

    def __iter__(self) -> Iterator[bytes]:
        return iter(self.readline, b"")

    def readable(self) -> bool:
        return True


@dataclass
class NewContact:
    data: dict
    interests: set[str]
    tags: set[str]
    clear: dict


def _blinds(book: Book, draft: ContactDraft) -> list[str]:
    return [book.index.email(e) for e in draft.emails] + [book.index.phone(p) for p in draft.phones]


def apply_chunk(session: Session, book: Book, outcomes: list[RowOutcome]) -> list[tuple]:
    """A chunk of parsed rows into the book, with one lookup of every
    address hash of the chunk and bulk inserts of what is new: (outcome,
    contact id) per row, and the reason after them when the book refused
    a row the file gave well."""
    vid = book.volunteer_id
    known = book_ops.taxonomy(session)
    drafts = [_taxonomy_split(o.draft, known) if o.draft else None for o in outcomes]
    blinds = [_blinds(book, d) if d else [] for d in drafts]
    existing = book_ops.contacts_by_blind(session, vid, [b for bl in blinds for b in bl])
    new: dict[str, NewContact] = {}
    new_by_blind: dict[str, str] = {}
    # (outcome, contact id), and the reason after them when the book refused the row
    results: list[tuple[str, str | None] | tuple[str, str, str]] = []
    merges: list[tuple[int, str, ContactDraft]] = []
    for n, (draft, bl) in enumerate(zip(drafts, blinds, strict=True)):
        if draft is None:
            results.append(("rejected", None))
        elif hit := next((existing[b] for b in bl if b in existing), None):
            results.append(("pending", hit))
            merges.append((n, hit, draft))
        elif cid := next((new_by_blind[b] for b in bl if b in new_by_blind), None):
            # the same person twice in one file: fold the row into the first
            results.append(("merged", cid))
            _fold(new[cid], draft)
            new_by_blind.update(dict.fromkeys(_blinds(book, draft), cid))
        else:
            cid = new_id()
            new[cid] = NewContact(
                {"name": draft.display_name, "emails": list(draft.emails), "phones": list(draft.phones),
                 "handles": dict(draft.handles), "notes": draft.notes},
                set(draft.interests), set(draft.tags),
                {"locale": draft.locale, "commune": draft.commune, "region": draft.region})
            new_by_blind.update(dict.fromkeys(bl, cid))
            results.append(("imported", cid))
    if merges:
        ids = sorted({cid for _, cid, _ in merges})
        contacts = {c.id: c for c in session.exec(select(Contact).where(col(Contact.id).in_(ids)))}
        tags = book_ops.tags_of_many(session, ids)
        for n, cid, draft in merges:
            try:
                changed = book_ops.merge_draft(session, book, contacts[cid], draft, tags[cid])
            except domain.AddressBlocked as exc:
                # a confirmed contact would gain an address the campaign-wide rules close
                results[n] = ("rejected", cid, f"emails: {exc}")
                continue
            if changed:
                tags[cid] = book_ops.tags_of(session, cid)
            results[n] = ("merged" if changed else "unchanged", cid)
    _insert_new(session, book, new)
    return results


def _taxonomy_split(draft: ContactDraft, known: set[str]) -> ContactDraft:
    """A file's categories outside the campaign's interests become the
    volunteer's own tags rather than being lost or rejected."""
    unknown = set(domain.unknown_interests(draft.interests, known))
    if not unknown:
        return draft
    return replace(draft, interests=tuple(i for i in draft.interests if i not in unknown),
                   tags=tuple(sorted(unknown)))


def _fold(target: NewContact, draft: ContactDraft) -> None:
    data = target.data
    data["emails"] = list(dict.fromkeys([*data["emails"], *draft.emails]))
    data["phones"] = list(dict.fromkeys([*data["phones"], *draft.phones]))
    data["handles"] = {**dict(draft.handles), **data["handles"]}
    data["notes"] = data["notes"] or draft.notes
    target.interests |= set(draft.interests)
    target.tags |= set(draft.tags)
    for key, value in (("locale", draft.locale), ("commune", draft.commune), ("region", draft.region)):
        target.clear[key] = target.clear[key] or value


def _insert_new(session: Session, book: Book, new: dict[str, NewContact]) -> None:
    now = utcnow()
    rows: dict[type, list[dict]] = {Contact: [], ConsentRecord: []}
    for cid, c in new.items():
        rows[Contact].append({"id": cid, "volunteer_id": book.volunteer_id, "created_at": now, "updated_at": now,
                              "sealed": book.cipher.seal(cid, {k: c.data[k] for k in book_ops.SEALED_FIELDS}),
                              **c.clear})
        rows[ConsentRecord] += [{"contact_id": cid, "channel": ch.value, "volunteer_id": book.volunteer_id,
                                 "state": Consent.unknown.value, "source": ConsentSource.volunteer.value,
                                 "updated_at": now} for ch in CONTACT_CHANNELS]
        for model, values in book_ops.index_rows(book, cid, c.data, c.interests, c.tags).items():
            rows.setdefault(model, []).extend(values)
    book_ops.insert_rows(session, rows)


def open_report_row(book: Book, job_id: str, row: ImportRow) -> dict:
    detail = book.cipher.open(f"import:{job_id}:{row.row}", row.sealed) if row.sealed else {}
    return {"row": row.row, "outcome": row.outcome, "contact_id": row.contact_id, **detail}
