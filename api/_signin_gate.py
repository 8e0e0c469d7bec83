"""Sign-ins checked at once, per throttle key, so that parallel guesses cannot outrun the count.

A failed sign-in is stored only after its password check (argon2, tens of milliseconds), so
guesses sent at once would all pass a check of the stored count before any is stored. Each
sign-in therefore takes a ticket for its keys (the account, the client address) and may check
its password only while the stored failures plus the sign-ins ahead of it stay under the limit:
those ahead may all fail. Otherwise it waits for one of them to finish and looks again, so
parallel sign-ins that succeed (agents behind one office address) are slowed, never refused.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import trio


@dataclass(frozen=True, slots=True)
class Ticket:
    number: int
    keys: tuple[str, ...]
    ahead: dict[str, int]  # per key, the sign-ins being checked that came before this one
    changed: trio.Event  # set when one of those finishes (or any other does)


class SignInGate:
    """Tickets in arrival order; one process serves every sign-in, so this sees them all."""

    def __init__(self) -> None:
        self._next = 0
        self._active: dict[str, list[int]] = {}
        self._changed = trio.Event()

    def take(self, keys: Iterable[str]) -> Ticket:
        """A place behind every sign-in now being checked for any of `keys` (never awaits)."""
        number, keys = self._next, tuple(keys)
        self._next += 1
        ahead = {}
        for key in keys:
            queue = self._active.setdefault(key, [])
            ahead[key] = len(queue)
            queue.append(number)
        return Ticket(number, keys, ahead, self._changed)

    def give_back(self, ticket: Ticket, *, finished: bool) -> None:
        """Leave the line: `finished` when the check is over (those behind look again), not
        when stepping out to wait."""
        for key in ticket.keys:
            queue = self._active[key]
            queue.remove(ticket.number)
            if not queue:
                del self._active[key]
        if finished:
            self._changed.set()
            self._changed = trio.Event()
