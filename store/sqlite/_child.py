"""The SQLite writer process: it holds the writing connection and runs each batch the server
sends it in one transaction (`_transaction.Writer`), answering once COMMIT returned.

Why a process: in a thread, the writer and the event loop pass the GIL to each other around
every statement, about 25 times a batch, and a saturated loop lost a quarter of its time waiting
for it (README, Performance). In a process of its own the writer uses the second core, and the
loop only pickles each batch's calls and unpickles the answers.

Run as a script, `python -I -S _child.py FD DATABASE PARENT_PID OWNER CREATE`, not with `-m`:
the `store` package's `__init__` imports the whole store (pymongo, trio), which made every start
0.3 s instead of 0.06. It needs the standard library and the store's records only.

The wire: frames of a 4-byte big-endian length and a pickle, over a socket pair (FD). The
writer's first frame is (True, its pid) once the database is open, or (False, the error). Then
the server sends (batch number, again, how many calls, the calls pickled) and the writer
answers (committed, [(ok, value or error), ...]); `again` marks a batch sent before to a writer
that died: it is answered from the database if it was committed, and run if it was not. Calls
it cannot unpickle (a class it cannot import) refuse their batch. EOF ends it.
"""

from __future__ import annotations

import os
import pickle
import signal
import socket
import sys
import types
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def _die_with_parent(parent: int) -> None:
    """Killed with the server: a writer left behind after a crash could commit a batch after the
    server that sent it is gone, behind the back of the one that starts next. (A server that
    ends cleanly closes the socket first, and the writer ends at EOF.)"""
    if sys.platform == "linux":
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)
    if os.getppid() != parent:  # the parent died before the signal was asked for
        os._exit(1)


def _receive(channel: socket.socket, header_size: int) -> Any:
    """The next frame's value; None at EOF."""
    header = _exactly(channel, header_size)
    if header is None:
        return None
    body = _exactly(channel, int.from_bytes(header, "big"))
    if body is None:
        return None
    return pickle.loads(body)


def _exactly(channel: socket.socket, size: int) -> bytes | None:
    buffer = bytearray(size)
    view = memoryview(buffer)
    got = 0
    while got < size:
        count = channel.recv_into(view[got:])
        if count == 0:
            return None
        got += count
    return bytes(buffer)


def main(arguments: Sequence[str]) -> int:
    fd, database, parent, owner, create = (
        int(arguments[0]),
        Path(arguments[1]),
        int(arguments[2]),
        int(arguments[3]),
        arguments[4] == "create",
    )
    _die_with_parent(parent)
    # The server stops on Ctrl-C and still sends the writes it has queued: the writer must
    # outlive the signal (it is in a session of its own as well).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    from store.sqlite._transaction import HEADER, Writer, connect, encode, frame, portable

    with socket.socket(fileno=fd) as channel:
        try:
            writer = Writer(connect(database, create=create), owner)
        except Exception as exc:
            channel.sendall(frame(encode((False, portable(exc)))))
            return 1
        try:
            channel.sendall(frame(encode((True, os.getpid()))))
            while (request := _receive(channel, HEADER.size)) is not None:
                batch, again, count, pickled = request
                answer = (writer.outcome(batch) if again else None) or writer.run_pickled(
                    batch, count, pickled
                )
                channel.sendall(frame(answer))
        finally:
            writer.close()
    return 0


def _bootstrap() -> None:
    """Make `store.sqlite._transaction` importable without running the packages' `__init__`s:
    the project's folder on the path, and the two packages as bare modules."""
    root = Path(__file__).resolve().parents[2]
    sys.path.insert(0, str(root))
    for name in ("store", "store.sqlite"):
        package = types.ModuleType(name)
        package.__path__ = [str(root.joinpath(*name.split(".")))]
        sys.modules[name] = package


if __name__ == "__main__":
    _bootstrap()
    sys.exit(main(sys.argv[1:]))
