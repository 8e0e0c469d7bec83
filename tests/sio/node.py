"""The stock Node.js Socket.IO client in a test: `NodeClients` runs tests/sio/driver.cjs and
talks to it in JSON lines; the test sends commands and waits (bounded by WAIT_SECONDS) for what
the sockets saw. The client itself is installed by `tools._node.install`."""

from __future__ import annotations

import itertools
import json
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import trio

from tools._node import node_env

DRIVER = Path(__file__).with_name("driver.cjs")
WAIT_SECONDS = 15.0  # longer than the driver's own ack timeout, which says more
Record = dict[str, Any]


@dataclass
class NodeClients:
    """Stock clients in one Node process; every record they printed, in order."""

    process: trio.Process
    url: str
    records: list[Record] = field(default_factory=list)
    _unclaimed: list[Record] = field(default_factory=list)
    _pending: bytes = b""
    _refs: itertools.count[int] = field(default_factory=itertools.count)

    async def command(self, op: str, **fields: Any) -> None:
        assert self.process.stdin is not None
        await self.process.stdin.send_all((json.dumps({"op": op, **fields}) + "\n").encode())

    async def connect(self, name: str, **opts: Any) -> None:
        await self.command("connect", name=name, url=self.url, opts=opts)

    async def emit(self, name: str, event: str, *args: Any) -> None:
        await self.command("emit", name=name, event=event, args=list(args))

    async def call(self, name: str, event: str, *args: Any) -> Any:
        """Emit with an ack; the ack's single argument."""
        ref = f"{name}:{event}:{next(self._refs)}"
        await self.command("emit", name=name, event=event, args=list(args), ack=True, ref=ref)
        answer = await self.expect(name, "ack", ref=ref)
        assert "timeout" not in answer, f"no ack for {event} from the server"
        return answer["args"][0]

    async def expect(self, name: str | None, event: str, **fields: Any) -> Record:
        """The first record not claimed before with that socket, event and field values,
        already printed or still to come."""

        def matches(record: Record) -> bool:
            return (record["name"], record["event"]) == (name, event) and all(
                record.get(key) == value for key, value in fields.items()
            )

        for record in self._unclaimed:
            if matches(record):
                self._unclaimed.remove(record)
                return record
        with trio.fail_after(WAIT_SECONDS):
            while not matches(record := await self._receive()):
                pass
        self._unclaimed.remove(record)
        return record

    async def event(self, name: str, event: str) -> Any:
        """The first argument of the next `event` the socket got from the server."""
        return (await self.expect(name, event))["args"][0]

    def seen(self, name: str, event: str) -> list[Record]:
        return [r for r in self.records if (r["name"], r["event"]) == (name, event)]

    async def _receive(self) -> Record:
        assert self.process.stdout is not None
        while b"\n" not in self._pending:
            chunk = await self.process.stdout.receive_some()
            if not chunk:
                raise AssertionError(f"the Node driver exited: {self.records[-5:]}")
            self._pending += chunk
        line, self._pending = self._pending.split(b"\n", 1)
        record: Record = json.loads(line)
        self.records.append(record)
        self._unclaimed.append(record)
        return record


@asynccontextmanager
async def node_clients(modules: Path, url: str) -> AsyncIterator[NodeClients]:
    async with trio.open_nursery() as nursery:
        process: trio.Process = await nursery.start(
            partial(
                trio.run_process,
                ["node", str(DRIVER)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                env=node_env(modules),
                check=False,
            )
        )
        clients = NodeClients(process, url)
        await clients.expect(None, "ready")
        try:
            yield clients
        finally:
            with trio.move_on_after(WAIT_SECONDS) as bound:
                bound.shield = True
                await clients.command("exit")
                await process.wait()
            if bound.cancelled_caught:
                process.kill()
