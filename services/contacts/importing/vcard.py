"""vCard 2.1, 3.0 and 4.0 files (Android, Apple Contacts, Thunderbird,
Google) read card by card into outcomes."""

from __future__ import annotations

import quopri
import re
from collections.abc import Iterator

from services.contacts.importing.decode import Readable, iter_lines
from services.contacts.importing.model import ImportFormatError, RawContact, RowOutcome
from services.contacts.importing.normalize import contact_outcome

# Apple may write a whole photo on one unfolded line; a larger limit than
# CSV's keeps such cards readable while memory stays bounded.
MAX_LINE_LENGTH = 1024 * 1024
MAX_CARD_LENGTH = 4 * 1024 * 1024

_BINARY_PROPERTIES = {"PHOTO", "LOGO", "SOUND", "KEY"}
_BASE64_LINE = re.compile(r"^[A-Za-z0-9+/=]+$")
_BINARY_PARAM = re.compile(r";\s*(ENCODING\s*=\s*(B|BASE64)|BASE64)\s*(;|$)", re.IGNORECASE)
_QP_PARAM = re.compile(r";\s*(ENCODING\s*=\s*)?QUOTED-PRINTABLE\s*(;|$)", re.IGNORECASE)
_ESCAPES = {"n": "\n", "N": "\n", "\\": "\\", ",": ",", ";": ";", ":": ":"}
_SOCIAL = {"mastodon": "mastodon", "bluesky": "bluesky", "bsky": "bluesky", "twitter": "x", "x": "x"}


def parse_vcards(stream: Readable, *, default_region: str = "FR") -> Iterator[RowOutcome]:
    number, card, kept, size = 0, None, [], 0
    try:
        for logical, raw in _logical_lines(iter_lines(stream, max_line_length=MAX_LINE_LENGTH)):
            name, params, value = _split_property(logical)
            if name == "BEGIN" and value.strip().upper() == "VCARD":
                if card is not None:
                    yield _unterminated(number, kept)
                number, card, kept, size = number + 1, RawContact(), [raw], len(raw)
                continue
            if card is None:
                continue  # text around the cards (e.g. a mail's signature) is not ours
            kept.append(raw)
            size += len(raw)
            if size > MAX_CARD_LENGTH:
                raise ImportFormatError(
                    f"the card is longer than {MAX_CARD_LENGTH} characters", row=number
                )
            if name == "END" and value.strip().upper() == "VCARD":
                yield contact_outcome(number, _raw_text(kept), card, default_region)
                card = None
            elif name:
                _apply(card, name, params, value)
    except ImportFormatError as e:
        raise e.at_row(number) if e.row is None and card is not None else e from None
    if card is not None:
        yield _unterminated(number, kept)
    if number == 0:
        raise ImportFormatError("no vCard in the file: it has no BEGIN:VCARD line")


def _unterminated(number: int, kept: list[str]) -> RowOutcome:
    return RowOutcome(row=number, draft=None, error="card: no END:VCARD line", raw=_raw_text(kept))


def _raw_text(kept: list[str]) -> str:
    return re.sub(r"(\r\n|\r|\n)\Z", "", "".join(kept))


# -- lines ----------------------------------------------------------------------------


def _logical_lines(lines: Iterator[str]) -> Iterator[tuple[str, str]]:
    """(unfolded property line, its original text). Binary values (photos)
    are skipped without being kept: they can be megabytes and an import has
    no use for them."""
    current: str | None = None
    kept: list[str] = []
    qp = skipping = False
    for line in lines:
        text = line.rstrip("\r\n")
        if skipping:
            # 2.1 base64 goes on over unindented lines until an empty one
            if text == "":
                skipping = False
                continue
            if text[:1] in (" ", "\t") or _BASE64_LINE.match(text):
                continue
            skipping = False
        elif current is not None:
            if qp and current.endswith("="):
                current = current[:-1] + text  # quoted-printable soft line break
            elif text[:1] in (" ", "\t"):
                current += text[1:]
            else:
                yield current, "".join(kept)
                current = None
            if current is not None:
                kept.append(line)
                if len(current) > MAX_LINE_LENGTH:
                    raise ImportFormatError(f"a property is longer than {MAX_LINE_LENGTH} characters")
                continue
        if not text.strip():
            continue
        head = text.split(":", 1)[0]
        if _property_name(head) in _BINARY_PROPERTIES or _BINARY_PARAM.search(head):
            skipping = True
            continue
        current, kept, qp = text, [line], bool(_QP_PARAM.search(head))
    if current is not None:
        yield current, "".join(kept)


