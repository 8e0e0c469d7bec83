"""The server's side of the SQLite writer process (`_child`): starting it, one exchange per
batch, and ending it with the store.

The writer is started by the store and ends with it: at EOF when the store closes, and killed
by the kernel if the server dies first (Linux). One that ends on its own (killed, out of memory)
is replaced by `SqliteStore`, which sends the batch it was running to its successor again.
"""

from __future__ import annotations

import os
import pickle
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import trio

from store._protocol import StoreUnavailable
from store.sqlite import _child
from store.sqlite._transaction import HEADER, Call, Result, encode, frame

_RECEIVE = 1 << 16


class WriterGone(StoreUnavailable):
    """The writer process ended before it answered (whether the batch was committed, only the
    next writer can tell: `exchange` with `again`), or before it was ready."""


class WriterProcess:
    """A running writer: `exchange` sends it a batch and returns its answer."""

    def __init__(self, process: subprocess.Popen[bytes], stream: trio.SocketStream) -> None:
        self._process = process
        self._stream = stream
        self._buffer = bytearray()
        self._ended = False
        self.pid = process.pid

    @property
    def alive(self) -> bool:
        # Once its socket is closed it is ended, though it may not be reapable for a moment.
        return not self._ended and self._process.poll() is None

    @property
    def exit_code(self) -> int | None:
        return self._process.returncode

    async def exchange(
        self, batch: int, calls: list[Call], *, again: bool = False
    ) -> tuple[bool, list[Result]]:
        """Whether batch number `batch` was committed, and each call's answer; with `again`, a
        batch sent to a writer that died: answered as it was if it was committed, else run. Not
        cancellable: a batch half sent, or answered and not read, would put every later answer
        out of step."""
        # The calls pickled apart: a writer that cannot unpickle them (a class it cannot import)
        # still reads the frame, and refuses the batch.
        request = frame(encode((batch, again, len(calls), encode(calls))))
        with trio.CancelScope(shield=True):
            try:
                await self._stream.send_all(request)
                answer = await self._receive()
            except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                raise self._gone() from exc
        if answer is None:
            raise self._gone()
        committed, results = answer
        return committed, results

    async def aclose(self) -> None:
        """Close the socket (the writer ends at EOF, after the batch it may be in) and wait for
        it to exit. Shielded: a writer is never abandoned."""
        with trio.CancelScope(shield=True):
            await self._stream.aclose()
            await trio.to_thread.run_sync(self._process.wait)

    def _gone(self) -> WriterGone:
        self._ended = True
        self._process.kill()  # if it is not quite gone: a writer with no socket is of no use
        code = self._process.poll()  # often not yet: its socket closes before it can be reaped
        how = "" if code is None else f" (exit code {code})"
        return WriterGone(f"the SQLite writer process ended{how} before it answered")

    async def _receive(self) -> Any:
        """The next frame's value; None at EOF."""
        buffer = self._buffer
        size = HEADER.size
        while True:
            if len(buffer) >= size:
                (length,) = HEADER.unpack_from(buffer)
                if len(buffer) >= size + length:
                    body = bytes(buffer[size : size + length])
                    del buffer[: size + length]
                    return pickle.loads(body)
            data = await self._stream.receive_some(_RECEIVE)
            if not data:
                return None
            buffer += data


async def start_writer(database: Path, owner: int, *, create: bool) -> WriterProcess:
    """Start a writer for the store `owner` on `database` (creating it if `create`, and
    migrating it) and wait until it is ready.
    Raises StoreError if it cannot open the database. Not cancellable, as a batch's writes."""
    try:
        ours, theirs = socket.socketpair()
    except OSError as exc:  # out of file descriptors, under a flood of connections
        raise _cannot_start(exc) from exc
    try:
        # Started from this thread, the event loop's: the parent-death signal follows the
        # thread that started the child (trio's `open_process` would use a worker thread).
        process = subprocess.Popen(  # noqa: ASYNC220 (a few ms, once per writer)
            [
                sys.executable,
                "-I",
                "-S",
                _child.__file__,
                str(theirs.fileno()),
                str(database),
                str(os.getpid()),
                str(owner),
                "create" if create else "existing",
            ],
            stdin=subprocess.DEVNULL,
            pass_fds=(theirs.fileno(),),
            start_new_session=True,  # out of the terminal's reach: Ctrl-C goes to the server
        )
    except OSError as exc:
        ours.close()
        raise _cannot_start(exc) from exc
    except BaseException:
        ours.close()
        raise
    finally:
        theirs.close()
    writer = WriterProcess(process, trio.SocketStream(trio.socket.from_stdlib_socket(ours)))
    try:
        with trio.CancelScope(shield=True):
            ready = await writer._receive()
    except BaseException:
        process.kill()
        await writer.aclose()
        raise
    match ready:
        case (True, _):
            return writer
        case (False, BaseException() as error):
            await writer.aclose()
            raise error
        case _:
            process.kill()
            await writer.aclose()
            raise WriterGone(
                f"the SQLite writer process for {database} ended before it was ready"
                f" (exit code {process.returncode})"
            )


def _cannot_start(error: OSError) -> StoreUnavailable:
    return StoreUnavailable(f"cannot start the SQLite writer process: {error}")
