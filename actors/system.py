"""The composition root of the domain: `open_system(store)` gives the handle the API uses."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from store import Store


@dataclass(frozen=True, slots=True)
class SystemConfig:
    grace_period_seconds: float = 15.0


class System:
    """The running actor system and the store it persists to."""

    def __init__(self, store: Store, config: SystemConfig) -> None:
        self.store = store
        self.config = config


@asynccontextmanager
async def open_system(store: Store, config: SystemConfig = SystemConfig()) -> AsyncIterator[System]:
    yield System(store, config)
