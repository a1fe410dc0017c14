from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from shared.catalogue import FEED
from shared.settings import ServiceSettings


class FeedSettings(ServiceSettings):
    service = FEED
    model_config = SettingsConfigDict(env_prefix="MAILLAGE_FEED_", env_file=".env", extra="ignore")

    http_port: int = 8010
    database_url: str = "sqlite:///var/feed.db"
    # The bootstrap token: an admin that exists before any account does. It
    # creates the staff accounts (each with its own token and role).
    staff_token: SecretStr
    limit_x: int = Field(default=280, ge=1, description="X: weighted characters of a short post")
    limit_bluesky: int = Field(default=300, ge=1, description="Bluesky: graphemes of a short post")
    limit_mastodon: int = Field(default=500, ge=1, description="Mastodon: characters of a short post")
    k_anonymity: int = Field(default=5, ge=1, description="staff figures: a cell needs k volunteers, and k more to move")
    reach_settle_seconds: float = Field(default=1.0, ge=0, le=60,
                                        description="staff figures count facts recorded at least this long ago")
    reach_refresh_seconds: float = Field(default=30.0, gt=0, le=3600,
                                         description="how often live messages' figures are taken (the reach timeline)")
    scheduler_seconds: float = Field(default=1.0, gt=0, le=60,
                                     description="how often due embargoes and expiries are looked for")
    max_request_bytes: int = Field(default=1024 * 1024, gt=0, description="larger requests get a 413")
    cookie_secure: bool = Field(default=True, description="console cookies only over HTTPS (false for a plain-http local run)")
    session_hours: int = Field(default=12, ge=1, description="how long a staff member stays signed in to the console")
