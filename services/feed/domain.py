"""Feed's rules, free of I/O: what a publishable message is, and how staff
aggregates are worded."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from shared.events import InterestName, Variants


class MessageDraft(BaseModel):
    """What staff send to publish a campaign message."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    title: str = Field(min_length=1, max_length=200)
    body: str = Field(min_length=1, max_length=50_000)
    interests: list[InterestName] = Field(
        default_factory=list,
        max_length=20,
        description="taxonomy words; empty means the message suits everyone",
    )
    variants: Variants

    def normalized_interests(self) -> tuple[str, ...]:
        return tuple(sorted(set(self.interests)))


class MessageStats(BaseModel):
    """Aggregates staff may see: counts, never who."""

    volunteers_suggested: int = 0
    relays: int = 0
    emails_queued: int = 0
    emails_delivered: int = 0
    emails_failed: int = 0
