"""Sign-in throttling after the OWASP Authentication Cheat Sheet: growing delays, never a lock.

Failures are stored (they survive a restart and every process on the store sees them) under
three keys: the account and the client together, the client alone, and the account alone. A
key's first `free` failures within the window cost nothing; from then on the next try must wait
`delay`, doubled for each further failure up to `max_delay`, counted from the key's latest
failure. A try that comes sooner is answered 429 with Retry-After and checks no password.

The account's own count (every client's failures on it) delays only the clients that have
failed on it: a client with no failure is never delayed, so nobody can lock the owner out by
guessing from elsewhere. A correct password forgives the failures of its account and client.
`unlock` (the `switchboard unlock` command) forgets an account's failures from every client.

Parallel tries: a failure is stored only after its password check (argon2, tens of
milliseconds), so tries sent at once would all pass a look at the stored counts. Each try
therefore holds a place for its (account, client) and client keys while it checks: a key lets
as many checks run at once as it has free failures left (one once delays have begun), and a try
beyond that waits for one to finish and looks again. Parallel sign-ins that succeed (agents
behind one office address) are slowed, never refused.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import trio

from api._auth import Busy
from api._config import Settings
from api._errors import ApiError
from store import AccountStore, utcnow

# How long a try waits for a place among the checks running for its keys before it is told the
# server is busy (503): only a client with many sign-ins in flight at once ever waits.
PLACE_SECONDS = 30.0


class Throttled(Exception):
    """Too soon after the failures counted for a key: retry after `retry_after` seconds."""

    def __init__(self, retry_after: float, key: str) -> None:
        super().__init__(f"{key}: retry after {retry_after:.1f} s")
        self.retry_after = retry_after
        self.key = key


@dataclass(frozen=True, slots=True)
class Rule:
    """Free failures, then delays that double from `delay` up to `max_delay`."""

    free: int
    delay: float
    max_delay: float

    def step(self, failures: int) -> float:
        """The wait the latest of `failures` imposes (0 while they are free)."""
        if failures < self.free:
            return 0.0
        return min(self.max_delay, self.delay * 2.0 ** min(failures - self.free, 64))

    def wait(self, failures: int, latest: datetime | None, now: datetime) -> float:
        """Seconds until the next try may be checked."""
        if latest is None:
            return 0.0
        return max(0.0, self.step(failures) - (now - latest).total_seconds())

    def at_once(self, failures: int) -> int:
        """Checks that may run at once: the free failures left, else one."""
        return max(1, self.free - failures)


@dataclass(frozen=True, slots=True)
class Keys:
    pair: str
    client: str
    account: str
    unlocked: str

    @classmethod
    def of(cls, account: str, client: str) -> Keys:
        account = account.lower()
        return cls(
            pair=f"signin:pair:{account}|{client}",
            client=f"signin:client:{client}",
            account=f"signin:account:{account}",
            unlocked=f"signin:unlocked:{account}",
        )


@dataclass(frozen=True, slots=True)
class Tally:
    failures: int
    latest: datetime | None


@dataclass(frozen=True, slots=True)
class Tallies:
    pair: Tally
    client: Tally
    account: Tally


@dataclass(frozen=True, slots=True)
class Rules:
    pair: Rule
    client: Rule
    account: Rule
    window: timedelta

    @classmethod
    def of(cls, settings: Settings) -> Rules:
        delay, cap = settings.login_delay_seconds, settings.login_max_delay_seconds
        return cls(
            pair=Rule(settings.login_free_failures, delay, cap),
            client=Rule(settings.login_client_free_failures, delay, cap),
            account=Rule(settings.login_account_free_failures, delay, cap),
            window=timedelta(seconds=settings.login_window_seconds),
        )

    def wait(self, keys: Keys, tallies: Tallies, now: datetime) -> tuple[float, str]:
        """The longest wait any key imposes, and that key."""
        waits = [
            (self.pair.wait(tallies.pair.failures, tallies.pair.latest, now), keys.pair),
            (self.client.wait(tallies.client.failures, tallies.client.latest, now), keys.client),
        ]
        if tallies.pair.failures:  # the account's count slows only clients failing on it
            account = self.account.wait(tallies.account.failures, tallies.account.latest, now)
            waits.append((account, keys.account))
        return max(waits)


class SignInThrottle:
    """The throttle of one process: its stored counts, and the checks it is running now."""

    def __init__(
        self, store: AccountStore, settings: Settings, *, clock: Callable[[], datetime] = utcnow
    ) -> None:
        self._store = store
        self._rules = Rules.of(settings)
        self.clock = clock  # tests set their own
        self._checking: dict[str, int] = {}  # key -> checks running now
        self._finished = 0  # checks finished so far: a count read before it moved is stale
        self._changed = trio.Event()

    async def check(self, account: str, client: str, verify: Callable[[], Awaitable[bool]]) -> bool:
        """Run `verify` (the password check) for `account` from `client` once the throttle
        allows, and count its result. Raises `Throttled` (too soon) or `Busy` (no place in
        time)."""
        keys = Keys.of(account, client)
        places = await self._place(keys)
        try:
            right = await verify()
            if right:
                await self._store.clear_login_failures(keys.pair)
            else:
                now = self.clock()
                async with trio.open_nursery() as nursery:
                    for key in (keys.pair, keys.client, keys.account):
                        nursery.start_soon(self._store.add_login_failure, key, now)
            return right
        finally:
            for key in places:
                self._checking[key] -= 1
                if not self._checking[key]:
                    del self._checking[key]
            self._finished += 1
            self._changed.set()
            self._changed = trio.Event()

    async def _place(self, keys: Keys) -> tuple[str, ...]:
        with trio.move_on_after(PLACE_SECONDS):
            while True:
                finished, changed = self._finished, self._changed
                tallies = await self._tallies(keys)
                if finished != self._finished:
                    continue  # a check ended meanwhile: its failure may be missing here
                wait, key = self._rules.wait(keys, tallies, self.clock())
                if wait > 0:
                    raise Throttled(wait, key)
                allowed = {
                    keys.pair: self._rules.pair.at_once(tallies.pair.failures),
                    keys.client: self._rules.client.at_once(tallies.client.failures),
                }
                if all(self._checking.get(key, 0) < n for key, n in allowed.items()):
                    for key in allowed:
                        self._checking[key] = self._checking.get(key, 0) + 1
                    return tuple(allowed)
                await changed.wait()
        raise Busy("no place to check a password within the sign-in throttle's wait")

    async def _tallies(self, keys: Keys) -> Tallies:
        store = self._store
        window_start = self.clock() - self._rules.window
        _, unlocked = await store.login_failures(keys.unlocked, window_start)
        since = window_start if unlocked is None else max(window_start, unlocked)
        return Tallies(
            pair=Tally(*await store.login_failures(keys.pair, since)),
            client=Tally(*await store.login_failures(keys.client, window_start)),
            account=Tally(*await store.login_failures(keys.account, since)),
        )


async def unlock(store: AccountStore, account: str) -> None:
    """Forget `account`'s sign-in failures from every client (the clients' own counts stay):
    failures before this moment no longer count for it."""
    keys = Keys.of(account, "")
    await store.add_login_failure(keys.unlocked, utcnow())
    await store.clear_login_failures(keys.account)


def too_many_sign_ins(throttled: Throttled) -> ApiError:
    """The same answer for every key, so that it tells nothing about which accounts exist."""
    seconds = max(1, math.ceil(throttled.retry_after))
    return ApiError(
        429,
        "too_many_attempts",
        f"too many failed sign-ins; try again in {seconds} s",
        retry_after=seconds,
    )
