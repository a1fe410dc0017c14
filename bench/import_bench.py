"""make bench-import: rows/s of a contacts import, next to a raw baseline.

Maillage's import of N generated Google-Contacts rows (parse, normalize,
validate, dedupe by keyed hash, seal with AES-GCM, search tokens, consent
records, row-by-row report, chunked commits) against the raw floor on the
same file and the same database kind in the same run: csv.reader plus a
bulk executemany of the same rows into a plain table, committed per chunk
of the same size. Also prints how much the process's peak resident memory grew during the
import, to show it does not grow with the file."""

from __future__ import annotations

import argparse
import csv
import resource
import sqlite3
import tempfile
import time
import uuid
from pathlib import Path

import psycopg
from sqlmodel import Session

from services.contacts import book as book_ops
from services.contacts.book import PageQuery, open_book
from services.contacts.crypto import MasterKey
from services.contacts.domain import Consent
from services.contacts.importer import CHUNK
from services.contacts.usecases._unit import Keys
from services.contacts.usecases.import_file import run_import
from services.contacts.store import ImportJob, Volunteer, create_schema
from shared.blind_index import BlindIndex
from shared.db import make_engine
from shared.links import LinkSigner

FIRST = ["Hélène", "Marc", "Inès", "Louis", "Chloé", "Hugo", "Jeanne", "Karim", "Léa", "Tom"]
LAST = ["Durand", "Petit", "Moreau", "Laurent", "Bernard", "Roux", "Diallo", "Nguyen", "Martin", "Garcia"]
LABELS = ["education", "transport", "seniors", "health", "housing"]


def generate(path: Path, rows: int) -> None:
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["First Name", "Last Name", "E-mail 1 - Value", "Phone 1 - Value", "Labels"])
        for i in range(rows):
            w.writerow([FIRST[i % 10], f"{LAST[(i // 10) % 10]}-{i}", f"contact{i}@exemple.fr",
                        f"+336{i:08d}", f"* myContacts ::: {LABELS[i % 5]}"])


def maillage_import(db_url: str, path: Path) -> tuple[float, int, int]:
    engine = make_engine(db_url)
    create_schema(engine)
    with Session(engine, expire_on_commit=False) as s:
        vol = Volunteer(display_name="Bench", email=f"bench-{uuid.uuid4().hex[:8]}@example.org")
        s.add(vol)
        s.commit()
        job = ImportJob(volunteer_id=vol.id, status="running", bytes_total=path.stat().st_size)
        s.add(job)
        s.commit()
    copy = path.with_suffix(".copy.csv")
    copy.write_bytes(path.read_bytes())  # run_import removes its upload when done
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    keys = Keys(MasterKey({1: b"m" * 32}), BlindIndex(b"i" * 32), LinkSigner(b"l" * 32))
    run_import(engine, keys, vol.id, job.id, str(copy), "contacts.csv", None, None)
    seconds = time.perf_counter() - started
    peak = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before) * 1024
    with Session(engine) as s:
        done, volunteer = s.get(ImportJob, job.id), s.get(Volunteer, vol.id)
        assert done is not None and volunteer is not None
        assert done.status == "done", done.error
        imported = done.imported
        book = open_book(s, keys.master, keys.index, volunteer)
        page_timings(s, book)
    engine.dispose()
    return seconds, imported, peak


def page_timings(session: Session, book) -> None:
    """How long a page of 50 takes in the imported book, wherever it is."""
    def timed(label: str, query: PageQuery) -> str | None:
        started = time.perf_counter()
        rows, cursor = book_ops.page(session, book, query)
        for contact in rows:
            book_ops.read_contact(book, contact)
        print(f"  page of {len(rows):>2} {label:<28} {1000 * (time.perf_counter() - started):7.1f} ms")
        return cursor

    cursor = timed("first", PageQuery())
    for _ in range(5):  # walk a little, then jump deep
        cursor = timed("next (keyset cursor)", PageQuery(cursor=cursor))
    timed("search 'hél dur'", PageQuery(q="hél dur"))
    timed("interest=transport", PageQuery(interest="transport"))
    timed("consent=unknown", PageQuery(consent=Consent.unknown))


def raw_baseline(db_url: str, path: Path) -> tuple[float, int]:
    """csv.reader + executemany of the same rows, chunk commits."""
    conn: sqlite3.Connection | psycopg.Connection
    if db_url.startswith("sqlite"):
        conn = sqlite3.connect(db_url.removeprefix("sqlite:///"))
        conn.execute("PRAGMA journal_mode=WAL")
        ph = "?"
    else:
        conn = psycopg.connect(db_url.replace("postgresql+psycopg://", "postgresql://"))
        ph = "%s"
    conn.execute("DROP TABLE IF EXISTS raw_contact")
    conn.execute("CREATE TABLE raw_contact (first TEXT, last TEXT, email TEXT, phone TEXT, labels TEXT)")
    conn.commit()
    started = time.perf_counter()
    count = 0
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        next(reader)
        while True:
            chunk = [row for _, row in zip(range(CHUNK), reader, strict=False)]  # a chunk: the reader runs longer
            if not chunk:
                break
            conn.cursor().executemany(f"INSERT INTO raw_contact VALUES ({', '.join([ph] * 5)})", chunk)
            conn.commit()
            count += len(chunk)
    seconds = time.perf_counter() - started
    conn.close()
    return seconds, count


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.import_bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--database-url", help="default: a fresh SQLite file; or a PostgreSQL URL")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        path = tmp / "contacts.csv"
        generate(path, args.rows)
        maillage_db = args.database_url or f"sqlite:///{tmp / 'maillage.db'}"
        raw_db = args.database_url or f"sqlite:///{tmp / 'raw.db'}"
        print(f"{args.rows} rows, {path.stat().st_size / 1e6:.1f} MB, database {maillage_db.split(':')[0]}")
        raw_s, raw_n = raw_baseline(raw_db, path)
        print("reading the imported book:")
        m_s, m_n, peak = maillage_import(maillage_db, path)
    raw_rate, m_rate = raw_n / raw_s, m_n / m_s
    print(f"raw csv + bulk insert : {raw_rate:>10,.0f} rows/s ({raw_s:.1f} s)")
    print(f"maillage import       : {m_rate:>10,.0f} rows/s ({m_s:.1f} s), peak memory growth {peak / 1e6:.1f} MB")
    print(f"ratio maillage / raw  : {m_rate / raw_rate:.3f}")


if __name__ == "__main__":
    main()
