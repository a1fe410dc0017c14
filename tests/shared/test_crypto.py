"""Keys, seals, blind indexes and signed links, without a database."""

from __future__ import annotations

import base64
import os

import pytest

from services.contacts.crypto import BookCipher, DecryptionError, MasterKey, new_data_key, parse_master_keys
from shared.blind_index import BlindIndex
from shared.links import InvalidLink, LinkSigner


def test_data_keys_are_wrapped_and_bound_to_their_volunteer():
    master = MasterKey({1: os.urandom(32)})
    dek = new_data_key()
    version, wrapped = master.wrap(dek, "alice")
    assert dek not in wrapped and master.unwrap(version, wrapped, "alice") == dek
    with pytest.raises(DecryptionError):
        master.unwrap(version, wrapped, "bob")  # a wrapped key cannot be moved to another account


def test_master_key_rotation_reads_old_wraps_and_writes_new_ones():
    old, new = os.urandom(32), os.urandom(32)
    dek = new_data_key()
    v1, wrapped = MasterKey({1: old}).wrap(dek, "alice")
    rotating = MasterKey.from_setting(f"2:{base64.b64encode(new).decode()},1:{base64.b64encode(old).decode()}")
    assert rotating.unwrap(v1, wrapped, "alice") == dek
    v2, rewrapped = rotating.wrap(dek, "alice")
    assert v2 == 2 and MasterKey({2: new}).unwrap(v2, rewrapped, "alice") == dek
    with pytest.raises(DecryptionError, match="version 1"):
        MasterKey({2: new}).unwrap(v1, wrapped, "alice")


@pytest.mark.parametrize("setting, why", [("", "no master key"), ("abc", "not base64"), (base64.b64encode(b"short").decode(), "32 bytes")])
def test_bad_master_key_settings_say_why(setting, why):
    with pytest.raises(ValueError, match=why):
        parse_master_keys(setting)


def test_sealed_contacts_open_only_with_their_key_and_row():
    cipher = BookCipher(new_data_key(), "alice")
    blob = cipher.seal("c1", {"name": "Hélène Dupont", "emails": ["helene@exemple.fr"]})
    assert b"Dupont" not in blob and b"helene" not in blob
    assert cipher.open("c1", blob)["name"] == "Hélène Dupont"
    with pytest.raises(DecryptionError):
        cipher.open("c2", blob)  # moved to another row
    with pytest.raises(DecryptionError):
        BookCipher(new_data_key(), "alice").open("c1", blob)  # another key (or a shredded one)
    tampered = blob[:-1] + bytes([blob[-1] ^ 1])
    with pytest.raises(DecryptionError):
        cipher.open("c1", tampered)


def test_search_tokens_match_prefixes_without_accents_and_differ_between_books():
    dek = new_data_key()
    cipher = BookCipher(dek, "alice")
    tokens = cipher.search_tokens("Hélène Dupont")
    assert set(cipher.query_tokens("hel")) <= tokens and set(cipher.query_tokens("DUP")) <= tokens
    assert not set(cipher.query_tokens("dupond")) <= tokens
    assert BookCipher(new_data_key(), "bob").search_tokens("Hélène Dupont").isdisjoint(tokens)


def test_blind_index_is_keyed_and_separates_kinds():
    a, b = BlindIndex(b"k" * 32), BlindIndex(b"j" * 32)
    assert a.email("x@y.fr") == a.email("x@y.fr") != b.email("x@y.fr")
    assert a.email("+33612345678") != a.phone("+33612345678")
    with pytest.raises(ValueError):
        BlindIndex(b"short")


def test_links_are_signed_per_purpose_and_expire():
    signer = LinkSigner(b"s" * 32)
    token = signer.sign("unsubscribe", {"c": "c1"})
    assert signer.verify("unsubscribe", token) == {"c": "c1"}
    with pytest.raises(InvalidLink):
        signer.verify("consent", token)
    with pytest.raises(InvalidLink):
        LinkSigner(b"t" * 32).verify("unsubscribe", token)
    body, mac = token.split(".")
    with pytest.raises(InvalidLink):
        signer.verify("unsubscribe", body[:-2] + "AA." + mac)
    expired = signer.sign("consent", {"c": "c1"}, ttl_seconds=-1)
    with pytest.raises(InvalidLink, match="expired"):
        signer.verify("consent", expired)
