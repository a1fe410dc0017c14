"""Settings common to every service, read from ``MAILLAGE_*`` variables or
``.env``. Each service adds its own ``MAILLAGE_<SERVICE>_*`` settings by
subclassing ``ServiceSettings``."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.egress import parse_allow


class CommonSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MAILLAGE_", env_file=".env", extra="ignore")

    environment: Literal["dev", "production"] = "dev"
    nats_url: str = "nats://127.0.0.1:4222"
    # Each service is its own NATS user with its own subject permissions
    # (deploy/nats/auth.conf, generated from the catalogue).
    nats_user: str | None = Field(default=None, description="default: the service's name, when a password is set")
    nats_password: SecretStr | None = None
    log_level: str = "INFO"
    log_format: Literal["console", "json"] | None = Field(
        default=None, description="defaults to json in production, console in dev"
    )
    stream_replicas: int = Field(default=1, ge=1, le=5)
    # shared.egress: host:port pairs exempt from the public-address rule, for
    # local fakes only (make run, the tests); empty in production
    egress_allow: str = Field(default="", description="MAILLAGE_EGRESS_ALLOW: host:port,… reached though not public")

    @field_validator("egress_allow")
    @classmethod
    def _host_port_pairs(cls, value: str) -> str:
        parse_allow(value)  # a malformed list stops the start, not the first connection
        return value

    @property
    def resolved_log_format(self) -> str:
        return self.log_format or ("json" if self.environment == "production" else "console")


class ServiceSettings(BaseSettings):
    """Base of each service's own settings; subclasses set ``service`` and
    the env prefix (``MAILLAGE_FEED_`` …)."""

    service: ClassVar[str]
    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    http_host: str = "127.0.0.1"
    http_port: int = Field(ge=0, le=65535)
    # Refused with a 413 while the body streams in (shared/web/limits.py).
    max_public_request_bytes: int = Field(default=64 * 1024, gt=0,
                                          description="request body limit for a caller without a credential")
    max_request_bytes: int = Field(default=1024 * 1024, gt=0,
                                   description="request body limit for a signed-in caller (uploads have their own)")
    common: CommonSettings = Field(default_factory=CommonSettings, exclude=True)
