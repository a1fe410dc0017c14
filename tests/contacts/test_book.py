"""The book's service layer on SQLite and PostgreSQL: contacts are sealed,
found by keyed hashes and search tokens, merged without duplicates, and a
dump of the database shows no contact in clear."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url
from sqlmodel import Session, select

from services.contacts import book as book_ops
from services.contacts.book import BookErased, DuplicateAddress, PageQuery, open_book
from services.contacts.crypto import DecryptionError, MasterKey
from services.contacts.domain import Consent, ConsentSource, ContactIn
from services.contacts.importing import ContactDraft
from services.contacts.store import Contact, ImportJob, ImportRow, Volunteer, create_schema
from services.contacts.usecases._unit import Keys
from services.contacts.usecases.import_file import run_import
from shared.blind_index import BlindIndex
from shared.db import make_engine
from shared.links import LinkSigner

MASTER = MasterKey({1: b"m" * 32})
INDEX = BlindIndex(b"i" * 32)
KEYS = Keys(MASTER, INDEX, LinkSigner(b"l" * 32))

PEOPLE = [
    # the needles a dump must not show
    ("Hélène Zoubiri", "helene.zoubiri@exemple.fr", "+33612345678", "Voisine du 3e, parle de l'école"),
    ("Marc Quintanilla", "marc.quintanilla@exemple.fr", "+33698765432", "Collègue, syndicat"),
]


@pytest.fixture
def engine(db_url):
    engine = make_engine(db_url)
    create_schema(engine)
    yield engine
    engine.dispose()


def volunteer(session: Session, name: str = "Alice") -> Volunteer:
    vol = Volunteer(display_name=name, email=f"{name.lower()}@benevoles.example", token_hash=name * 8)
    session.add(vol)
    session.commit()
    return vol


def add_people(session: Session, book) -> list[Contact]:
    contacts = []
    for name, email, phone, notes in PEOPLE:
        fields = ContactIn(name=name, emails=[email], phones=[phone], notes=notes, interests=["education"],
                           handles={"mastodon": f"@{email.split('@')[0]}@piaille.fr"},
                           consent="confirmed", consent_proof=f"{name} a dit oui au marché")
        contacts.append(book_ops.create_contact(session, book, fields, fields.consent, fields.consent_proof))
    session.commit()
    return contacts


def test_contacts_open_with_the_volunteers_key_and_addresses_are_deduplicated(engine):
    with Session(engine) as s:
        book = open_book(s, MASTER, INDEX, volunteer(s))
        helene, _ = add_people(s, book)
        data = book_ops.read_contact(book, helene)
        assert data["name"] == "Hélène Zoubiri" and data["phones"] == ["+33612345678"]
        with pytest.raises(DuplicateAddress):
            book_ops.create_contact(s, book, ContactIn(name="Other", emails=["HELENE.zoubiri@exemple.fr"]))
        s.rollback()
        with pytest.raises(DuplicateAddress):
            book_ops.create_contact(s, book, ContactIn(name="Other", phones=["06 12 34 56 78"]))
        s.rollback()
        # another volunteer may know the same person
        other = open_book(s, MASTER, INDEX, volunteer(s, "Bob"))
        book_ops.create_contact(s, other, ContactIn(name="Hélène", emails=["helene.zoubiri@exemple.fr"]))
        s.commit()


def test_merge_adds_what_is_new_and_reports_unchanged(engine):
    with Session(engine) as s:
        book = open_book(s, MASTER, INDEX, volunteer(s))
        helene, _ = add_people(s, book)
        draft = ContactDraft(display_name="H. Zoubiri", emails=("helene.zoubiri@exemple.fr", "hz@travail.fr"),
                             interests=("transport",), commune="Lyon")
        assert book_ops.merge_draft(s, book, helene, draft)
        s.commit()
        data = book_ops.read_contact(book, helene)
        assert data["emails"] == ["helene.zoubiri@exemple.fr", "hz@travail.fr"]
        assert data["name"] == "Hélène Zoubiri"  # the volunteer's own name wins
        assert book_ops.tags_of(s, helene.id)[0] == ["education", "transport"]
        assert not book_ops.merge_draft(s, book, helene, draft)  # the same row again changes nothing
        assert book_ops.find_by_addresses(s, book, ["hz@travail.fr"], []) == helene.id


def test_search_filters_and_keyset_pages(engine):
    with Session(engine) as s:
        book = open_book(s, MASTER, INDEX, volunteer(s))
        add_people(s, book)
        for i in range(23):
            book_ops.create_contact(s, book, ContactIn(name=f"Contact {i:02d}", emails=[f"c{i}@exemple.fr"],
                                                       tags=["voisin"] if i % 2 else []))
        s.commit()
        names = lambda rows: [book_ops.read_contact(book, c)["name"] for c in rows]  # noqa: E731
        assert names(book_ops.page(s, book, PageQuery(q="hel"))[0]) == ["Hélène Zoubiri"]
        assert names(book_ops.page(s, book, PageQuery(q="zoub HELENE"))[0]) == ["Hélène Zoubiri"]
        assert names(book_ops.page(s, book, PageQuery(q="quintanilla"))[0]) == ["Marc Quintanilla"]
        assert book_ops.count_matching(s, book, PageQuery(tag="voisin")) == 11
        assert book_ops.count_matching(s, book, PageQuery(interest="education")) == 2
        assert book_ops.count_matching(s, book, PageQuery(consent=Consent.confirmed)) == 2
        assert book_ops.count_matching(s, book, PageQuery(channel="mastodon")) == 2
        assert book_ops.count_matching(s, book, PageQuery(channel="phone")) == 2
        seen, cursor = [], None
        while True:
            rows, cursor = book_ops.page(s, book, PageQuery(cursor=cursor, limit=10))
            seen += [c.id for c in rows]
            if cursor is None:
                break
        assert len(seen) == len(set(seen)) == 25


def test_consent_history_is_kept(engine):
    with Session(engine) as s:
        book = open_book(s, MASTER, INDEX, volunteer(s))
        helene, _ = add_people(s, book)
        book_ops.set_consent(s, book, helene.id, Consent.withdrawn, ConsentSource.unsubscribe)
        s.commit()
        described = book_ops.describe(s, book, helene)
        assert described["consent"]["email"]["state"] == "withdrawn"
        assert described["consent"]["email"]["source"] == "unsubscribe"


def test_erasing_a_volunteer_shreds_their_key(engine):
    with Session(engine) as s:
        vol = volunteer(s)
        book = open_book(s, MASTER, INDEX, vol)
        helene, _ = add_people(s, book)
        blob, wrapped = helene.sealed, s.get(Volunteer, vol.id).wrapped_key
        book_ops.erase_volunteer(s, vol.id)
        s.commit()
        assert s.exec(select(Contact).where(Contact.volunteer_id == vol.id)).all() == []
        assert s.get(Volunteer, vol.id).wrapped_key is None
        with pytest.raises(BookErased):
            open_book(s, MASTER, INDEX, vol)
        # a backup taken before still holds the blob, but no key opens it any more
        with pytest.raises(DecryptionError):
            book_ops.BookCipher(os.urandom(32), vol.id).open(helene.id, blob)
        assert wrapped is not None


def dump(db_url: str) -> bytes:
    url = make_url(db_url)
    if url.get_backend_name() == "sqlite":
        base = Path(url.database)
        return b"".join(p.read_bytes() for p in (base, Path(f"{base}-wal")) if p.exists())
    result = subprocess.run(
        ["pg_dump", "--no-owner", "-h", url.host or "127.0.0.1", "-p", str(url.port or 5432),
         "-U", url.username or "postgres", url.database],
        capture_output=True, check=True)
    return result.stdout


def test_a_database_dump_holds_no_contact_in_clear(engine, db_url, tmp_path):
    with Session(engine) as s:
        vol = volunteer(s)
        book = open_book(s, MASTER, INDEX, vol)
        add_people(s, book)
        job = ImportJob(volunteer_id=vol.id, status="running", bytes_total=1)
        s.add(job)
        s.commit()
        job_id, vol_id = job.id, vol.id
    # an import with a rejected row: its text is kept for the report, sealed
    upload = tmp_path / "contacts.csv"
    upload.write_text("Name,E-mail Address,Mobile Phone\nRaphaëlle Vuillemin,raphaelle.vuillemin@@exemple,\n"
                      "Théodore Kowalczyk,theodore.kowalczyk@exemple.fr,0611223344\n")
    run_import(engine, KEYS, vol_id, job_id, str(upload), "contacts.csv", None, None)
    with Session(engine) as s:
        assert s.get(ImportJob, job_id).status == "done"
        assert {r.outcome for r in s.exec(select(ImportRow).where(ImportRow.import_id == job_id))} == {
            "imported", "rejected"}
    engine.dispose()
    raw = dump(db_url)
    assert len(raw) > 10_000, "the dump is empty: nothing would be found anyway"
    needles = [n for person in PEOPLE for n in person] + [
        "Raphaëlle", "Vuillemin", "raphaelle.vuillemin", "Théodore", "Kowalczyk", "theodore.kowalczyk",
        "a dit oui au marché", "piaille", "0611223344", "+33611223344"]
    for needle in needles:
        for form in {needle, needle.lower(), needle.split("@")[0]}:
            assert form.encode() not in raw, f"{form!r} is in clear in the database"


def test_retention_purges_every_book_after_the_date_and_keeps_suppressions(engine):
    from datetime import date

    from services.contacts.retention import purge_if_due
    from services.contacts.store import Suppression

    with Session(engine) as s:
        for name in ("Alice", "Bob"):
            add_people(s, open_book(s, MASTER, INDEX, volunteer(s, name)))
        s.add(Suppression(blind="ab" * 32, reason="unsubscribe"))
        s.commit()
        assert purge_if_due(s, date(2027, 6, 30), date(2027, 6, 30)) == 0  # the last day still holds
        assert purge_if_due(s, None, date(2030, 1, 1)) == 0
        assert len(s.exec(select(Contact)).all()) == 4
        assert purge_if_due(s, date(2027, 6, 30), date(2027, 7, 1)) == 2
        assert s.exec(select(Contact)).all() == []
        assert s.get(Suppression, "ab" * 32) is not None
        assert purge_if_due(s, date(2027, 6, 30), date(2027, 7, 2)) == 0  # done once


def test_an_import_that_breaks_midway_says_where_and_resumes_when_sent_again(engine, tmp_path):
    with Session(engine, expire_on_commit=False) as s:
        vol = volunteer(s)

    def run(content: str) -> ImportJob:
        upload = tmp_path / "contacts.csv"
        upload.write_text(content, encoding="utf-8")
        with Session(engine, expire_on_commit=False) as s:
            job = ImportJob(volunteer_id=vol.id, status="running", bytes_total=len(content))
            s.add(job)
            s.commit()
        run_import(engine, KEYS, vol.id, job.id, str(upload), "contacts.csv", None, None)
        with Session(engine, expire_on_commit=False) as s:
            return s.get(ImportJob, job.id)

    header = "First Name,Last Name,E-mail Address\n"
    good = [f"Ana,N{i},ana{i}@exemple.fr\n" for i in range(1200)]
    broken = header + "".join(good[:1100]) + "Bad,Line," + "x" * 70_000 + "\n" + "".join(good[1100:])
    failed = run(broken)
    assert failed.status == "failed"
    assert failed.error.startswith("row 1101: ") and "send it again" in failed.error
    assert failed.imported == 1000  # the chunks before the broken one are kept, and said so
    with Session(engine) as s:
        assert len(s.exec(select(Contact)).all()) == 1000

    fixed = run(header + "".join(good))
    assert (fixed.status, fixed.imported, fixed.unchanged, fixed.rejected) == ("done", 200, 1000, 0)
    with Session(engine) as s:
        assert len(s.exec(select(Contact)).all()) == 1200
