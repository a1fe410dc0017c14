from datetime import date

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import SettingsConfigDict

from shared.catalogue import CONTACTS
from shared.sealed import TransitKeys
from shared.settings import ServiceSettings
from shared.text import HeaderText


class ContactsSettings(ServiceSettings):
    service = CONTACTS
    model_config = SettingsConfigDict(env_prefix="MAILLAGE_CONTACTS_", env_file=".env", extra="ignore")

    http_port: int = 8020
    database_url: str = "sqlite:///var/contacts.db"
    public_url: str = Field(default="http://127.0.0.1:8020",
                            description="how contacts reach this service (unsubscribe, consent links)")
    # it reaches the From: of sign-in mail and every invitation's subject
    campaign_name: HeaderText = Field(default="la campagne", min_length=1, max_length=200,
                                      description="on whose behalf volunteers write")
    # Lets the campaign's onboarding invite volunteers; it opens no contact
    # data (staff never read a book).
    provisioning_token: SecretStr
    master_key: SecretStr = Field(
        description="base64 32-byte key(s) wrapping each volunteer's data key; "
        "'2:<new>,1:<old>' during a rotation"
    )
    address_index_key: SecretStr = Field(description="base64 key (≥ 32 bytes) for address hashes")
    link_key: SecretStr = Field(description="base64 key (≥ 32 bytes) signing unsubscribe/consent links")
    transit_keys: SecretStr = Field(
        description="email:<key>,mastodon:<key>,bluesky:<key>,x:<key>: a distinct base64 32-byte key per channel, "
        "sealing what each dispatch job carries about people; each dispatcher holds only its own channel's "
        "(MAILLAGE_DISPATCH_<CHANNEL>_TRANSIT_KEY)"
    )
    max_import_bytes: int = Field(default=50 * 1024 * 1024, gt=0)
    recipient_cap: int = Field(default=3, ge=1, description="messages one person may get per window")
    recipient_cap_days: int = Field(default=7, ge=1)
    invite_days: int = Field(default=14, ge=1, description="how long a volunteer invite link works")
    retention_until: date | None = Field(default=None, description="after this day, contact data is purged")
    cookie_secure: bool = Field(default=True, description="web app cookies only over HTTPS (false for a plain-http local run)")
    # Hours, not weeks: a session cookie copied off a device stops working
    # the same day even if nobody signs out.
    session_hours: int = Field(default=12, ge=1, le=24 * 7,
                               description="how long a volunteer stays signed in to the web app")
    sign_in_link_minutes: int = Field(default=30, ge=1, le=24 * 60,
                                      description="how long an emailed sign-in link works (once)")

    @field_validator("transit_keys")
    @classmethod
    def _one_key_per_channel(cls, value: SecretStr) -> SecretStr:
        TransitKeys.from_secret(value)  # at start, naming the channel, rather than at the first relay
        return value
