"""One Switchboard process per SQLite database: a lock held for the process's life.

Two servers on one database would each run an assignment actor believing it is the only one:
double assignments, loads above max. SQLite's own locks only serialise writes, so the store
takes an exclusive `flock` on `<database>.lock` while it is open. The kernel releases it when the
process ends however it ends, so a crash leaves nothing to clean up. The lock file holds the
holder's pid and command line, for the one-line refusal the next process prints.
"""

from __future__ import annotations

import fcntl
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from store._protocol import StoreError


class StoreInUse(StoreError):
    """Another process has the store open."""


def lock_path(database: Path) -> Path:
    return database.with_name(database.name + ".lock")


@contextmanager
def single_process(database: Path) -> Iterator[None]:
    """Hold the database's lock for the block, or raise StoreInUse naming the holder."""
    path = lock_path(database)
    try:
        handle = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as error:
        raise StoreError(f"cannot create the lock file {path}: {error.strerror}") from error
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(handle, 4096, 0).decode(errors="replace").strip() or "unknown"
            raise StoreInUse(
                f"the database {database} is in use by another process ({holder}); stop it "
                "first: one store serves one Switchboard process"
            ) from None
        os.ftruncate(handle, 0)
        command = " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]) if sys.argv else "python"
        since = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        os.pwrite(handle, f"pid {os.getpid()}, `{command}`, since {since}\n".encode(), 0)
        yield
    finally:
        os.close(handle)  # releases the lock
