"""Importing contacts from real-looking exports: each test feeds the bytes a
volunteer's software writes and checks every outcome exactly, so a change
in what a row becomes (or why it is refused) is seen here first."""

from __future__ import annotations

import csv
import io
import tracemalloc

import pytest

from services.contacts.importing import (
    ColumnMapping,
    ContactDraft,
    ImportFormatError,
    RowOutcome,
    csv_safe,
    normalize_email,
    normalize_interest,
    normalize_phone,
    parse_csv,
    parse_file,
    parse_vcards,
    write_contacts_csv,
)
from tests.support.paths import DATA as TESTS_DATA

DATA = TESTS_DATA / "importing"


def parse(text: str, encoding: str = "utf-8", **kwargs) -> list[RowOutcome]:
    return list(parse_csv(io.BytesIO(text.encode(encoding)), **kwargs))


def drafts(outcomes: list[RowOutcome]) -> list[ContactDraft | None]:
    return [o.draft for o in outcomes]


# -- normalizers ----------------------------------------------------------------------


def test_normalize_email_lowercases_and_explains_rejections():
    assert normalize_email("  Ana.Dupont@Example.ORG ") == "ana.dupont@example.org"
    assert normalize_email("élise@exemple.fr") == "élise@exemple.fr"
    for bad, why in [("bob@", "after the @-sign"), ("bob", "@-sign"), ("a b@c.fr", "invalid characters"),
                     ("", "empty")]:
        with pytest.raises(ValueError, match=why):
            normalize_email(bad)


def test_normalize_phone_gives_e164_with_france_as_default_region():
    assert normalize_phone("06 12 34 56 78") == "+33612345678"
    assert normalize_phone("06.12.34.56.78") == "+33612345678"
    assert normalize_phone("+33 (0)6 12 34 56 78") == "+33612345678"
    assert normalize_phone("0033 1 23 45 67 89") == "+33123456789"
    assert normalize_phone("+1 415-555-2671") == "+14155552671"
    assert normalize_phone("(415) 555-2671", default_region="US") == "+14155552671"
    for bad, why in [("12", "too short"), ("06 12 34 56 78 90 12", "too long"), ("pas de tel", "not a phone"),
                     ("+999 1234", "not a phone number")]:
        with pytest.raises(ValueError, match=why):
            normalize_phone(bad)


def test_normalize_interest_makes_an_interest_name_or_nothing():
    assert normalize_interest("Éducation populaire") == "education-populaire"
    assert normalize_interest("  Vélo & Mobilité ") == "velo-mobilite"
    assert normalize_interest("climat:2024") == "climat:2024"
    assert normalize_interest("-_Logement") == "logement"
    assert normalize_interest("x" * 100) == "x" * 64
    assert normalize_interest("!!!") is None
    assert normalize_interest("") is None
    assert normalize_interest("日本") is None


# -- Google Contacts ------------------------------------------------------------------

