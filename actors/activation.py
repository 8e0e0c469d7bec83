"""Actors started on demand: the first message to a name spawns it, the others wait for that.

Conversations (one per chat) and agent actors (one per signed-in agent) stop themselves when
idle (passivation) and are started again by the next message addressed to them. A message that
meets an actor stopping is never handled (a stopping actor fails what is left in its mailbox
with `ActorDead`), so `ask`/`tell` here look the actor up again and retry a few times.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import trio

from router import Actor, ActorDead, ActorRef, ActorSystem, Reply

log = logging.getLogger("actors")

M = TypeVar("M")
R = TypeVar("R")

# A message that keeps meeting its actor just as it stops is given up after this many tries.
DELIVERY_ATTEMPTS = 3


class Activation:
    """Find or start the actor of a name, one start at a time per name."""

    def __init__(self, actors: ActorSystem) -> None:
        self._actors = actors
        self._activating: dict[str, trio.Event] = {}

    async def ref(
        self,
        name: str,
        factory: Callable[[], Actor[M]],
        *,
        mailbox_size: int,
        on_give_up: Callable[[str, BaseException], float | None] | None = None,
    ) -> ActorRef[M]:
        """The actor of that name, started from `factory` if it is not running."""
        while True:
            found: ActorRef[Any] | None = self._actors.lookup(name)
            if found is not None:
                return found
            activating = self._activating.get(name)
            if activating is not None:
                await activating.wait()
                continue
            done = self._activating[name] = trio.Event()
            try:
                return await self._actors.spawn(
                    name, factory, mailbox_size=mailbox_size, on_give_up=on_give_up
                )
            finally:
                del self._activating[name]
                done.set()


async def ask_retrying(
    lookup: Callable[[], Awaitable[ActorRef[M]]], make: Callable[[Reply[R]], M]
) -> R:
    """Ask the actor `lookup()` finds (or starts), again if it stopped before handling it."""
    for attempt in range(DELIVERY_ATTEMPTS):
        ref = await lookup()
        try:
            return await ref.ask(make)
        except ActorDead:
            if attempt == DELIVERY_ATTEMPTS - 1:
                raise
    raise AssertionError("unreachable")


async def tell_retrying(lookup: Callable[[], Awaitable[ActorRef[M]]], message: M) -> None:
    """Tell the actor `lookup()` finds (or starts), again if it stopped before taking it."""
    for attempt in range(DELIVERY_ATTEMPTS):
        ref = await lookup()
        try:
            await ref.tell(message)
            return
        except ActorDead:
            if attempt == DELIVERY_ATTEMPTS - 1:
                raise


def log_give_up(name: str, error: BaseException) -> None:
    """An on-demand actor that keeps crashing stops alone (what it published stays); the next
    message to it starts it again."""
    log.error("gave up on %s after repeated crashes", name, exc_info=error)
