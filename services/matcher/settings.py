from pydantic_settings import SettingsConfigDict

from shared.catalogue import MATCHER
from shared.settings import ServiceSettings


class MatcherSettings(ServiceSettings):
    service = MATCHER
    model_config = SettingsConfigDict(env_prefix="MAILLAGE_MATCHER_", env_file=".env", extra="ignore")

    http_port: int = 8030