GOOGLE_OLD_HEADER = (
    "Name,Given Name,Additional Name,Family Name,Yomi Name,Given Name Yomi,Additional Name Yomi,"
    "Family Name Yomi,Name Prefix,Name Suffix,Initials,Nickname,Short Name,Maiden Name,Birthday,"
    "Gender,Location,Billing Information,Directory Server,Mileage,Occupation,Hobby,Sensitivity,"
    "Priority,Subject,Notes,Language,Photo,Group Membership,E-mail 1 - Type,E-mail 1 - Value,"
    "E-mail 2 - Type,E-mail 2 - Value,Phone 1 - Type,Phone 1 - Value,Address 1 - Type,"
    "Address 1 - Formatted,Address 1 - Street,Address 1 - City,Address 1 - PO Box,Address 1 - Region,"
    "Address 1 - Postal Code,Address 1 - Country,Address 1 - Extended Address,Website 1 - Type,"
    "Website 1 - Value"
)
GOOGLE_OLD_ROWS = [
    # full row: notes on two lines, two addresses in one cell, labels with system groups
    'Hélène Martin,Hélène,,Martin,,,,,,,,,,,,,,,,,,,,,,"Rencontrée au marché\nle samedi",fr,,'
    "* myContacts ::: Éducation ::: * starred,* Home,Helene.Martin@Example.ORG ::: helene@example.org,"
    "* Work,h.martin@asso.example,Mobile,06 12 34 56 78,Home,,,Lyon,,Auvergne-Rhône-Alpes,69001,"
    "France,,Profile,https://piaille.fr/@helene",
    # bad address but a good phone: kept, by its phone
    "Paul Girard,Paul,,Girard,,,,,,,,,,,,,,,,,,,,,,,,,* myContacts,* Home,paul.girard@,,,Mobile,"
    "+33 7 98 76 54 32,,,,,,,,,,,,",
    # only a bad address: refused, naming it
    "Bob,Bob,,,,,,,,,,,,,,,,,,,,,,,,,,,* myContacts,* Other,bob@,,,,,,,,,,,,,,,,",
    # nothing to reach the person with
    "Sans Contact,Sans,,Contact,,,,,,,,,,,,,,,,,,,,,,Juste un nom,,,* myContacts,,,,,,,,,,,,,,,,,",
    # no name: the address' local part stands in
    ",,,,,,,,,,,,,,,,,,,,,,,,,,,,* myContacts ::: Logement,* Home,claire.b@example.com,,,,,,,,,,,,,,,,",
]


def test_google_csv_before_2023():
    out = parse(GOOGLE_OLD_HEADER + "\r\n" + "\r\n".join(GOOGLE_OLD_ROWS) + "\r\n")
    assert [o.row for o in out] == [1, 2, 3, 4, 5]
    assert drafts(out) == [
        ContactDraft(
            display_name="Hélène Martin",
            emails=("helene.martin@example.org", "helene@example.org", "h.martin@asso.example"),
            phones=("+33612345678",),
            handles=(("mastodon", "@helene@piaille.fr"),),
            locale="fr",
            commune="Lyon",
            region="Auvergne-Rhône-Alpes",
            interests=("education",),
            notes="Rencontrée au marché\nle samedi",
        ),
        ContactDraft(display_name="Paul Girard", phones=("+33798765432",)),
        None,
        None,
        ContactDraft(display_name="claire.b", emails=("claire.b@example.com",), interests=("logement",)),
    ]
    assert out[0].raw == GOOGLE_OLD_ROWS[0]  # a quoted newline stays inside one record
    assert out[2].error.startswith("email: 'bob@' is not a valid address")
    assert out[2].raw == GOOGLE_OLD_ROWS[2]
    assert out[3].error == "no usable channel: the row has no valid email or phone"
    assert out[3].raw == GOOGLE_OLD_ROWS[3]


GOOGLE_NEW = (
    "First Name,Middle Name,Last Name,Phonetic First Name,Phonetic Middle Name,Phonetic Last Name,"
    "Name Prefix,Name Suffix,Nickname,File As,Organization Name,Organization Title,"
    "Organization Department,Birthday,Notes,Photo,Labels,E-mail 1 - Label,E-mail 1 - Value,"
    "Phone 1 - Label,Phone 1 - Value,Phone 2 - Label,Phone 2 - Value,Address 1 - Label,"
    "Address 1 - Formatted,Address 1 - Street,Address 1 - City,Address 1 - PO Box,Address 1 - Region,"
    "Address 1 - Postal Code,Address 1 - Country,Address 1 - Extended Address,Website 1 - Label,"
    "Website 1 - Value\n"
    "Léa,Marie,Nguyen,,,,,,,,Collectif Vélo,,,,,,* starred ::: Vélo ::: Santé publique ::: * myContacts,"
    "* Home,lea.nguyen@example.fr,Mobile,06 11 22 33 44,Work,06 11 22 33 44 ::: 04 78 00 00 00,Home,"
    '"3 rue X\n69003 Lyon",3 rue X,Lyon,,,69003,France,,Bluesky,https://bsky.app/profile/lea.bsky.social\n'
    "Omar,,,,,,,,,,,,,,,,,* Other,,Mobile,+33 6 55 44 33 22,,,,,,,,,,,,,\n"
)


