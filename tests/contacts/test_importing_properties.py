"""Properties of the import layer over generated input: what must hold for
every string or file, not just for the fixtures a person thought of."""

from __future__ import annotations

import codecs
import csv
import io
import re

from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from services.contacts.importing import (
    ImportFormatError,
    csv_safe,
    normalize_email,
    normalize_interest,
    normalize_phone,
    parse_csv,
    parse_file,
    parse_vcards,
)
from services.contacts.importing import normalize as normalize_module
from services.contacts.importing.decode import iter_lines
from shared.text import control_character

FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SLOW = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

DOMAINS = ["example.org", "Example.ORG", "gmail.com", "orange.fr", "xn--bcher-kva.example", "bücher.example"]
local_parts = st.text(
    alphabet=st.sampled_from("abcXYZ019._+-!#$%&'*/=?^`{|}~éİK\u212a ") | st.characters(), min_size=0, max_size=70
)
addresses = st.builds(lambda local, domain: f"{local}@{domain}", local_parts, st.sampled_from(DOMAINS))


def email_or_none(s: str) -> str | None:
    try:
        return normalize_email(s)
    except ValueError:
        return None


# -- normalizers ----------------------------------------------------------------------


@FAST
@given(addresses | st.emails() | st.text(max_size=80))
def test_normalize_email_is_idempotent_and_raises_only_value_error(s):
    out = email_or_none(s)
    if out is not None:
        assert normalize_email(out) == out


@FAST
@given(addresses)
def test_normalize_email_fast_path_agrees_with_email_validator(s):
    normalize_module._accepted_domains.clear()
    cold = email_or_none(s)  # the domain is unknown: email-validator decides
    domain = s.rpartition("@")[2]
    email_or_none(f"warm@{domain}")  # now it may be known: the fast path may decide
    assert email_or_none(s) == cold


phones = st.from_regex(r"\A\+?[0-9 ().-]{0,22}\Z") | st.text(max_size=30)


@FAST
@given(phones, st.sampled_from(["FR", "US", "GB", "DE", "BE", "RE"]))
@example("000000", "DE")  # once read back as +490000: leading zeros E.164 cannot carry
def test_normalize_phone_is_idempotent_on_its_output(s, region):
    try:
        out = normalize_phone(s, region)
    except ValueError:
        return
    assert out.startswith("+") and out[1:].isdigit()
    assert normalize_phone(out, region) == out
    assert normalize_phone(out, "US") == out  # E.164 needs no region any more


@FAST
@given(st.text(max_size=100))
def test_normalize_interest_is_an_interest_name_or_none(s):
    out = normalize_interest(s)
    if out is not None:
        assert re.fullmatch(r"[a-z0-9][a-z0-9_:-]{0,63}", out)  # shared.events.InterestName
        assert normalize_interest(out) == out


# -- CSV ------------------------------------------------------------------------------

names = st.text(
    alphabet=st.sampled_from(list(',;"\'\t\n\r é É ñ ß ü Ø 日本 -*='))
    | st.characters(blacklist_categories=("Cc", "Cs")),
    min_size=1,
    max_size=30,
).map(str.strip).filter(bool)
emails = st.builds(
    lambda local, domain: f"{local}@{domain}",
    st.text(alphabet="abcdefghijklmnopqrstuvwxyzABC0123456789", min_size=1, max_size=15),
    st.sampled_from(DOMAINS[:4]),
)


@SLOW
@given(
    st.lists(st.tuples(names, emails), min_size=1, max_size=12),
    st.sampled_from([",", ";", "\t"]),
    st.sampled_from(["utf-8", "utf-8-sig", "utf-16"]),
)
def test_csv_written_by_the_csv_module_reads_back(rows, delimiter, encoding):
    text = io.StringIO()
    writer = csv.writer(text, delimiter=delimiter)
    writer.writerow(["name", "email"])
    writer.writerows(rows)
    out = list(parse_csv(io.BytesIO(text.getvalue().encode(encoding))))
    # a name with a line break or a tab inside cannot be a To: display name: that row alone is refused
    refused = [control_character(name) is not None for name, _ in rows]
    assert [o.error is not None and o.error.startswith("name: ") for o in out] == refused
    assert [o.draft.display_name for o in out if o.draft] == [n for (n, _), r in zip(rows, refused, strict=True) if not r]
    assert [o.draft.emails for o in out if o.draft] == [(normalize_email(e),) for (_, e), r in zip(rows, refused, strict=True)
                                                         if not r]


@FAST
@given(st.text(max_size=200), st.integers(min_value=1, max_value=9), st.sampled_from(["utf-8", "utf-16"]))
def test_lines_rejoin_to_the_text_whatever_the_chunk_size(text, chunk_size, encoding):
    assume("\x00" not in text)
    data = codecs.BOM_UTF16_LE + text.encode("utf-16-le") if encoding == "utf-16" else text.encode()
    lines = list(iter_lines(io.BytesIO(data), chunk_size=chunk_size))
    assert "".join(lines) == text
    for line in lines:  # a line break only at the end of each line
        body = line[:-2] if line.endswith("\r\n") else line[:-1] if line.endswith(("\r", "\n")) else line
        assert "\r" not in body and "\n" not in body


# -- export ---------------------------------------------------------------------------


@FAST
@given(st.text(max_size=50))
def test_csv_safe_never_starts_a_formula(value):
    out = csv_safe(value)
    assert not out.startswith(("=", "+", "-", "@", "\t", "\r"))
    assert out in (value, "'" + value)


# -- robustness -----------------------------------------------------------------------

FRAGMENTS = [
    b"BEGIN:VCARD\r\n", b"END:VCARD\r\n", b"VERSION:2.1\r\n", b"FN:Ana\r\n", b"EMAIL:a@example.org\r\n",
    b"TEL:0612345678\r\n", b"N:;;;;\r\n", b"item1.EMAIL;type=pref:x@y.fr\r\n", b" folded\r\n", b"=\r\n",
    b"FN;ENCODING=QUOTED-PRINTABLE;CHARSET=nope:=C3=A9=\r\n", b"PHOTO;ENCODING=BASE64:AAAA\r\n", b"AAAA\r\n",
    b"\r\n", b"ADR:;;;Lyon\r\n", b"X-SOCIALPROFILE;type=mastodon:@a@b.c\r\n", b"URL:https://bsky.app/profile/\r\n",
    b"CATEGORIES:a\\,b,\\\r\n", b"name,email,phone\r\n", b'"', b",", b";", b"\t", b"\n", b"\r", b"\xff\xfe",
    b"\xef\xbb\xbf", b"\xc3", b"\xe9", b"\x81", b"E-mail 1 - Value", b"* myContacts ::: ", b":::",
]
files = st.binary(max_size=3000) | st.lists(
    st.sampled_from(FRAGMENTS) | st.binary(max_size=20), max_size=60
).map(b"".join)


def consume(outcomes) -> None:
    try:
        for outcome in outcomes:
            assert (outcome.draft is None) != (outcome.error is None)
            assert outcome.row >= 1
    except ImportFormatError:
        pass


@SLOW
@given(files)
def test_parse_csv_raises_only_import_format_errors(data):
    consume(parse_csv(io.BytesIO(data)))


@SLOW
@given(files)
def test_parse_vcards_raises_only_import_format_errors(data):
    consume(parse_vcards(io.BytesIO(data)))


@SLOW
@given(files, st.sampled_from([None, "a.csv", "a.vcf", "a.xlsx", "a"]))
def test_parse_file_raises_only_import_format_errors(data, filename):
    consume(parse_file(io.BytesIO(data), filename))
