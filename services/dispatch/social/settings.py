"""Settings of the social dispatchers: one class per network, each its own
``MAILLAGE_DISPATCH_<NETWORK>_`` prefix, as each is its own process."""

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from services.dispatch.settings import DispatchSettings
from shared.catalogue import DISPATCH_BLUESKY, DISPATCH_MASTODON, DISPATCH_X


class SocialDispatchSettings(DispatchSettings):
    transit_key: SecretStr = Field(
        description="base64 32-byte key opening the credentials contacts seals into this network's jobs: "
        "this network's key of MAILLAGE_CONTACTS_TRANSIT_KEYS, and no other channel's; "
        "'<new>,<old>' while jobs sealed before a rotation drain"
    )
    # A 429 or a paused window comes back as a redelivery: allow many, a
    # rate-limited job is late, not lost.
    max_deliver: int = Field(default=20, ge=1, description="attempts before a job is failed")
    rate_reserve: int = Field(default=1, ge=0, description="pause an account when its window has this many requests left")
    http_timeout: float = Field(default=20.0, gt=0)



class MastodonDispatchSettings(SocialDispatchSettings):
    service = DISPATCH_MASTODON
    model_config = SettingsConfigDict(env_prefix="MAILLAGE_DISPATCH_MASTODON_", env_file=".env", extra="ignore")

    http_port: int = 8041
    default_max_characters: int = Field(default=500, ge=1, description="when an instance does not say its limit")
    instance_cache_seconds: float = Field(default=3600.0, ge=0, description="how long an instance's limit is kept")


class BlueskyDispatchSettings(SocialDispatchSettings):
    service = DISPATCH_BLUESKY
    model_config = SettingsConfigDict(env_prefix="MAILLAGE_DISPATCH_BLUESKY_", env_file=".env", extra="ignore")

    http_port: int = 8042
    service_url: str = Field(default="https://bsky.social", description="PDS for accounts that name none")


class XDispatchSettings(SocialDispatchSettings):
    service = DISPATCH_X
    model_config = SettingsConfigDict(env_prefix="MAILLAGE_DISPATCH_X_", env_file=".env", extra="ignore")

    http_port: int = 8043
    api_url: str = Field(default="https://api.x.com", description="X API v2 base URL")