def test_google_csv_since_2023():
    out = parse(GOOGLE_NEW)
    assert [o.error for o in out] == [None, None]
    assert drafts(out) == [
        ContactDraft(
            display_name="Léa Marie Nguyen",
            emails=("lea.nguyen@example.fr",),
            phones=("+33611223344", "+33478000000"),
            handles=(("bluesky", "lea.bsky.social"),),
            commune="Lyon",
            interests=("velo", "sante-publique"),
        ),
        ContactDraft(display_name="Omar", phones=("+33655443322",)),
    ]


# -- Outlook --------------------------------------------------------------------------

OUTLOOK_EN_HEADER = [
    "First Name", "Middle Name", "Last Name", "Title", "Suffix", "Nickname", "Given Yomi", "Surname Yomi",
    "E-mail Address", "E-mail 2 Address", "E-mail 3 Address", "Home Phone", "Home Phone 2",
    "Business Phone", "Business Phone 2", "Mobile Phone", "Car Phone", "Other Phone", "Primary Phone",
    "Pager", "Business Fax", "Home Fax", "Other Fax", "Company Main Phone", "Callback", "Radio Phone",
    "Telex", "TTY/TDD Phone", "IMAddress", "Job Title", "Department", "Company", "Office Location",
    "Manager's Name", "Assistant's Name", "Assistant's Phone", "Company Yomi", "Business Street",
    "Business City", "Business State", "Business Postal Code", "Business Country/Region", "Home Street",
    "Home City", "Home State", "Home Postal Code", "Home Country/Region", "Other Street", "Other City",
    "Other State", "Other Postal Code", "Other Country/Region", "Personal Web Page", "Spouse", "Schools",
    "Hobby", "Location", "Web Page", "Birthday", "Anniversary", "Notes", "Categories",
]


def outlook_csv(header: list[str], rows: list[dict[str, str]], delimiter: str = ",") -> str:
    """As Outlook writes it: every cell quoted, every column present."""
    out = io.StringIO()
    w = csv.writer(out, delimiter=delimiter, quoting=csv.QUOTE_ALL)
    w.writerow(header)
    for row in rows:
        w.writerow([row.get(h, "") for h in header])
    return out.getvalue()


OUTLOOK_EN = outlook_csv(OUTLOOK_EN_HEADER, [
    {"First Name": "Sophie", "Last Name": "Bernard", "E-mail Address": "sophie.bernard@example.com",
     "E-mail 2 Address": "s.bernard@work.example", "Home Phone": "0145678901", "Mobile Phone": "0611223344",
     "Business City": "Paris", "Business State": "Île-de-France", "Notes": "Voisine, 3e étage",
     "Categories": "Logement;Climat", "Web Page": "https://twitter.com/sophieb"},
    {"First Name": "Marc", "Last Name": "Petit", "E-mail Address": "marc.petit(at)example.com"},
])


def test_outlook_csv_english_headers():
    out = parse(OUTLOOK_EN)
    assert drafts(out) == [
        ContactDraft(
            display_name="Sophie Bernard",
            emails=("sophie.bernard@example.com", "s.bernard@work.example"),
            phones=("+33611223344", "+33145678901"),
            handles=(("x", "@sophieb"),),
            commune="Paris",
            region="Île-de-France",
            interests=("logement", "climat"),
            notes="Voisine, 3e étage",
        ),
        None,
    ]
    assert out[1].row == 2
    assert out[1].error.startswith("email: 'marc.petit(at)example.com' is not a valid address")
    assert out[1].raw == OUTLOOK_EN.splitlines()[2]


