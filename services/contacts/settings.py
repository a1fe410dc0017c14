from pydantic import SecretStr
from pydantic_settings import SettingsConfigDict

from shared.catalogue import CONTACTS
from shared.settings import ServiceSettings


class ContactsSettings(ServiceSettings):
    service = CONTACTS
    model_config = SettingsConfigDict(env_prefix="MAILLAGE_CONTACTS_", env_file=".env", extra="ignore")

    http_port: int = 8020
    database_url: str = "sqlite:///var/contacts.db"
    # Lets the campaign's onboarding create volunteer accounts; it opens no
    # contact data (staff never read a book).
    provisioning_token: SecretStr
