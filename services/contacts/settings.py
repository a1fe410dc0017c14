from datetime import date

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from shared.catalogue import CONTACTS
from shared.settings import ServiceSettings


class ContactsSettings(ServiceSettings):
    service = CONTACTS
    model_config = SettingsConfigDict(env_prefix="MAILLAGE_CONTACTS_", env_file=".env", extra="ignore")

    http_port: int = 8020
    database_url: str = "sqlite:///var/contacts.db"
    public_url: str = Field(default="http://127.0.0.1:8020",
                            description="how contacts reach this service (unsubscribe, consent links)")
    campaign_name: str = Field(default="la campagne", description="on whose behalf volunteers write")
    # Lets the campaign's onboarding invite volunteers; it opens no contact
    # data (staff never read a book).
    provisioning_token: SecretStr
    master_key: SecretStr = Field(
        description="base64 32-byte key(s) wrapping each volunteer's data key; "
        "'2:<new>,1:<old>' during a rotation"
    )
    address_index_key: SecretStr = Field(description="base64 key (≥ 32 bytes) for address hashes")
    link_key: SecretStr = Field(description="base64 key (≥ 32 bytes) signing unsubscribe/consent links")
    credentials_key: SecretStr = Field(
        description="base64 32-byte key sealing social credentials into dispatch jobs "
        "(the social dispatchers hold the same one)"
    )
    max_import_bytes: int = Field(default=50 * 1024 * 1024, gt=0)
    recipient_cap: int = Field(default=3, ge=1, description="messages one person may get per window")
    recipient_cap_days: int = Field(default=7, ge=1)
    invite_days: int = Field(default=14, ge=1, description="how long a volunteer invite link works")
    retention_until: date | None = Field(default=None, description="after this day, contact data is purged")
    cookie_secure: bool = Field(default=True, description="web app cookies only over HTTPS (false for a plain-http local run)")
    session_hours: int = Field(default=720, ge=1, description="how long a volunteer stays signed in to the web app")