OUTLOOK_FR = (
    "Prénom;Deuxième prénom;Nom;Titre;Suffixe;Surnom;Adresse de messagerie;Adresse de messagerie 2;"
    "Adresse de messagerie 3;Téléphone (domicile);Téléphone 2 (domicile);Téléphone (bureau);"
    "Téléphone 2 (bureau);Téléphone mobile;Ville (domicile);Dép/Région (domicile);Catégories;Notes\r\n"
    "Hélène;;Lefèvre;Mme;;;helene.lefevre@exemple.fr;;;04 91 00 00 00;;;;06 98 76 54 32;Marseille;"
    "Provence-Alpes-Côte d'Azur;Santé;Très active à l'AMAP\r\n"
    "François;;Gaël;;;;;;;;;;;;Brest;Bretagne;;\r\n"
)


def test_outlook_csv_french_headers_semicolons_windows_1252():
    out = parse(OUTLOOK_FR, encoding="cp1252")
    assert drafts(out) == [
        ContactDraft(
            display_name="Hélène Lefèvre",
            emails=("helene.lefevre@exemple.fr",),
            phones=("+33698765432", "+33491000000"),
            commune="Marseille",
            region="Provence-Alpes-Côte d'Azur",
            interests=("sante",),
            notes="Très active à l'AMAP",
        ),
        None,
    ]
    assert out[1].error == "no usable channel: the row has no valid email or phone"
    assert out[1].raw == "François;;Gaël;;;;;;;;;;;;Brest;Bretagne;;"


def test_outlook_unicode_text_export_utf16_with_bom_and_tabs():
    text = "First Name\tLast Name\tE-mail Address\tMobile Phone\r\nZoë\tØstergaard\tzoe@example.dk\t+45 20 12 34 56\r\n"
    out = list(parse_csv(io.BytesIO(b"\xff\xfe" + text.encode("utf-16-le"))))
    assert drafts(out) == [
        ContactDraft(display_name="Zoë Østergaard", emails=("zoe@example.dk",), phones=("+4520123456",))
    ]


# -- any spreadsheet ------------------------------------------------------------------


def test_generic_csv_with_bom_guesses_french_headers():
    text = (
        "Nom;Prénom;Courriel;Téléphone;Centres d'intérêt;Ville;Région\n"
        "Moreau;Inès;ines.moreau@example.fr;;Climat, Vélo;Nantes;Pays de la Loire\n"
        "Roussel;Karim;;07 12 34 56 78;;;\n"
        "\n"
        ";;;;;;\n"
        "Faure;Anne;anne.faure@example;;;;\n"
    )
    out = parse(text, encoding="utf-8-sig")
    assert [o.row for o in out] == [1, 2, 3]  # blank rows make no outcome
    assert drafts(out)[:2] == [
        ContactDraft(
            display_name="Inès Moreau",
            emails=("ines.moreau@example.fr",),
            commune="Nantes",
            region="Pays de la Loire",
            interests=("climat", "velo"),
        ),
        ContactDraft(display_name="Karim Roussel", phones=("+33712345678",)),
    ]
    assert out[2].error.startswith("email: 'anne.faure@example' is not a valid address")
    assert out[2].raw == "Faure;Anne;anne.faure@example;;;;"


def test_generic_csv_with_a_mapping():
    text = (
        "Contact,Adresse perso,Portable,Thèmes,Commune,Compte Mastodon,Bluesky,Remarque\n"
        'Nadia Haddad,nadia@example.org,06 01 02 03 04,"logement, transports",Lille,'
        "@nadia@mastodon.social,@nadia.bsky.social,\"dit \"\"oui\"\"\"\n"
    )
    mapping = ColumnMapping(
        display_name="Contact", emails=("Adresse perso",), phones=("Portable",), interests=("Thèmes",),
        commune="Commune", mastodon="Compte Mastodon", bluesky="Bluesky", notes="Remarque",
    )
    out = parse(text, mapping=mapping)
    assert drafts(out) == [
        ContactDraft(
            display_name="Nadia Haddad",
            emails=("nadia@example.org",),
            phones=("+33601020304",),
            handles=(("mastodon", "@nadia@mastodon.social"), ("bluesky", "nadia.bsky.social")),
            commune="Lille",
            interests=("logement", "transports"),
            notes='dit "oui"',
        )
    ]


