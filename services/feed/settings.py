from pydantic import SecretStr
from pydantic_settings import SettingsConfigDict

from shared.catalogue import FEED
from shared.settings import ServiceSettings


class FeedSettings(ServiceSettings):
    service = FEED
    model_config = SettingsConfigDict(env_prefix="MAILLAGE_FEED_", env_file=".env", extra="ignore")

    http_port: int = 8010
    database_url: str = "sqlite:///var/feed.db"
    staff_token: SecretStr  # the bootstrap staff token; staff accounts come with roles later
