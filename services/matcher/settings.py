import re
from datetime import timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, field_validator, model_validator
from pydantic_settings import SettingsConfigDict

from services.matcher.domain import Partition, Schedule
from shared.catalogue import MATCHER
from shared.settings import ServiceSettings


class MatcherSettings(ServiceSettings):
    service = MATCHER
    model_config = SettingsConfigDict(env_prefix="MAILLAGE_MATCHER_", env_file=".env", extra="ignore")

    http_port: int = 8030
    daily_cap: int = Field(default=5, ge=1, description="suggestions per volunteer per local day")
    quiet_start: int = Field(default=21, ge=0, le=23, description="local hour quiet hours start")
    quiet_end: int = Field(default=8, ge=0, le=23, description="local hour they end (equal to start: none)")
    timezone: str = Field(default="Europe/Paris", description="the campaign's time zone (days, quiet hours)")
    max_wait_hours: float = Field(default=48, gt=0, description="a waiting suggestion is dropped after this")
    release_seconds: float = Field(default=30, gt=0, description="how often waiting queues are checked")
    partition: int = Field(default=0, ge=0, description="this replica's partition of the volunteers")
    partitions: int = Field(default=1, ge=1, description="how many replicas split the volunteers")

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}") from exc
        return value

    @field_validator("partition", mode="before")
    @classmethod
    def _ordinal_of_pod_name(cls, value):
        # A StatefulSet gives each replica a stable name, matcher-0 … matcher-N:
        # MAILLAGE_MATCHER_PARTITION may be that name (from metadata.name).
        if isinstance(value, str) and (found := re.fullmatch(r".+-(\d+)", value.strip())):
            return int(found.group(1))
        return value

    @model_validator(mode="after")
    def _partition_exists(self) -> "MatcherSettings":
        Partition(self.partition, self.partitions)  # raises ValueError
        return self

    @property
    def schedule(self) -> Schedule:
        return Schedule(daily_cap=self.daily_cap, quiet_start=self.quiet_start, quiet_end=self.quiet_end,
                        timezone=self.timezone, max_wait=timedelta(hours=self.max_wait_hours))

    @property
    def owned(self) -> Partition:
        return Partition(self.partition, self.partitions)