def test_mapping_naming_an_absent_column_is_a_file_error():
    with pytest.raises(ImportFormatError) as e:
        parse("Nom,Mail\nA,a@example.org\n", mapping=ColumnMapping(emails=("Courriel",)))
    assert e.value.field == "Courriel"


def test_generic_csv_without_email_or_phone_column_is_a_file_error():
    with pytest.raises(ImportFormatError, match="no email or phone column") as e:
        parse("Nom,Ville\nDupont,Lyon\n")
    assert e.value.field == "email"
    assert "'Nom', 'Ville'" in str(e.value)


def test_duplicate_column_names_are_a_file_error():
    with pytest.raises(ImportFormatError, match="twice") as e:
        parse("Name,Email,Phone,email\nA,a@example.org,,b@example.org\n")
    assert e.value.field == "email"


def test_empty_file_is_a_file_error():
    with pytest.raises(ImportFormatError, match="no header"):
        parse("\n\n")


def test_email_cells_as_mail_clients_copy_them():
    out = parse("email\nAna Dupont <Ana@Example.org>\nmailto:b@example.org\n")
    assert drafts(out) == [
        ContactDraft(display_name="Ana Dupont", emails=("ana@example.org",)),
        ContactDraft(display_name="b", emails=("b@example.org",)),
    ]


def test_explicit_delimiter_wins_over_sniffing():
    out = parse("name|email\nA;B|a@example.org\n", delimiter="|")
    assert drafts(out) == [ContactDraft(display_name="A;B", emails=("a@example.org",))]


def test_multiline_record_raw_and_row_numbers():
    text = 'name,email,notes\r\nA,a@example.org,"one\r\ntwo\r\nthree"\r\nB,b@,\r\n'
    out = parse(text)
    assert [o.row for o in out] == [1, 2]
    assert out[0].raw == 'A,a@example.org,"one\r\ntwo\r\nthree"'
    assert out[0].draft.notes == "one\ntwo\nthree"
    assert out[1].raw == "B,b@,"


HOSTILE_NAME = "Eve\r\nX-Injected: yes\r\nContent-Type: text/html\r\n\r\n<a href=https://evil.example>x</a>"


def test_a_name_with_a_line_break_or_a_tab_is_a_rejected_row_with_its_raw_text_and_the_others_import():
    """Issue 11, finding 3: a contact's name becomes a To: header. A name
    cell with a line break (quoted, spanning lines) or a tab is refused
    with the field named, never mended; its neighbours import."""
    rows = [["Ana", "ana@example.org"], [HOSTILE_NAME, "eve@example.org"], ["Bob\tTab", "bob@example.org"],
            ["Zoé", "zoe@example.org"], ["Esc\x1b[31mRed", "esc@example.org"], ["Sep\u2028Line", "sep@example.org"]]
    text = io.StringIO()
    csv.writer(text).writerows([["name", "email"], *rows])
    out = parse(text.getvalue())
    assert [o.row for o in out] == [1, 2, 3, 4, 5, 6]
    assert drafts(out) == [ContactDraft(display_name="Ana", emails=("ana@example.org",)), None, None,
                           ContactDraft(display_name="Zoé", emails=("zoe@example.org",)), None, None]
    assert [o.error for o in out] == [
        None,
        "name: must not contain a control character (found U+000D, e.g. a line break)",
        "name: must not contain a control character (found U+0009, e.g. a line break)",
        None,
        "name: must not contain a control character (found U+001B, e.g. a line break)",
        "name: must not contain a control character (found U+2028, e.g. a line break)",
    ]
    # the raw row is kept whole, line breaks included, for the volunteer to fix
    assert out[1].raw == f'"{HOSTILE_NAME}",eve@example.org'
    assert out[2].raw == "Bob\tTab,bob@example.org"


def test_a_name_from_first_and_last_name_columns_is_checked_as_joined():
    out = parse("First Name,Last Name,E-mail Address\r\nEve,\"Doe\r\nBcc: all@example.org\",e@example.org\r\n"
                "Ana,Dupont,a@example.org\r\n")
    assert out[0].draft is None and out[0].error.startswith("name: must not contain a control character (found U+000D")
    assert out[1].draft == ContactDraft(display_name="Ana Dupont", emails=("a@example.org",))


