"""CSV exports (Google Contacts, Outlook in English or French, or any
spreadsheet) read row by row into outcomes. Each known export is only a
different choice of columns, so all of them become a ``_Layout``."""

from __future__ import annotations

import csv
import re
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import chain

from services.contacts.importing.decode import Readable, iter_lines
from services.contacts.importing.model import ColumnMapping, ImportFormatError, RawContact, RowOutcome
from services.contacts.importing.normalize import contact_outcome


@dataclass(frozen=True)
class _Layout:
    """Column indexes per kind of value; where several columns may hold a
    single value (commune: home or business city), the first non-empty wins."""

    display_name: tuple[int, ...] = ()
    name_parts: tuple[int, ...] = ()
    emails: tuple[int, ...] = ()
    phones: tuple[int, ...] = ()
    interests: tuple[int, ...] = ()
    urls: tuple[int, ...] = ()
    handles: tuple[tuple[str, int], ...] = ()
    commune: tuple[int, ...] = ()
    region: tuple[int, ...] = ()
    locale: tuple[int, ...] = ()
    notes: tuple[int, ...] = ()


# Google writes several values in one cell joined by ' ::: '; spreadsheets
# users type commas or semicolons.
_SPLIT_VALUES = re.compile(r":::|[;,]")
_SPLIT_INTERESTS = re.compile(r":::|[;,|]")
_SPLIT_URLS = re.compile(r":::")  # ',' and ';' may be part of a URL


def parse_csv(
    stream: Readable,
    *,
    mapping: ColumnMapping | None = None,
    delimiter: str | None = None,
    default_region: str = "FR",
) -> Iterator[RowOutcome]:
    if delimiter is not None and (len(delimiter) != 1 or delimiter in '"\r\n'):
        raise ImportFormatError(f"the delimiter must be one character other than a quote, not {delimiter!r}")
    lines = iter_lines(stream)
    first = next((line for line in lines if line.strip()), None)
    if first is None:
        raise ImportFormatError("the file is empty: no header line")
    tap = _Tap(chain([first], lines))
    reader = csv.reader(tap, delimiter=delimiter or sniff_delimiter(first))
    header = [h.strip() for h in _next_record(reader, 0)]
    tap.take()
    layout = _layout(header, mapping)
    row = 0
    while True:
        try:
            cells = _next_record(reader, row + 1)
        except StopIteration:
            return
        raw = tap.take()
        if not any(c.strip() for c in cells):
            continue  # blank rows (often trailing) carry no contact
        row += 1
        yield contact_outcome(row, raw, _extract(layout, cells), default_region)


def sniff_delimiter(header_line: str) -> str:
    """The most frequent of ',', ';' and tab outside quotes: French Excel
    writes ';' because ',' is its decimal separator."""
    counts = {",": 0, ";": 0, "\t": 0}
    quoted = False
    for ch in header_line:
        if ch == '"':
            quoted = not quoted
        elif not quoted and ch in counts:
            counts[ch] += 1
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] else ","


class _Tap:
    """Feeds lines to csv.reader while keeping them, so each record's
    original text (possibly several lines) can be handed back as ``raw``."""

    def __init__(self, lines: Iterator[str]) -> None:
        self._lines = lines
        self._kept: list[str] = []

    def __iter__(self) -> _Tap:
        return self

    def __next__(self) -> str:
        line = next(self._lines)
        self._kept.append(line)
        return line

    def take(self) -> str:
        text = "".join(self._kept)
        self._kept.clear()
        return re.sub(r"(\r\n|\r|\n)\Z", "", text)


def _next_record(reader, row: int) -> list[str]:
    try:
        return next(reader)
    except csv.Error as e:
        where = "record" if row else "header"
        raise ImportFormatError(f"unreadable CSV {where} ({e})", row=row or None) from None
    except ImportFormatError as e:
        raise e.at_row(row) if row else e from None


# -- choosing the layout --------------------------------------------------------------


def _key(name: str) -> str:
    """Header names compared regardless of case, accents and punctuation."""
    folded = unicodedata.normalize("NFKD", name.casefold())
    folded = "".join(c for c in folded if not unicodedata.combining(c))
    return " ".join(re.sub(r"[^a-z0-9]+", " ", folded).split())


