"""What an import produces: one outcome per row or card, each either a draft
ready for the contact book or a reason a volunteer can act on."""

from __future__ import annotations

from dataclasses import dataclass, field

from pydantic import ConfigDict, with_config


@dataclass(frozen=True)
class ContactDraft:
    display_name: str
    emails: tuple[str, ...] = ()
    phones: tuple[str, ...] = ()
    handles: tuple[tuple[str, str], ...] = ()
    locale: str | None = None
    commune: str | None = None
    region: str | None = None
    interests: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()  # the volunteer's own words (categories outside the taxonomy)
    notes: str | None = None


@dataclass(frozen=True)
class RowOutcome:
    row: int
    draft: ContactDraft | None
    error: str | None
    raw: str

    @property
    def accepted(self) -> bool:
        return self.draft is not None


class ImportFormatError(ValueError):
    """The file as a whole cannot be read: no row-level outcome makes sense.
    ``line`` is the physical line in the file, which may differ from ``row``
    (a data row or card number) when quoted fields span several lines."""

    def __init__(
        self, message: str, *, field: str | None = None, row: int | None = None, line: int | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.row = row
        self.line = line

    def at_row(self, row: int) -> ImportFormatError:
        # The row goes in its attribute only: callers prefix 'row N: ' themselves.
        return ImportFormatError(self.message, field=self.field, row=row, line=self.line)


@dataclass(frozen=True)
@with_config(ConfigDict(extra="forbid"))  # a misspelt field must not be dropped silently
class ColumnMapping:
    """For a generic CSV: the header names that hold each kind of value."""

    display_name: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    emails: tuple[str, ...] = ()
    phones: tuple[str, ...] = ()
    interests: tuple[str, ...] = ()
    commune: str | None = None
    region: str | None = None
    locale: str | None = None
    notes: str | None = None
    mastodon: str | None = None
    bluesky: str | None = None


@dataclass
class RawContact:
    """A row's or card's values as found in the file, before any validation:
    the parsers fill it, ``normalize.contact_outcome`` judges it."""

    display_name: str = ""
    name_parts: list[str] = field(default_factory=list)
    emails: list[str] = field(default_factory=list)
    phones: list[str] = field(default_factory=list)
    handles: list[tuple[str, str]] = field(default_factory=list)
    urls: list[str] = field(default_factory=list)
    interests: list[str] = field(default_factory=list)
    locale: str = ""
    commune: str = ""
    region: str = ""
    notes: str = ""
