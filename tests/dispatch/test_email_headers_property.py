"""The email writer over generated input (issue 11, finding 3): whatever a
job carries, past every input check (names, subject, addresses, the
unsubscribe URL, the ids in the Message-ID), the bytes it writes parse to
exactly the expected headers, each once, and the body it was given.

The jobs here are plain objects, not validated models: they stand for a
job that got past validation (a stored name from before it, a bug, a
forged job), which is what the writer must hold against on its own."""

from __future__ import annotations

import base64
import re
from email import message_from_string, policy
from types import SimpleNamespace

import dkim
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from services.dispatch.email.dkim_signing import DkimSigner
from services.dispatch.email.domain.message import UnsafeHeader, compose_bytes
from services.dispatch.email.domain.render import Templates

FROM = "relais@campagne.example"
LIST_ID = "relais.campagne.example"
HEADERS = ["From", "Reply-To", "To", "Subject", "Date", "Message-ID", "List-Id", "List-Unsubscribe",
           "List-Unsubscribe-Post", "MIME-Version", "Content-Type"]
HOSTILE_NAME = "Eve\r\nX-Injected: yes\r\nContent-Type: text/html\r\n\r\n<a href=https://evil.example>x</a>"
TEMPLATES = Templates()

# Header lines as RFC 5322 has them: a name and a colon, or a folded
# continuation; CRLF only.
HEAD_LINE = re.compile(rb"[!-9;-~]+:[^\r\n]*|[ \t][^\r\n]*")
CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
URI = re.compile(r"[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=%]*")

# Every kind of character, surrogates included, with the ones an injection
# is made of drawn often.
PIECES = ["\r", "\n", "\r\n", "\t", "\x00", "\x0b", "\x1e", "\x7f", "\x85", "\u2028", "\u2029", "\ud800",
          "=?utf-8?q?=0D=0A?=", "<", ">", ",", ";", '"', "\\", ":", "@", " ", "é", "Bcc: x@evil.example",
          "X-Injected: yes", "Content-Type: text/html", "--", "."]
hostile = st.lists(st.sampled_from(PIECES) | st.text(st.characters(exclude_categories=()), max_size=8),
                   max_size=8).map("".join)
text = hostile
addresses = st.emails() | st.sampled_from(["eve@evil.example>, <all@victims.example", "a@b.example\r\nBcc: x@y",
                                           "é@ü.example", "a b@c.example"]) | text
ids = st.from_regex(r"[0-9a-f]{32}", fullmatch=True) | text


def make_job(**fields) -> SimpleNamespace:
    base = dict(job_id="0123456789abcdef0123456789abcdef", relay_id="relay-1", message_id="m-1",
                volunteer_id="vol-1", sender_name="Alice Martin", reply_to="alice@perso.example",
                recipient_name="Camille Dupont", recipient_email="camille@exemple.fr", recipient_hash="0" * 64,
                subject="Les écoles ont besoin de vous", body_text="Le texte du message.",
                unsubscribe_url="https://contacts.campagne.example/u/abc.def", note=None, smtp_account=None)
    return SimpleNamespace(**{**base, **fields})


def one_line(value: str) -> str:
    """What a reader sees of text for people: each control a space."""
    cleaned = re.sub(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]", " ", value)
    return cleaned.strip() if cleaned != value else value


def words(value: str) -> str:
    """The text without its whitespace: folding a long name into several
    encoded words, and the stdlib's reading of them (it puts a space
    between two encoded words of a display name), move whitespace; every
    other character must be there, in order."""
    return "".join(value.split())


def parse(data: bytes):
    # As text: an address in UTF-8 (RFC 6531) is read as such, not as the
    # stdlib's escaped bytes; and the whole email must be valid UTF-8.
    return message_from_string(data.decode(), policy=policy.default)


def check_email(data: bytes, job: SimpleNamespace, from_address: str = FROM) -> None:
    head, blank, body = data.partition(b"\r\n\r\n")
    assert blank, "no blank line after the headers"
    lines = head.split(b"\r\n")
    assert all(HEAD_LINE.fullmatch(line) for line in lines), [ln for ln in lines if not HEAD_LINE.fullmatch(ln)]
    names = [line.split(b":", 1)[0].decode() for line in lines if line[:1] not in (b" ", b"\t")]
    assert names == HEADERS  # each once, nothing added, nothing lost

    msg = parse(data)
    assert list(msg.keys()) == HEADERS
    assert not msg.defects
    assert words(str(msg["Subject"])) == words(one_line(job.subject))
    for header, name, address in (("From", job.sender_name, from_address), ("Reply-To", job.sender_name, job.reply_to),
                                  ("To", job.recipient_name, job.recipient_email)):
        (parsed,) = msg[header].addresses
        assert parsed.addr_spec == address
        assert words(parsed.display_name) == words(one_line(name))
    # read raw: the stdlib decodes anything like an encoded word in a header it does not know, mail clients
    # do not in this one (RFC 2369: URLs in angle brackets)
    (unsubscribe,) = [line.partition(b": ")[2].decode() for line in lines if line.startswith(b"List-Unsubscribe: ")]
    assert unsubscribe.startswith("<") and unsubscribe.endswith(">") and URI.fullmatch(unsubscribe[1:-1])
    if URI.fullmatch(job.unsubscribe_url):
        assert unsubscribe == f"<{job.unsubscribe_url}>"  # a URI as contacts signs it goes as it is
    assert msg.get_content_type() == "multipart/alternative"
    parts = list(msg.iter_parts())
    assert [p.get_content_type() for p in parts] == ["text/plain", "text/html"]
    expected_text, expected_html = TEMPLATES.render(job)

    def lines_of(value: str) -> str:
        value = value.encode(errors="replace").decode()
        return value.replace("\r\n", "\n").replace("\r", "\n")

    # the body intact, up to its line ends (CRLF on the wire, whatever the text had)
    assert lines_of(parts[0].get_content()) == lines_of(expected_text)
    assert lines_of(parts[1].get_content()) == lines_of(expected_html)


