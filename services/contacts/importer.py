"""Running an import: the parsed rows of one file become contacts, in
chunks, with the outcome of every row kept for the report.

Each chunk commits on its own, so a big file never holds a long write lock
and progress is visible to every replica. A file that fails midway (a broken
line at row 50 000, a crash) stops with the row and the reason; the rows
before it are in the book, and sending the same file again resumes it: rows
already imported are recognised by their address and left unchanged."""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import BinaryIO

from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from services.contacts import book as book_ops
from services.contacts.book import Book, open_book
from services.contacts.crypto import MasterKey
from services.contacts import domain
from services.contacts.domain import CONTACT_CHANNELS, Consent, ConsentSource
from services.contacts.importing import ColumnMapping, ContactDraft, ImportFormatError, RowOutcome, parse_file
from services.contacts.store import ConsentRecord, Contact, ImportJob, ImportRow, Volunteer
from shared.blind_index import BlindIndex
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
    results: list[tuple[str, str | None]] = []
    merges: list[tuple[int, str]] = []
    for n, (draft, bl) in enumerate(zip(drafts, blinds, strict=True)):
        if draft is None:
            results.append(("rejected", None))
        elif hit := next((existing[b] for b in bl if b in existing), None):
            results.append(("pending", hit))
            merges.append((n, hit))
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
        ids = sorted({cid for _, cid in merges})
        contacts = {c.id: c for c in session.exec(select(Contact).where(Contact.id.in_(ids)))}
        tags = book_ops.tags_of_many(session, ids)
        for n, cid in merges:
            try:
                changed = book_ops.merge_draft(session, book, contacts[cid], drafts[n], tags[cid])
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


def run_import(engine: Engine, master: MasterKey, index: BlindIndex, volunteer_id: str, job_id: str,
               path: str, filename: str | None, mapping: ColumnMapping | None, delimiter: str | None) -> None:
    with Session(engine, expire_on_commit=False) as session:
        job = session.get(ImportJob, job_id)
        book = open_book(session, master, index, session.get(Volunteer, volunteer_id))
        last_row = 0
        try:
            with open(path, "rb") as raw:
                reader = CountingReader(raw)
                rows = parse_file(reader, filename, mapping=mapping, delimiter=delimiter)
                while chunk := list(itertools.islice(rows, CHUNK)):
                    report = []
                    for outcome, (result, contact_id, *why) in zip(chunk, apply_chunk(session, book, chunk),
                                                                   strict=True):
                        sealed = (book.cipher.seal(f"import:{job_id}:{outcome.row}",
                                                   {"raw": outcome.raw, "error": why[0] if why else outcome.error})
                                  if result == "rejected" else None)
                        report.append({"import_id": job_id, "row": outcome.row, "outcome": result,
                                       "contact_id": contact_id, "sealed": sealed})
                        setattr(job, result, getattr(job, result) + 1)
                    book_ops.insert_rows(session, {ImportRow: report})
                    job.rows += len(chunk)
                    last_row = chunk[-1].row
                    job.bytes_read = reader.count
                    session.add(job)
                    session.commit()
            job.status, job.bytes_read = "done", job.bytes_total
        except ImportFormatError as exc:
            session.rollback()
            job = session.get(ImportJob, job_id)
            where = f"row {exc.row}: " if getattr(exc, "row", None) else ""
            job.status, job.error = "failed", f"{where}{exc}{resume_hint(job)}"
        except Exception as exc:  # never leave a job "running" forever
            session.rollback()
            job = session.get(ImportJob, job_id)
            job.status = "failed"
            job.error = f"stopped after row {last_row} ({type(exc).__name__}){resume_hint(job)}"
        finally:
            job.finished_at = utcnow()
            session.add(job)
            session.commit()
            os.unlink(path)


def resume_hint(job: ImportJob) -> str:
    if not job.rows:
        return "; nothing was imported"
    return (f"; the {job.rows} rows before it are in your book — fix the file and send it again: "
            "rows already imported are recognised and left unchanged")


def open_report_row(book: Book, job_id: str, row: ImportRow) -> dict:
    detail = book.cipher.open(f"import:{job_id}:{row.row}", row.sealed) if row.sealed else {}
    return {"row": row.row, "outcome": row.outcome, "contact_id": row.contact_id, **detail}
