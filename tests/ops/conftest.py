"""Fixtures for the operations tests: the server's log lines, captured as the operator sees them."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import trio

from telemetry import LogFormat, configure_logging

WAIT_SECONDS = 10.0


class _Arrivals(logging.Handler):
    """Wakes a test waiting for a line, when a record is made in the trio thread."""

    def __init__(self) -> None:
        super().__init__()
        self.waiting: trio.Event | None = None

    def emit(self, record: logging.LogRecord) -> None:
        if self.waiting is not None and trio.lowlevel.in_trio_task():
            self.waiting.set()


@dataclass
class Logs:
    stream: io.StringIO
    arrivals: _Arrivals

    @property
    def text(self) -> str:
        return self.stream.getvalue()

    def records(self) -> list[dict[str, Any]]:
        """The JSON lines, parsed (every line must be one JSON object)."""
        return [json.loads(line) for line in self.text.splitlines() if line.strip()]

    async def wait_for(self, name: str, **fields: Any) -> list[dict[str, Any]]:
        """The events `events` finds, once there is one (bounded)."""
        with trio.fail_after(WAIT_SECONDS):
            while not (found := self.events(name, **fields)):
                self.arrivals.waiting = trio.Event()
                await self.arrivals.waiting.wait()
        return found

    def events(self, name: str, **fields: Any) -> list[dict[str, Any]]:
        return [
            record
            for record in self.records()
            if record.get("event") == name
            and all(record.get(key) == value for key, value in fields.items())
        ]


def capture(log_format: LogFormat) -> Iterator[Logs]:
    stream = io.StringIO()
    handler = configure_logging("debug", log_format, stream)
    arrivals = _Arrivals()
    logging.getLogger().addHandler(arrivals)
    try:
        yield Logs(stream, arrivals)
    finally:
        logging.getLogger().removeHandler(handler)
        logging.getLogger().removeHandler(arrivals)


@pytest.fixture
def json_logs() -> Iterator[Logs]:
    """Every record at debug level, as JSON lines."""
    yield from capture("json")


@pytest.fixture
def text_logs() -> Iterator[Logs]:
    yield from capture("text")
