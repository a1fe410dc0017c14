from pydantic import EmailStr, Field, SecretStr
from pydantic_settings import SettingsConfigDict

from shared.catalogue import DISPATCH_EMAIL
from shared.settings import ServiceSettings


class EmailDispatchSettings(ServiceSettings):
    service = DISPATCH_EMAIL
    model_config = SettingsConfigDict(
        env_prefix="MAILLAGE_DISPATCH_EMAIL_", env_file=".env", extra="ignore"
    )

    http_port: int = 8040
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 2525
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_starttls: bool = False
    smtp_tls: bool = False
    smtp_timeout: float = Field(default=30.0, gt=0)
    from_address: EmailStr = Field(description="the campaign's sending address")
    list_id: str = Field(default="relais.campagne.example", description="List-Id of the campaign's mail")
    max_deliver: int = Field(default=8, ge=1, description="attempts before a job is failed")
