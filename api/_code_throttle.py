"""Code requests, code tries and reports: a cap per key within a window, stored beside the
sign-in throttle's counts (under keys of their own), so a restart forgets nothing and every
process on the store sees them.

A key whose latest entry closed a window of `cap` entries (the window that ends at it holds
`cap`) is shut until a window has passed since that entry; otherwise it takes one more. No
window ever holds more than `cap` entries, and a refusal can say exactly when to come back
(429 with Retry-After): a refused request adds nothing, so nothing changes the answer before
then. (A plain sliding cap would need each key's oldest entries to say when it reopens; the
stored counts give a count and the latest entry.)
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import datetime, timedelta

import trio

from api._errors import ApiError
from store import AccountStore, utcnow
from telemetry import limit_hit


class CodeThrottle:
    def __init__(
        self, store: AccountStore, window_seconds: int, *, clock: Callable[[], datetime] = utcnow
    ) -> None:
        self._store = store
        self._window = timedelta(seconds=window_seconds)
        self.clock = clock  # tests set their own

    async def check(self, keys: tuple[str, ...], cap: int, what: str) -> None:
        """429 `too_many_attempts` when any of `keys` is shut (`what` names the entries)."""
        now = self.clock()
        wait = 0.0
        for key in keys:
            wait = max(wait, await self._wait(key, cap, now))
        if wait > 0:
            limit_hit("code_throttle", what=what)
            # Minutes in the message (alike for known and unknown addresses, so it tells
            # nothing), exact seconds in Retry-After.
            raise ApiError(
                429,
                "too_many_attempts",
                f"too many {what}; try again in {math.ceil(wait / 60)} minutes",
                retry_after=wait,
            )

    async def _wait(self, key: str, cap: int, now: datetime) -> float:
        count, latest = await self._store.login_failures(key, now - self._window)
        if latest is None or now - latest >= self._window:
            return 0.0
        if count < cap:  # the window that ends at the latest entry may still hold `cap`
            count, _ = await self._store.login_failures(key, latest - self._window)
        return (latest + self._window - now).total_seconds() if count >= cap else 0.0

    async def record(self, keys: tuple[str, ...]) -> None:
        """Count one entry under each of `keys`."""
        now = self.clock()
        async with trio.open_nursery() as nursery:
            for key in keys:
                nursery.start_soon(self._store.add_login_failure, key, now)
