"""Delivery status notifications as an MTA writes them, for the bounce tests."""

from __future__ import annotations

from email.message import EmailMessage


def dsn(original: EmailMessage | None, *recipients: tuple[str, str, str], headers_only: bool = False) -> bytes:
    """A DSN as an MTA (Postfix) writes it: ``(address, action, status)`` per recipient."""
    blocks = "".join(
        f"Final-Recipient: rfc822; {address}\r\nOriginal-Recipient: rfc822;{address}\r\n"
        f"Action: {action}\r\nStatus: {code}\r\n"
        f"Diagnostic-Code: smtp; 550 5.1.1 <{address}>: Recipient address rejected\r\n\r\n"
        for address, action, code in recipients)
    returned = b""
    if original is not None:
        kind = "text/rfc822-headers" if headers_only else "message/rfc822"
        body = original.as_bytes()
        body = body.split(b"\n\n", 1)[0] + b"\n" if headers_only else body
        returned = f"--B0UND\r\nContent-Type: {kind}\r\n\r\n".encode() + body + b"\r\n"
    return (
        "From: MAILER-DAEMON@mx.exemple.fr (Mail Delivery System)\r\n"
        "Subject: Undelivered Mail Returned to Sender\r\nMIME-Version: 1.0\r\n"
        "Content-Type: multipart/report; report-type=delivery-status; boundary=\"B0UND\"\r\n\r\n"
        "--B0UND\r\nContent-Type: text/plain\r\n\r\nThis is the mail system at host mx.exemple.fr.\r\n\r\n"
        "--B0UND\r\nContent-Type: message/delivery-status\r\n\r\n"
        "Reporting-MTA: dns; mx.exemple.fr\r\nArrival-Date: Tue, 24 Nov 2026 10:00:00 +0100\r\n\r\n"
        f"{blocks}"
    ).encode() + returned + b"--B0UND--\r\n"
