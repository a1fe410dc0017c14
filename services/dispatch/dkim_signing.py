"""DKIM signatures (RFC 6376) with dkimpy, when the campaign configured a key.

The public half is published by the campaign at
``<selector>._domainkey.<domain>``; receivers check it, so mail From: the
campaign's domain under a volunteer's name is not taken for spoofing."""

from __future__ import annotations

import dkim

# What a forwarder or list must not change without breaking the signature.
SIGNED_HEADERS = (b"from", b"reply-to", b"to", b"subject", b"date", b"message-id",
                  b"list-id", b"list-unsubscribe", b"list-unsubscribe-post",
                  b"mime-version", b"content-type")


class DkimSigner:
    def __init__(self, selector: str, domain: str, private_key_pem: bytes) -> None:
        if b"PRIVATE KEY" not in private_key_pem:
            raise ValueError("the DKIM key must be a PEM private key")
        self.selector = selector.encode()
        self.domain = domain.encode()
        self.key = private_key_pem

    def sign(self, message: bytes) -> bytes:
        """The message with its ``DKIM-Signature:`` header first."""
        signature = dkim.sign(
            message, self.selector, self.domain, self.key,
            canonicalize=(b"relaxed", b"relaxed"), include_headers=list(SIGNED_HEADERS),
        )
        return signature + message
