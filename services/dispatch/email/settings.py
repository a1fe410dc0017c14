"""Settings of the email dispatcher (``MAILLAGE_DISPATCH_EMAIL_``): the
campaign's relay, the sent ledger, DKIM, rate limits, the transit key and
the bounce endpoint's token."""

from pathlib import Path

from pydantic import EmailStr, Field, SecretStr, model_validator
from pydantic_settings import SettingsConfigDict

from services.dispatch.settings import DispatchSettings
from shared.catalogue import DISPATCH_EMAIL
from shared.text import HeaderText


class EmailDispatchSettings(DispatchSettings):
    service = DISPATCH_EMAIL
    model_config = SettingsConfigDict(
        env_prefix="MAILLAGE_DISPATCH_EMAIL_", env_file=".env", extra="ignore"
    )

    http_port: int = 8040
    # -- the campaign's SMTP relay
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 2525
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_starttls: bool = False
    smtp_tls: bool = False
    smtp_timeout: float = Field(default=30.0, gt=0)
    smtp_pool_size: int = Field(default=4, ge=1, le=64, description="persistent SMTP connections per replica")
    from_address: EmailStr = Field(description="the campaign's sending address")
    list_id: HeaderText = Field(default="relais.campagne.example", description="List-Id of the campaign's mail")
    max_deliver: int = Field(default=8, ge=1, description="SMTP attempts before a job is dead-lettered")
    ack_wait: float = Field(default=30.0, gt=0, description="seconds before an unacked job is redelivered")
    # -- the sent ledger: a job already sent is never sent again
    ledger_url: str = Field(
        default="sqlite:///var/dispatch-email-ledger.db",
        description="sqlite:///path (one replica) or postgresql://… (shared by every replica)",
    )
    ledger_retention_days: int = Field(default=30, ge=8, description="jobs live 7 days; bounces come later")
    # -- DKIM (signing is on when a key is given)
    dkim_selector: str | None = None
    dkim_domain: str | None = Field(default=None, description="d= of the signature; default: the From domain")
    dkim_key_path: Path | None = None
    dkim_private_key: SecretStr | None = Field(default=None, description="PEM, e.g. from a Secret")
    # -- rate limits (0: none)
    rate_per_second: float = Field(default=50.0, ge=0, description="global, per replica")
    volunteer_rate_per_hour: float = Field(default=600.0, ge=0, description="per volunteer, across replicas' ledger")
    # -- what jobs carry about people
    transit_key: SecretStr = Field(
        description="base64 32-byte key opening email jobs (recipient, text, note, the volunteer's own SMTP "
        "account): the email key of MAILLAGE_CONTACTS_TRANSIT_KEYS, and no other channel's; "
        "'<new>,<old>' while jobs sealed before a rotation drain")
    # -- the bounce endpoint
    bounce_token: SecretStr | None = Field(
        default=None, description="bearer token of POST /bounces; unset: the endpoint refuses everyone"
    )

    @model_validator(mode="after")
    def _dkim_complete(self) -> "EmailDispatchSettings":
        if (self.dkim_key_path or self.dkim_private_key) and not self.dkim_selector:
            raise ValueError("dkim_selector is required when a DKIM key is configured")
        return self

    def dkim_key(self) -> bytes | None:
        if self.dkim_private_key is not None:
            return self.dkim_private_key.get_secret_value().encode()
        if self.dkim_key_path is not None:
            return self.dkim_key_path.read_bytes()
        return None