def _layout(header: list[str], mapping: ColumnMapping | None) -> _Layout:
    index: dict[str, int] = {}
    for i, name in enumerate(header):
        if not name:
            continue  # trailing delimiters make nameless columns; they hold nothing
        k = _key(name) or name
        if k in index:
            raise ImportFormatError(
                f"the header has the column {name!r} twice (columns {index[k] + 1} and {i + 1})",
                field=name,
            )
        index[k] = i
    if mapping is not None:
        layout = _from_mapping(mapping, index)
    else:
        layout = _google(index) or _outlook(index) or _guess(index)
    if not layout.emails and not layout.phones:
        found = ", ".join(repr(h) for h in header if h) or "none"
        raise ImportFormatError(
            "no email or phone column: name one 'email' (or 'e-mail', 'courriel') or "
            f"'phone' (or 'téléphone', 'mobile'), or pass a column mapping; columns found: {found}",
            field="email",
        )
    return layout


def _cols(index: dict[str, int], *names: str) -> tuple[int, ...]:
    return tuple(index[_key(n)] for n in names if _key(n) in index)


def _numbered(index: dict[str, int], pattern: str) -> tuple[int, ...]:
    found = [(int(m.group(1)), i) for k, i in index.items() if (m := re.fullmatch(pattern, k))]
    return tuple(i for _, i in sorted(found))


def _google(index: dict[str, int]) -> _Layout | None:
    emails = _numbered(index, r"e mail (\d+) value")
    phones = _numbered(index, r"phone (\d+) value")
    if not emails and not phones:
        return None
    # Before 2023: Name, Given Name, Additional Name, Family Name, Group Membership;
    # since: First Name, Middle Name, Last Name, Labels.
    return _Layout(
        display_name=_cols(index, "Name"),
        name_parts=_cols(index, "Given Name", "First Name", "Additional Name", "Middle Name",
                         "Family Name", "Last Name"),
        emails=emails,
        phones=phones,
        interests=_cols(index, "Group Membership", "Labels"),
        urls=_numbered(index, r"website (\d+) value"),
        commune=_cols(index, "Address 1 - City"),
        region=_cols(index, "Address 1 - Region"),
        locale=_cols(index, "Language"),
        notes=_cols(index, "Notes"),
    )


def _outlook(index: dict[str, int]) -> _Layout | None:
    if _key("E-mail Address") in index:
        return _Layout(
            name_parts=_cols(index, "First Name", "Middle Name", "Last Name"),
            emails=_cols(index, "E-mail Address", "E-mail 2 Address", "E-mail 3 Address"),
            phones=_cols(index, "Mobile Phone", "Primary Phone", "Home Phone", "Home Phone 2",
                         "Business Phone", "Business Phone 2", "Other Phone"),
            interests=_cols(index, "Categories"),
            urls=_cols(index, "Web Page", "Personal Web Page"),
            commune=_cols(index, "Home City", "Business City", "Other City"),
            region=_cols(index, "Home State", "Business State", "Other State"),
            locale=_cols(index, "Language"),
            notes=_cols(index, "Notes"),
        )
    if _key("Adresse de messagerie") in index:
        return _Layout(
            name_parts=_cols(index, "Prénom", "Deuxième prénom", "Nom"),
            emails=_cols(index, "Adresse de messagerie", "Adresse de messagerie 2",
                         "Adresse de messagerie 3"),
            phones=_cols(index, "Téléphone mobile", "Téléphone principal", "Téléphone (domicile)",
                         "Téléphone 2 (domicile)", "Téléphone (bureau)", "Téléphone 2 (bureau)",
                         "Autre téléphone"),
            interests=_cols(index, "Catégories"),
            urls=_cols(index, "Page Web", "Page Web personnelle"),
            commune=_cols(index, "Ville (domicile)", "Ville (bureau)", "Ville (autre)"),
            region=_cols(index, "Dép/Région (domicile)", "Dép/Région (bureau)", "Dép/Région (autre)"),
            locale=_cols(index, "Langue"),
            notes=_cols(index, "Notes"),
        )
    return None


