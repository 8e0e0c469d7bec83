"""A counter actor the router tests drive, with messages that make it block, crash, refuse, defer
a reply or schedule timers, and a dict-backed store that outlives its restarts."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import assert_never

import trio

from router import Actor, ActorRef, Refused, Reply, Timer


class Broken(Exception):
    """The crash the tests ask for."""


class StartFailed(Exception):
    """What on_start raises while `CounterStore.failing_starts` is positive."""


@dataclass
class CounterStore:
    """State that survives restarts, and a record of what the actors did."""

    saved: dict[str, int] = field(default_factory=dict)
    failing_starts: int = 0
    start_seconds: float = 0.0
    starts: int = 0
    stopped: list[str] = field(default_factory=list)
    stop_gate: trio.Event | None = None
    ticks: list[tuple[str, float]] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Add:
    """Change the in-memory value only; `Save` persists it."""

    amount: int


@dataclass(frozen=True, slots=True)
class Save:
    pass


@dataclass(frozen=True, slots=True)
class Get:
    reply: Reply[int]


@dataclass(frozen=True, slots=True)
class Crash:
    reply: Reply[int] | None = None


@dataclass(frozen=True, slots=True)
class ReplyThenCrash:
    reply: Reply[int]


@dataclass(frozen=True, slots=True)
class Refuse:
    reply: Reply[int] | None = None


@dataclass(frozen=True, slots=True)
class Hold:
    """Keep the actor busy until `release` is set; then answer with the value, if asked."""

    entered: trio.Event
    release: trio.Event
    reply: Reply[int] | None = None


@dataclass(frozen=True, slots=True)
class Park:
    """Keep the reply slot; a later `Release` answers it."""

    reply: Reply[int]


@dataclass(frozen=True, slots=True)
class Release:
    value: int


@dataclass(frozen=True, slots=True)
class Schedule:
    seconds: float
    message: CounterMessage
    reply: Reply[Timer]


@dataclass(frozen=True, slots=True)
class Tick:
    """Recorded in the store with the time it was handled."""

    label: str


@dataclass(frozen=True, slots=True)
class Passivate:
    pass


CounterMessage = (
    Add
    | Save
    | Get
    | Crash
    | ReplyThenCrash
    | Refuse
    | Hold
    | Park
    | Release
    | Schedule
    | Tick
    | Passivate
)


class Counter(Actor[CounterMessage]):
    def __init__(self, store: CounterStore) -> None:
        self.store = store
        self.value = 0
        self.parked: Reply[int] | None = None

    async def on_start(self) -> None:
        self.store.starts += 1
        if self.store.failing_starts > 0:
            self.store.failing_starts -= 1
            raise StartFailed(self.context.name)
        if self.store.start_seconds:
            await trio.sleep(self.store.start_seconds)
        self.value = self.store.saved.get(self.context.name, 0)

    async def on_stop(self) -> None:
        self.store.stopped.append(self.context.name)
        if self.store.stop_gate is not None:
            await self.store.stop_gate.wait()

    async def handle(self, message: CounterMessage) -> None:
        match message:
            case Add(amount):
                self.value += amount
            case Save():
                self.store.saved[self.context.name] = self.value
            case Get(reply):
                reply.send(self.value)
            case Crash():
                raise Broken(self.context.name)
            case ReplyThenCrash(reply):
                reply.send(self.value)
                raise Broken(self.context.name)
            case Refuse():
                raise Refused("not_allowed", "this counter refuses on request")
            case Hold(entered, release, reply):
                entered.set()
                await release.wait()
                if reply is not None:
                    reply.send(self.value)
            case Park(reply):
                self.parked = reply
            case Release(value):
                assert self.parked is not None
                self.parked.send(value)
                self.parked = None
            case Schedule(seconds, scheduled, reply):
                reply.send(self.context.send_after(seconds, scheduled))
            case Tick(label):
                self.store.ticks.append((label, trio.current_time()))
            case Passivate():
                self.context.stop()
            case _:
                assert_never(message)


async def hold(ref: ActorRef[CounterMessage]) -> trio.Event:
    """Make the actor busy; returns the event that lets it go on."""
    entered, release = trio.Event(), trio.Event()
    await ref.tell(Hold(entered, release))
    await entered.wait()
    return release


async def get(ref: ActorRef[CounterMessage]) -> int:
    return await ref.ask(Get)
