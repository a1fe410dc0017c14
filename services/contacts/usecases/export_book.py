"""The volunteer takes their whole book away, as JSON or CSV."""

from __future__ import annotations

import io
import json
from typing import Literal

from sqlmodel import Session

from services.contacts import book as book_ops
from services.contacts.book import Book
from services.contacts.importing.export import write_contacts_csv
from services.contacts.store import Volunteer
from services.contacts.usecases._unit import Contacts, in_book

CSV_COLUMNS = ("name", "emails", "phones", "handles", "locale", "commune", "region", "interests", "tags",
               "notes", "email_consent")


async def export_book(ctx: Contacts, vol: Volunteer, format: Literal["json", "csv"]) -> str:
    def dump(session: Session, book: Book) -> str:
        rows = book_ops.export_rows(session, book)
        out = io.StringIO()
        if format == "json":
            json.dump(list(rows), out, ensure_ascii=False, indent=1)
        else:
            write_contacts_csv(({
                "name": r["name"], "emails": " ".join(r["emails"]), "phones": " ".join(r["phones"]),
                "handles": " ".join(f"{k}:{v}" for k, v in r["handles"].items()),
                "locale": r["locale"] or "", "commune": r["commune"] or "", "region": r["region"] or "",
                "interests": " ".join(r["interests"]), "tags": " ".join(r["tags"]), "notes": r["notes"] or "",
                "email_consent": r["consent"].get("email", {}).get("state", ""),
            } for r in rows), out, CSV_COLUMNS)
        return out.getvalue()

    return await in_book(ctx, vol, dump)
