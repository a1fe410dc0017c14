"""Signed links (issue 11, finding 9): whatever arrives as a token — from a
mail client, a hand-edited URL, a forged cookie — verify answers with the
payload or InvalidLink, never another exception (which was a 500)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.links import MAX_TOKEN_CHARS, InvalidLink, LinkSigner

KEY = b"k" * 32
signer = LinkSigner(KEY)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def signed_body(purpose: str, body: str) -> str:
    """A token whose MAC is right for any body: what only the key holder
    could make, to reach the checks after the MAC."""
    mac = b64(hmac.new(KEY, f"{purpose}.{body}".encode(), hashlib.sha256).digest()[:20])
    return f"{body}.{mac}"


def test_a_token_round_trips_and_expires():
    token = signer.sign("unsubscribe", {"c": "contact-1"}, ttl_seconds=60)
    assert signer.verify("unsubscribe", token)["c"] == "contact-1"
    with pytest.raises(InvalidLink):
        signer.verify("consent", token)  # meant for another purpose
    old = signed_body("unsubscribe", b64(json.dumps({"c": "x", "exp": int(time.time()) - 1}).encode()))
    with pytest.raises(InvalidLink, match="expired"):
        signer.verify("unsubscribe", old)


MALFORMED = {
    "non-ASCII signature (the reported /u/a.%C3%A9)": "a.é",
    "non-ASCII body": "é.abc",
    "only non-ASCII": "ééé",
    "emoji": "🙂.🙂",
    "no dot": "abcdef",
    "empty": "",
    "a dot only": ".",
    "empty body": ".abc",
    "empty signature": "abc.",
    "three parts": "a.b.c",
    "a valid token with an extra part": signer.sign("unsubscribe", {"c": "1"}) + ".x",
    "NUL bytes": "\x00.\x00",
    "overlong": "a" * (MAX_TOKEN_CHARS + 1) + ".b",
    "overlong, signed": signed_body("unsubscribe", "a" * (MAX_TOKEN_CHARS + 10)),
    "surrogate": "\ud800.x",
}
SIGNED_BUT_MALFORMED = {
    "bad base64": signed_body("unsubscribe", "!!!!"),
    "one stray base64 character": signed_body("unsubscribe", "a"),
    "not UTF-8": signed_body("unsubscribe", b64(b"\xff\xfe\xfd")),
    "not JSON": signed_body("unsubscribe", b64(b"not json")),
    "a JSON list": signed_body("unsubscribe", b64(b"[1, 2]")),
    "a JSON string": signed_body("unsubscribe", b64(b'"exp"')),
    "JSON null": signed_body("unsubscribe", b64(b"null")),
    "exp a string": signed_body("unsubscribe", b64(b'{"exp": "tomorrow"}')),
    "exp a list": signed_body("unsubscribe", b64(b'{"exp": [1]}')),
    "exp true": signed_body("unsubscribe", b64(b'{"exp": true}')),
    "exp NaN (never smaller than now: it would never expire)": signed_body("unsubscribe", b64(b'{"exp": NaN}')),
    "exp Infinity": signed_body("unsubscribe", b64(b'{"exp": Infinity}')),
}


@pytest.mark.parametrize("token", [*MALFORMED.values(), *SIGNED_BUT_MALFORMED.values()],
                         ids=[*MALFORMED, *SIGNED_BUT_MALFORMED])
def test_a_malformed_token_is_invalid_and_nothing_else(token: str):
    with pytest.raises(InvalidLink):
        signer.verify("unsubscribe", token)


@settings(max_examples=300, deadline=None)
@given(st.one_of(
    st.text(max_size=300),
    st.builds(lambda a, b: f"{a}.{b}", st.text(max_size=80), st.text(max_size=80)),
    st.binary(max_size=200).map(lambda raw: signed_body("unsubscribe", b64(raw))),
))
def test_any_text_is_a_payload_or_invalid(token: str):
    try:
        data = signer.verify("unsubscribe", token)
    except InvalidLink:
        return
    assert isinstance(data, dict)