_GUESSES = {
    "display_name": ("name", "nom complet", "full name", "display name", "nom affiche", "contact",
                     "prenom nom", "nom prenom", "prenom et nom", "nom et prenom"),
    "first_name": ("first name", "firstname", "prenom", "given name"),
    "last_name": ("last name", "lastname", "nom de famille", "family name", "surname"),
    "emails": ("email", "e mail", "mail", "courriel", "email address", "e mail address",
               "adresse email", "adresse e mail", "adresse mail", "adresse electronique",
               "adresse de messagerie"),
    "phones": ("phone", "telephone", "tel", "mobile", "portable", "cell", "gsm", "phone number",
               "mobile phone", "telephone mobile", "numero de telephone", "numero"),
    "interests": ("interests", "interest", "interets", "centres d interet", "centre d interet",
                  "centres d interets", "tags", "tag", "labels", "categories", "groupes", "groups",
                  "thematiques", "themes"),
    "commune": ("commune", "ville", "city", "town", "localite", "locality"),
    "region": ("region", "state", "province"),
    "locale": ("locale", "langue", "language", "lang"),
    "notes": ("notes", "note", "commentaire", "commentaires", "comments", "comment", "remarques"),
}


def _guess(index: dict[str, int]) -> _Layout:
    def any_of(kind: str, numbered: bool = False) -> tuple[int, ...]:
        names = _GUESSES[kind]
        return tuple(
            i for k, i in sorted(index.items(), key=lambda kv: kv[1])
            if k in names or (numbered and re.sub(r" \d+$", "", k) in names)
        )

    first, last = any_of("first_name"), any_of("last_name")
    display = any_of("display_name")
    nom = _cols(index, "nom")
    # 'Nom' beside 'Prénom' is the family name; alone, it is the whole name.
    if first and not last:
        last = nom
    elif not display:
        display = nom
    return _Layout(
        display_name=display,
        name_parts=first + last,
        emails=any_of("emails", numbered=True),
        phones=any_of("phones", numbered=True),
        interests=any_of("interests"),
        handles=tuple(("mastodon", i) for i in _cols(index, "mastodon", "fediverse"))
        + tuple(("bluesky", i) for i in _cols(index, "bluesky", "bsky"))
        + tuple(("x", i) for i in _cols(index, "x", "twitter")),
        commune=any_of("commune"),
        region=any_of("region"),
        locale=any_of("locale"),
        notes=any_of("notes"),
    )


def _from_mapping(m: ColumnMapping, index: dict[str, int]) -> _Layout:
    def cols(*names: str | None) -> tuple[int, ...]:
        found = []
        for name in filter(None, names):
            if _key(name) not in index:
                raise ImportFormatError(
                    f"the column {name!r} named in the mapping is not in the file's header",
                    field=name,
                )
            found.append(index[_key(name)])
        return tuple(found)

    return _Layout(
        display_name=cols(m.display_name),
        name_parts=cols(m.first_name, m.last_name),
        emails=cols(*m.emails),
        phones=cols(*m.phones),
        interests=cols(*m.interests),
        handles=tuple(("mastodon", i) for i in cols(m.mastodon))
        + tuple(("bluesky", i) for i in cols(m.bluesky)),
        commune=cols(m.commune),
        region=cols(m.region),
        locale=cols(m.locale),
        notes=cols(m.notes),
    )


# -- one row --------------------------------------------------------------------------


def _extract(layout: _Layout, cells: list[str]) -> RawContact:
    n = len(cells)  # short rows: missing trailing cells are empty

    def first(cols: tuple[int, ...]) -> str:
        for i in cols:
            if i < n and cells[i].strip():
                return cells[i]
        return ""

    def split(cols: tuple[int, ...], pattern: re.Pattern) -> list[str]:
        parts: list[str] = []
        for i in cols:
            if i < n and cells[i]:
                parts.extend(pattern.split(cells[i]))
        return parts

    return RawContact(
        display_name=first(layout.display_name),
        name_parts=[cells[i] for i in layout.name_parts if i < n],
        emails=split(layout.emails, _SPLIT_VALUES),
        phones=split(layout.phones, _SPLIT_VALUES),
        interests=split(layout.interests, _SPLIT_INTERESTS),
        urls=split(layout.urls, _SPLIT_URLS),
        handles=[(net, cells[i]) for net, i in layout.handles if i < n],
        commune=first(layout.commune),
        region=first(layout.region),
        locale=first(layout.locale),
        notes=first(layout.notes),
    )