FAST = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FAST
@given(sender_name=text.filter(bool), recipient_name=text, subject=text.filter(bool), unsubscribe_url=text,
       note=st.none() | text, body_text=text.filter(bool))
@example(sender_name=HOSTILE_NAME, recipient_name=HOSTILE_NAME, subject=HOSTILE_NAME,
         unsubscribe_url="https://u.example/1>\r\nX-Injected: yes", note=HOSTILE_NAME, body_text=HOSTILE_NAME)
@example(sender_name="=?utf-8?q?Eve=0D=0AX-Injected:_yes?=", recipient_name="\u2028", subject="\r\n",
         unsubscribe_url="", note="a\r.\r\nb", body_text="\r")
def test_text_fields_cannot_add_or_remove_a_header_and_the_body_is_intact(**fields):
    job = make_job(**fields)
    check_email(compose_bytes(job, FROM, LIST_ID, TEMPLATES), job)


@FAST
@given(reply_to=addresses, recipient_email=addresses, from_address=addresses, job_id=ids, list_id=ids)
@example(reply_to="alice@perso.example", recipient_email="eve@evil.example>, <all@victims.example",
         from_address=FROM, job_id="0" * 32, list_id=LIST_ID)
@example(reply_to="alice@perso.example", recipient_email="c@exemple.fr", from_address=FROM,
         job_id="job\r\nBcc: all@victims.example", list_id=LIST_ID)
def test_addresses_and_ids_are_written_as_they_are_or_the_job_is_refused(reply_to, recipient_email, from_address,
                                                                        job_id, list_id):
    """What no encoding makes right is refused with the header named, by
    UnsafeHeader only (a typed, permanent failure, never another crash)."""
    job = make_job(reply_to=reply_to, recipient_email=recipient_email, job_id=job_id)
    try:
        data = compose_bytes(job, from_address, list_id, TEMPLATES)
    except UnsafeHeader as exc:
        assert exc.header in HEADERS
        assert str(exc) == f"{exc.header}: this value cannot be written in a mail header"  # never the value
        return
    check_email(data, job, from_address)
    msg = parse(data)
    assert str(msg["List-Id"]) == f"<{list_id}>"
    assert str(msg["Message-ID"]).endswith(f".{job_id}@{from_address.rpartition('@')[2]}>")


@pytest.mark.parametrize("field", ["reply_to", "recipient_email"])
def test_a_second_address_smuggled_into_an_address_is_refused(field):
    for bad in ("eve@evil.example>, <all@victims.example", "a@b.example\r\nBcc: x@y.example", "a b@c.example",
                "\"a\r\n\"@b.example"):
        with pytest.raises(UnsafeHeader) as refused:
            compose_bytes(make_job(**{field: bad}), FROM, LIST_ID, TEMPLATES)
        assert refused.value.header == {"reply_to": "Reply-To", "recipient_email": "To"}[field]


def test_the_hostile_name_of_the_issue_stays_a_display_name():
    job = make_job(recipient_name=HOSTILE_NAME, sender_name=HOSTILE_NAME, subject=HOSTILE_NAME)
    data = compose_bytes(job, FROM, LIST_ID, TEMPLATES)
    check_email(data, job)
    msg = parse(data)
    assert "X-Injected" not in msg and msg.get_all("Content-Type") == [msg["Content-Type"]]
    assert msg["To"].addresses[0].display_name == ("Eve  X-Injected: yes  Content-Type: text/html    "
                                                   "<a href=https://evil.example>x</a>")


# -- DKIM ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dkim_key() -> tuple[DkimSigner, bytes]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    der = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return DkimSigner("m2026", "campagne.example", pem), b"v=DKIM1; k=rsa; p=" + base64.b64encode(der)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.function_scoped_fixture])
@given(sender_name=text.filter(bool), recipient_name=text, subject=text.filter(bool), unsubscribe_url=text)
def test_what_the_campaign_signs_is_the_expected_header_set_and_verifies(dkim_key, **fields):
    signer, record = dkim_key
    job = make_job(**fields)
    signed = signer.sign(compose_bytes(job, FROM, LIST_ID, TEMPLATES))
    assert dkim.verify(signed, dnsfunc=lambda name, timeout=5: record)
    assert signed.startswith(b"DKIM-Signature: ")
    check_email(signed[signed.index(b"\r\nFrom: ") + 2:], job)  # and, below the signature, the email as written


@pytest.mark.parametrize("message", [
    b"From: a@b.example\r\nSubject: s\r\nX-Injected: yes\nBcc: c@d.example\r\n\r\nbody",  # bare LF
    b"From: a@b.example\r\nSubject: s\rBcc: c@d.example\r\n\r\nbody",  # bare CR
    b"From: a@b.example\r\nnot a header\r\n\r\nbody",
    b"From: a@b.example\r\nFrom: eve@evil.example\r\n\r\nbody",  # a signed header twice
    b"Subject: s\r\nContent-Type: text/plain\r\ncontent-type: text/html\r\n\r\nbody",
    b" From: a@b.example\r\n\r\nbody",
    b"From: a@b.example\r\n",  # no end of headers
])
def test_the_signer_refuses_a_malformed_or_doubled_header_block(dkim_key, message):
    signer, _ = dkim_key
    with pytest.raises(UnsafeHeader):
        signer.sign(message)
