"""Token buckets by key (a client address, a principal), for REST requests that cost the
server: registrations per address, message sends per principal.

A bucket holds `burst` tokens and refills at `rate` a second on the trio clock; a request takes
one or is told how long until there is one (its Retry-After). A bucket that would be full again
is the same as none, so those are forgotten as the table grows: it holds the keys active within
one refill, not every key ever seen.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import trio

from api._config import Settings

# How many keys the table holds before full buckets are forgotten.
PRUNE_AT = 10_000


class KeyedBuckets:
    def __init__(
        self, rate: float, burst: int, *, clock: Callable[[], float] = trio.current_time
    ) -> None:
        self._rate = rate
        self._burst = float(burst)
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, at)

    def take(self, key: str) -> float:
        """Take a token for `key`: 0.0 when taken, else the seconds until one is there."""
        now = self._clock()
        tokens, at = self._buckets.get(key, (self._burst, now))
        tokens = min(self._burst, tokens + (now - at) * self._rate)
        if tokens < 1.0:
            self._buckets[key] = (tokens, now)
            return (1.0 - tokens) / self._rate
        if key not in self._buckets and len(self._buckets) >= PRUNE_AT:
            self._forget_full(now)
        self._buckets[key] = (tokens - 1.0, now)
        return 0.0

    def _forget_full(self, now: float) -> None:
        self._buckets = {
            key: (tokens, at)
            for key, (tokens, at) in self._buckets.items()
            if tokens + (now - at) * self._rate < self._burst
        }


@dataclass(frozen=True, slots=True)
class Throttles:
    """The server's keyed buckets."""

    registrations: KeyedBuckets  # by client address
    # By principal: REST message sends pass the bucket a websocket's frames pass (same rate and
    # burst), so REST is no way around it.
    sends: KeyedBuckets

    @classmethod
    def of(cls, settings: Settings) -> Throttles:
        return cls(
            registrations=KeyedBuckets(
                settings.register_per_address / settings.register_window_seconds,
                settings.register_per_address,
            ),
            sends=KeyedBuckets(settings.ws_max_frames_per_second, settings.ws_frame_burst),
        )
