"""A MongoDB wire-protocol server for the tests: nx-27017 (SQLite underneath) as a subprocess.

`running_wire_server` starts one on a loopback port, waits until it answers a ping, and kills it
at the end. `fresh_mongo_store` opens a store on a database no other test uses and drops it after.
Where this server differs from a real MongoDB, the README's MongoDB section says so.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trio
from pymongo import MongoClient
from pymongo.errors import ConnectionFailure

from store import MongoStore, open_mongo_store
from store.mongo import drop_database, with_database

START_LIMIT_SECONDS = 30.0

# Calls against a stopped server fail after this long instead of PyMongo's 30 s.
TEST_OPTIONS = "serverSelectionTimeoutMS=1000"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass(frozen=True, slots=True)
class WireServer:
    process: subprocess.Popen[bytes]
    port: int
    data_dir: Path

    @property
    def url(self) -> str:
        """The server's URL with no database: `with_database` picks one."""
        return f"mongodb://127.0.0.1:{self.port}/?{TEST_OPTIONS}"

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()


def wait_until_answering(url: str, process: subprocess.Popen[bytes] | None = None) -> None:
    """Ping `url` until it answers (each ping waits for the server, up to a second)."""
    deadline = time.monotonic() + START_LIMIT_SECONDS
    client: MongoClient[dict[str, Any]] = MongoClient(url, serverSelectionTimeoutMS=1000)
    with client:
        while True:
            if process is not None and process.poll() is not None:
                raise RuntimeError(f"the wire-protocol server exited with {process.returncode}")
            try:
                client.admin.command("ping")
            except ConnectionFailure:
                if time.monotonic() > deadline:
                    raise
            else:
                return


@contextmanager
def running_wire_server(data_dir: Path, port: int | None = None) -> Iterator[WireServer]:
    """nx-27017 keeping one SQLite file per database in `data_dir`, killed when the block ends."""
    data_dir.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "nx_27017.nx_27017",
            "--host",
            "127.0.0.1",
            "-p",
            str(port),
            "--data-dir",
            str(data_dir),
            # its defaults are shared paths in /tmp, which a second server would refuse
            "--pid-file",
            str(data_dir / "nx-27017.pid"),
            "--log-file",
            str(data_dir / "nx-27017.log"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    server = WireServer(process, port, data_dir)
    try:
        wait_until_answering(server.url, process)
        yield server
    finally:
        server.kill()


def fresh_database_url(server_url: str) -> str:
    """`server_url` naming a database no other test uses."""
    return with_database(server_url, f"switchboard_test_{uuid.uuid4().hex[:16]}")


@asynccontextmanager
async def fresh_mongo_store(
    server_url: str, *, transactions: bool | None = None, bulk: bool | None = None
) -> AsyncIterator[MongoStore]:
    """A store on a database of its own on `server_url`, dropped when the block ends."""
    url = fresh_database_url(server_url)
    try:
        async with open_mongo_store(url, transactions=transactions, bulk=bulk) as store:
            yield store
    finally:
        with trio.CancelScope(shield=True):
            await trio.to_thread.run_sync(drop_database, url)