def test_a_vcard_name_with_an_escaped_line_break_is_rejected_and_the_next_card_read():
    cards = ("BEGIN:VCARD\r\nVERSION:3.0\r\nFN:Eve\\nX-Injected: yes\r\nEMAIL:eve@example.org\r\nEND:VCARD\r\n"
             "BEGIN:VCARD\r\nVERSION:3.0\r\nN:Eve;Doe\\r\\nBcc: x@example.org;;;\r\nEMAIL:d@example.org\r\n"
             "END:VCARD\r\n"
             "BEGIN:VCARD\r\nVERSION:3.0\r\nFN:Ana Dupont\r\nEMAIL:ana@example.org\r\nEND:VCARD\r\n")
    out = list(parse_vcards(io.BytesIO(cards.encode())))
    assert [o.error for o in out] == [
        "name: must not contain a control character (found U+000A, e.g. a line break)",
        "name: must not contain a control character (found U+000A, e.g. a line break)",  # \r is no vCard escape
        None,
    ]
    assert "FN:Eve\\nX-Injected: yes" in out[0].raw
    assert out[2].draft == ContactDraft(display_name="Ana Dupont", emails=("ana@example.org",))


# -- file-level errors ----------------------------------------------------------------


def test_undecodable_bytes_are_a_file_error_with_the_line():
    # 0x81 is defined neither in UTF-8 (here) nor in Windows-1252
    with pytest.raises(ImportFormatError, match="not valid cp1252") as e:
        list(parse_csv(io.BytesIO(b"name,email\nAn\x81a,a@example.org\n")))
    assert e.value.line == 2


def test_windows_1252_after_a_plain_ascii_head_is_still_read():
    # Outlook on French Windows, with its first 64 KiB of names all ASCII
    head = b"name,email\n" + b"".join(b"P%d,p%d@example.org\n" % (i, i) for i in range(5000))
    assert len(head) > 64 * 1024 and head.isascii()
    out = list(parse_csv(io.BytesIO(head + b"H\xe9l\xe8ne,h@example.org\n")))
    assert out[-1].draft == ContactDraft(display_name="Hélène", emails=("h@example.org",))
    assert len(out) == 5001


def test_bytes_that_break_utf8_after_the_first_chunk_name_row_and_line():
    head = "name,email\nZoë,zoe@example.org\n".encode() + b"".join(
        b"P%d,p%d@example.org\n" % (i, i) for i in range(5000)
    )
    data = head + b"H\xe9l\xe8ne,h@example.org\n"
    assert len(head) > 64 * 1024  # the encoding (UTF-8, for 'Zoë') was decided on the head
    outcomes = parse_csv(io.BytesIO(data))
    with pytest.raises(ImportFormatError, match="not valid utf-8") as e:
        for _ in outcomes:
            pass
    assert (e.value.line, e.value.row) == (5003, 5002)


def test_a_line_longer_than_the_limit_is_a_file_error():
    data = b"name,email\nA,a@example.org\nB," + b"b" * 70_000 + b"@example.org\n"
    outcomes = parse_csv(io.BytesIO(data))
    assert next(outcomes).draft.display_name == "A"  # rows before the long line still come
    with pytest.raises(ImportFormatError, match="longer than 65536") as e:
        next(outcomes)
    assert (e.value.line, e.value.row) == (3, 2)
    assert str(e.value) == "line 3 is longer than 65536 characters"  # callers add 'row 2: '


def test_binary_file_is_a_file_error():
    with pytest.raises(ImportFormatError, match="spreadsheet"):
        list(parse_file(io.BytesIO(b"PK\x03\x04\x14\x00\x06\x00rest of a zip"), "contacts.csv"))
    with pytest.raises(ImportFormatError, match="NUL"):
        list(parse_file(io.BytesIO(b"name,email\x00\x00\n")))