def _property_name(head: str) -> str:
    """'item1.EMAIL;type=pref' -> 'EMAIL': Apple groups properties with a
    prefix that means nothing to us."""
    return head.split(";", 1)[0].strip().rpartition(".")[2].upper()


def _split_property(line: str) -> tuple[str, dict[str, list[str]], str]:
    """(NAME, {PARAM: [values]}, value) with the value decoded but not
    unescaped; ('', {}, '') for a line that is no property."""
    colon, quoted = -1, False
    for i, ch in enumerate(line):
        if ch == '"':
            quoted = not quoted
        elif ch == ":" and not quoted:
            colon = i
            break
    if colon < 0:
        return "", {}, ""
    head, value = line[:colon], line[colon + 1 :]
    params: dict[str, list[str]] = {}
    for part in _split_outside_quotes(head, ";")[1:]:
        key, eq, val = part.partition("=")
        if not eq:  # vCard 2.1 bare parameters: 'HOME', 'QUOTED-PRINTABLE'
            key, val = ("ENCODING" if key.upper() in ("QUOTED-PRINTABLE", "BASE64") else "TYPE"), key
        values = [v.strip().strip('"') for v in _split_outside_quotes(val, ",")]
        params.setdefault(key.strip().upper(), []).extend(values)
    if any(v.upper() == "QUOTED-PRINTABLE" for v in params.get("ENCODING", [])):
        value = _decode_qp(value, (params.get("CHARSET") or ["utf-8"])[0])
    return _property_name(head), params, value


def _split_outside_quotes(text: str, sep: str) -> list[str]:
    parts, start, quoted = [], 0, False
    for i, ch in enumerate(text):
        if ch == '"':
            quoted = not quoted
        elif ch == sep and not quoted:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return parts


def _decode_qp(value: str, charset: str) -> str:
    data = quopri.decodestring(value.encode("utf-8"))
    for encoding in (charset, "utf-8", "cp1252"):
        try:
            return data.decode(encoding)
        except (LookupError, UnicodeDecodeError):
            continue
    return data.decode("latin-1")


def _components(value: str, sep: str | None) -> list[str]:
    """Split on unescaped ``sep`` and resolve backslash escapes in one pass,
    so an escaped separator stays in its component."""
    parts, buf, chars = [], [], iter(value)
    for ch in chars:
        if ch == "\\":
            nxt = next(chars, "")
            buf.append(_ESCAPES.get(nxt, "\\" + nxt))
        elif sep is not None and ch == sep:
            parts.append("".join(buf))
            buf = []
        else:
            buf.append(ch)
    parts.append("".join(buf))
    return parts


def _text(value: str) -> str:
    return _components(value, None)[0]


# -- properties -----------------------------------------------------------------------


def _apply(card: RawContact, name: str, params: dict[str, list[str]], value: str) -> None:
    if name == "FN":
        card.display_name = card.display_name or _text(value)
    elif name == "N":
        family, given, additional = (_components(value, ";") + ["", "", ""])[:3]
        if not card.name_parts:
            card.name_parts = [given, additional, family]
    elif name == "EMAIL":
        card.emails.append(_text(value))
    elif name == "TEL":
        card.phones.append(re.sub(r"^tel:", "", _text(value).strip(), flags=re.IGNORECASE))
    elif name == "CATEGORIES":
        card.interests.extend(_components(value, ","))
    elif name == "NOTE":
        card.notes = "\n".join(filter(None, [card.notes, _text(value)]))
    elif name == "ADR":
        parts = _components(value, ";") + [""] * 7
        card.commune = card.commune or parts[3]
        card.region = card.region or parts[4]
    elif name == "LANG":
        card.locale = card.locale or _text(value)
    elif name in ("URL", "X-SOCIALPROFILE", "IMPP") or name.startswith("X-"):
        _social(card, name, params, _text(value).strip())


def _social(card: RawContact, name: str, params: dict[str, list[str]], value: str) -> None:
    """Mastodon and Bluesky appear as plain URLs, as Apple's
    X-SOCIALPROFILE;type=mastodon;x-user=..., as IMPP;X-SERVICE-TYPE=...,
    or as X-MASTODON-like properties."""
    kinds = [v.lower() for v in params.get("TYPE", []) + params.get("X-SERVICE-TYPE", [])]
    if name.startswith("X-") and name not in ("X-SOCIALPROFILE",):
        kinds.append(name[2:].lower())
    network = next((_SOCIAL[k] for k in kinds if k in _SOCIAL), None)
    if value.lower().startswith(("http://", "https://")):
        card.urls.append(value)
    elif network:
        user = (params.get("X-USER") or [""])[0] or re.sub(r"^[a-z][a-z0-9+.-]*:(?!//)", "", value)
        card.handles.append((network, user))
