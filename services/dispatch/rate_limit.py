"""Sending rates: token buckets and the server's own "slow down". Pure:
time is passed in, nothing sleeps here."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class TokenBucket:
    """``rate`` tokens a second, at most ``burst`` saved up. ``reserve``
    always spends one, going into debt if need be, and says how long until
    the token it spent exists: callers queue in order, none starves, and
    a herd of waiters cannot all wake to the same single token."""

    rate: float
    burst: float
    tokens: float
    updated: float

    @classmethod
    def empty(cls, rate: float, burst: float, now: float) -> "TokenBucket":
        # A replica starts with nothing saved: a crash loop cannot burst.
        return cls(rate, burst, 0.0, now)

    @classmethod
    def after(cls, rate: float, burst: float, spent: int, now: float) -> "TokenBucket":
        """The bucket as it stands after ``spent`` sends during the last
        ``burst / rate`` seconds (read back from the ledger on start)."""
        return cls(rate, burst, max(0.0, burst - spent), now)

    def refill(self, now: float) -> None:
        if now > self.updated:
            self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
            self.updated = now

    def reserve(self, now: float) -> float:
        """Spend a token; the seconds until it is due (0: now)."""
        self.refill(now)
        self.tokens -= 1.0
        return 0.0 if self.tokens >= 0 else -self.tokens / self.rate


@dataclass
class Throttle:
    """Adaptive pause between sends, raised when the server answers 421/451
    and relaxed as sends succeed again (multiplicative up, gradual down)."""

    pause: float = 0.0
    floor: float = 0.05
    ceiling: float = 30.0
    relax: float = 0.9

    def slow_down(self) -> None:
        self.pause = min(self.ceiling, max(self.floor, self.pause * 2))

    def succeeded(self) -> None:
        self.pause = self.pause * self.relax
        if self.pause < self.floor / 4:
            self.pause = 0.0
