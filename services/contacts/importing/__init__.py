"""Importing contacts from the files volunteers export (Google and Outlook
CSV, any spreadsheet's CSV, vCard), and exporting them as safe CSV. Pure
functions over streams: no database, no network."""

from services.contacts.importing.csv_formats import parse_csv
from services.contacts.importing.detect import parse_file
from services.contacts.importing.export import csv_safe, write_contacts_csv
from services.contacts.importing.model import (
    ColumnMapping,
    ContactDraft,
    ImportFormatError,
    RowOutcome,
)
from services.contacts.importing.normalize import (
    normalize_email,
    normalize_interest,
    normalize_phone,
)
from services.contacts.importing.vcard import parse_vcards

__all__ = [
    "ColumnMapping",
    "ContactDraft",
    "ImportFormatError",
    "RowOutcome",
    "csv_safe",
    "normalize_email",
    "normalize_interest",
    "normalize_phone",
    "parse_csv",
    "parse_file",
    "parse_vcards",
    "write_contacts_csv",
]
