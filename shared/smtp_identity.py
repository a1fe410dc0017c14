"""A volunteer's own SMTP account, as both ends see it: contacts takes it
from the volunteer (and seals it at rest, then into each email job),
dispatch-email opens it to send. One model, so the two ends cannot
disagree on a field or a rule.

The host is checked here for its shape only; where it may lead (public
addresses only, TLS unless allow-listed) is ``shared.egress``, applied by
contacts at input and by dispatch-email at every connection."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, EmailStr, Field, SecretStr, ValidationInfo, field_validator

from shared.egress import canonical_host

LOOPBACK = frozenset({"127.0.0.1", "::1", "localhost"})


class SmtpIdentity(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    # a host name or an address, never a URL: "smtp://…" would only fail later, at the first relay
    host: str = Field(min_length=1, max_length=253, pattern=r"^[A-Za-z0-9._:-]+$",
                      description="your provider's SMTP server, e.g. smtp.example.org")
    port: int = Field(ge=1, le=65535, description="587 with starttls, 465 with tls")
    security: Literal["starttls", "tls", "none"] = Field(
        description="none only to this machine's own server: the password goes over it")
    username: str = Field(min_length=1, max_length=320, description="usually your address")
    password: SecretStr = Field(min_length=1, max_length=1000, repr=False,
                                description="an app password if your provider has them")
    from_address: EmailStr = Field(description="your own address: your server refuses any other")

    @field_validator("host")
    @classmethod
    def _one_spelling(cls, value: str) -> str:
        # 2130706433 or 0x7f.1 would be read as 127.0.0.1 by a resolver: only a
        # name or a standard address is taken, stored as it will be connected to
        return canonical_host(value)

    @field_validator("security")
    @classmethod
    def _never_in_clear_over_a_network(cls, value: str, info: ValidationInfo) -> str:
        # a field validator, not a model one: the 422 names "security"
        if value == "none" and info.data.get("host") not in LOOPBACK:
            raise ValueError("none is for a server on this machine only: choose starttls or tls")
        return value

    def transit(self) -> dict[str, str | int]:
        """The account in clear, exactly these fields: for sealing into a job, never for a response."""
        return {name: value.get_secret_value() if isinstance(value, SecretStr) else
                (value if isinstance(value, int) else str(value))
                for name, value in self if name in SmtpIdentity.model_fields}
