"""DKIM signatures (RFC 6376) with dkimpy, when the campaign configured a key.

The public half is published by the campaign at
``<selector>._domainkey.<domain>``; receivers check it, so mail From: the
campaign's domain under a volunteer's name is not taken for spoofing."""

from __future__ import annotations

import re

import dkim

from services.dispatch.email.domain.message import UnsafeHeader

# What a forwarder or list must not change without breaking the signature.
SIGNED_HEADERS = (b"from", b"reply-to", b"to", b"subject", b"date", b"message-id",
                  b"list-id", b"list-unsubscribe", b"list-unsubscribe-post",
                  b"mime-version", b"content-type")

# A header block as RFC 5322 has it: "Name: value" lines and their folded
# continuations (a space or tab first), each ending in CRLF, then a blank
# line. A bare CR or LF, or a line that is neither, is what an injection
# leaves behind.
_HEAD = re.compile(rb"(?:[!-9;-~]+:[^\r\n]*\r\n(?:[ \t][^\r\n]*\r\n)*)+\r\n")
_NAME = re.compile(rb"^([!-9;-~]+):", re.MULTILINE)


class DkimSigner:
    def __init__(self, selector: str, domain: str, private_key_pem: bytes) -> None:
        if b"PRIVATE KEY" not in private_key_pem:
            raise ValueError("the DKIM key must be a PEM private key")
        self.selector = selector.encode()
        self.domain = domain.encode()
        self.key = private_key_pem

    def sign(self, message: bytes) -> bytes:
        """The message with its ``DKIM-Signature:`` header first. The
        campaign's signature vouches for every header it covers: a message
        whose header block is not well formed is refused (``UnsafeHeader``),
        never signed, whoever wrote it."""
        head = _HEAD.match(message)
        if head is None:
            raise UnsafeHeader("DKIM-Signature")
        # a signed header twice (a second From:, Content-Type:...) is the
        # other shape of an injection: receivers may show the unsigned one
        names = [name.lower() for name in _NAME.findall(head.group())]
        if any(names.count(name) > 1 for name in SIGNED_HEADERS):
            raise UnsafeHeader("DKIM-Signature")
        signature = dkim.sign(
            message, self.selector, self.domain, self.key,
            canonicalize=(b"relaxed", b"relaxed"), include_headers=list(SIGNED_HEADERS),
        )
        return signature + message