# -- vCard ----------------------------------------------------------------------------


def vcards(name: str) -> list[RowOutcome]:
    with open(DATA / name, "rb") as f:
        return list(parse_vcards(f))


def test_vcard_21_android_quoted_printable_and_base64_photo():
    out = vcards("android-2.1.vcf")
    assert drafts(out) == [
        ContactDraft(
            display_name="Anaïs Lefèvre de la Fontaine des Prés à Montréal",
            emails=("anais.lefevre@example.fr",),
            phones=("+33612345678", "+33123456789"),
            commune="Lyon",
            interests=("logement", "education"),
            notes="Bénévole tractage\nQuartier Croix-Rousse",
        ),
        None,
        None,
    ]
    assert "PHOTO" not in out[0].raw and "/9j/" not in out[0].raw
    assert "NOTE;ENCODING=QUOTED-PRINTABLE:B=C3=A9n=C3=A9vole tractage=0D=0A=\r\nQuartier" in out[0].raw
    assert out[1].error.startswith("email: 'jurgen@' is not a valid address")
    assert out[1].raw == (
        "BEGIN:VCARD\r\nVERSION:2.1\r\nN;CHARSET=ISO-8859-1;ENCODING=QUOTED-PRINTABLE:M=FCller;J=FCrgen;;;"
        "\r\nEMAIL;INTERNET:jurgen@\r\nEND:VCARD"
    )
    assert out[2].error == "phone: '12' is not a possible phone number (too short)"


def test_vcard_30_apple_folding_groups_escapes_and_social_profiles():
    out = vcards("apple-3.0.vcf")
    assert drafts(out) == [
        ContactDraft(
            display_name="Jean-Pierre Durand",
            emails=("jp.durand@example.org", "jp@durand.example"),
            phones=("+33698765432", "+33472000000"),
            handles=(("mastodon", "@jpdurand@mastodon.social"), ("bluesky", "jpdurand.bsky.social")),
            commune="Villeurbanne",
            region="Auvergne-Rhône-Alpes",
            interests=("velo", "ecologie-urbaine"),
            notes="Vu à la réunion du 12, rue Paul Bert; très motivé.\nRappeler en mai",
        ),
        ContactDraft(display_name="Wei Zhang", phones=("+33711223344",)),
        None,
    ]
    assert out[2].error == "no usable channel: the row has no valid email or phone"
    assert out[2].raw == (
        "BEGIN:VCARD\r\nVERSION:3.0\r\nFN:Note Seule\r\nNOTE:rencontrée au forum des associations\r\nEND:VCARD"
    )


def test_vcard_40_thunderbird():
    out = vcards("thunderbird-4.0.vcf")
    assert drafts(out) == [
        ContactDraft(
            display_name="Camille Roux",
            emails=("camille.roux@example.net",),
            phones=("+33711223344", "+33144556677"),
            handles=(("bluesky", "camille.bsky.social"),),
            locale="fr-FR",
            commune="Toulouse",
            region="Occitanie",
            interests=("sante", "education-populaire"),
            notes="Bénévole depuis 2022",
        ),
        ContactDraft(display_name="Yasmine Benali", emails=("yasmine.benali@example.net",)),
    ]
    assert [o.row for o in out] == [1, 2]


def test_vcard_without_end_is_reported_and_the_next_card_still_read():
    text = "BEGIN:VCARD\nVERSION:3.0\nFN:A\nEMAIL:a@example.org\nBEGIN:VCARD\nFN:B\nEMAIL:b@example.org\n"
    out = list(parse_vcards(io.BytesIO(text.encode())))
    assert [(o.row, o.error) for o in out] == [(1, "card: no END:VCARD line"), (2, "card: no END:VCARD line")]
    assert out[0].raw == "BEGIN:VCARD\nVERSION:3.0\nFN:A\nEMAIL:a@example.org"


def test_a_file_without_any_vcard_is_a_file_error():
    with pytest.raises(ImportFormatError, match="no vCard"):
        list(parse_vcards(io.BytesIO(b"hello\n")))


