"""The store a benchmark's server runs on (`--store`): a fresh one every run, so runs compare.

- `sqlite` (the default): a new SQLite file in the run's temporary folder, `synchronous=FULL`
  with group commit, as `switchboard serve` runs it;
- `memory://`: the in-memory store (nothing durable: what the application costs without a
  database);
- a MongoDB URL (`mongodb://host:port/...`, `mongodb+srv://...`): a database of the run's own on
  that server, `switchboard_bench_<random>` (the URL's database name is not used), dropped when
  the run ends, so a server may hold other data and successive runs start alike.
"""

from __future__ import annotations

import argparse
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import trio

from store.mongo import drop_database, with_database

STORE_HELP = (
    "sqlite (a fresh file, the default), memory://, or a MongoDB URL: the run uses a database "
    "of its own there (switchboard_bench_<random>) and drops it at the end"
)
MONGO_SCHEMES = ("mongodb://", "mongodb+srv://")


def check_store(spec: str) -> str:
    """`spec` if a benchmark can run on it (argparse's `type`), else the error saying why not."""
    if spec in ("sqlite", "memory://") or spec.startswith(MONGO_SCHEMES):
        return spec
    raise argparse.ArgumentTypeError(
        f"unknown store {spec!r}: use sqlite, memory:// or a mongodb:// URL"
    )


def describe(spec: str) -> str:
    """What the report names the store by (a MongoDB URL without credentials or options)."""
    if not spec.startswith(MONGO_SCHEMES):
        return spec
    scheme, _, rest = spec.partition("://")
    hosts = rest.partition("/")[0].rpartition("@")[2]
    return f"{scheme}://{hosts}"


@asynccontextmanager
async def bench_store(spec: str, folder: Path) -> AsyncIterator[str]:
    """The store URL a run's server opens; a MongoDB database made for it is dropped after."""
    if spec == "sqlite":
        yield f"sqlite:///{folder / 'bench.db'}"
        return
    if not spec.startswith(MONGO_SCHEMES):
        yield check_store(spec)
        return
    url = with_database(spec, f"switchboard_bench_{uuid.uuid4().hex[:12]}")
    try:
        yield url
    finally:
        with trio.CancelScope(shield=True):
            await trio.to_thread.run_sync(drop_database, url)