# -- choosing the parser --------------------------------------------------------------


def test_parse_file_trusts_content_over_the_extension():
    vcf = (DATA / "thunderbird-4.0.vcf").read_bytes()
    assert [o.row for o in parse_file(io.BytesIO(vcf), "export.csv")] == [1, 2]
    assert [o.draft.display_name for o in parse_file(io.BytesIO(b"name,email\nA,a@example.org\n"), "a.vcf")] == ["A"]
    bom_vcf = "\ufeffBEGIN:VCARD\r\nFN:É\r\nEMAIL:e@example.org\r\nEND:VCARD\r\n".encode("utf-16-le")
    assert [o.draft.display_name for o in parse_file(io.BytesIO(bom_vcf))] == ["É"]
    with pytest.raises(ImportFormatError, match="spreadsheet"):
        list(parse_file(io.BytesIO(b"name,email\n"), "contacts.xlsx"))


class CountingStream(io.RawIOBase):
    """A non-seekable upload that counts what the parser has read."""

    def __init__(self, data: bytes) -> None:
        self._data, self.consumed = io.BytesIO(data), 0

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        chunk = self._data.read(size)
        self.consumed += len(chunk)
        return chunk


def test_parsing_reads_lazily():
    rows = "".join(f"P{i},p{i}@example.org\n" for i in range(50_000))
    stream = CountingStream(("name,email\n" + rows).encode())
    outcomes = parse_file(stream, "big.csv")
    assert stream.consumed == 0  # nothing happens before iteration
    assert next(outcomes).draft.display_name == "P0"
    assert stream.consumed <= 2 * 64 * 1024 < len(rows)


@pytest.mark.slow  # a minute: the memory bound is only visible on a big file
def test_100k_rows_stream_in_bounded_memory(tmp_path):
    path = tmp_path / "big.csv"
    domains = ["gmail.com", "orange.fr", "free.fr", "laposte.net", "example.org"]
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["Nom", "Prénom", "Email", "Téléphone", "Tags", "Notes"])
        for i in range(100_000):
            phone = f"06 {i // 10000 % 100:02d} {i // 100 % 100:02d} {i % 100:02d} 11" if i % 10 == 0 else ""
            email = f"contact.{i}@{domains[i % 5]}" if i % 1000 != 1 else f"broken{i}@"
            w.writerow([f"Nom{i}", "Prénom", email, phone, "climat;santé", "x" * 300])
    assert path.stat().st_size > 30_000_000

    accepted = rejected = 0
    tracemalloc.start()
    try:
        with open(path, "rb") as f:
            for outcome in parse_csv(f):
                if outcome.draft is not None:
                    accepted += 1
                else:
                    rejected += 1
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert (accepted, rejected) == (99_900, 100)
    assert peak < 20 * 1024 * 1024, f"peak {peak / 1e6:.1f} MB"


# -- export ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "safe"),
    [
        ("=HYPERLINK(\"http://evil\",\"x\")", "'=HYPERLINK(\"http://evil\",\"x\")"),
        ("+33 6 12 34 56 78", "'+33 6 12 34 56 78"),
        ("-2+3", "'-2+3"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\t=1", "'\t=1"),
        ("\r=1", "'\r=1"),
        ("Hélène", "Hélène"),
        ("a=b", "a=b"),
        ("", ""),
    ],
)
def test_csv_safe_defuses_formulas(value, safe):
    assert csv_safe(value) == safe


def test_write_contacts_csv_escapes_every_cell():
    out = io.StringIO(newline="")
    write_contacts_csv(
        [{"name": "=cmd|' /C calc'!A0", "email": "a@example.org", "notes": 'dit "oui", puis\nnon'},
         {"name": "Zoé", "email": "z@example.org"}],
        out,
        ["name", "email", "notes"],
    )
    assert out.getvalue() == (
        "name,email,notes\r\n"
        "'=cmd|' /C calc'!A0,a@example.org,\"dit \"\"oui\"\", puis\nnon\"\r\n"
        "Zoé,z@example.org,\r\n"
    )
