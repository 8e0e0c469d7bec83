"""A TCP proxy in front of the server that a test can cut, as a network drop would.

`drop()` resets every connection through it, and holds the new ones without an answer (as a
dead network does) until `restore()`, which then carries them on to the server: a page sees its
socket fail, tries again, and gets through the moment the network is back.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from types import TracebackType

_CHUNK = 65536


class Proxy:
    def __init__(self, target_port: int) -> None:
        self._target = ("127.0.0.1", target_port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self._held: list[socket.socket] = []
        self._down = False
        self._closed = False
        self._acceptor = threading.Thread(target=self._accept, daemon=True)

    def __enter__(self) -> Proxy:
        self._acceptor.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._closed = True
        self._listener.close()
        self.drop()

    def drop(self) -> None:
        """Cut every connection (a reset), and hold new ones until `restore`."""
        with self._lock:
            self._down = True
            cut, self._open = self._open, set()
        for connection in cut:
            _reset(connection)

    def restore(self) -> None:
        with self._lock:
            self._down = False
            held, self._held = self._held, []
        for client in held:
            self._carry(client)

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                if self._down:
                    self._held.append(client)
                    continue
            self._carry(client)

    def _carry(self, client: socket.socket) -> None:
        try:
            upstream = socket.create_connection(self._target)
        except OSError:
            _reset(client)
            return
        with self._lock:
            self._open.update((client, upstream))
        for source, sink in ((client, upstream), (upstream, client)):
            threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(_CHUNK):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for end in (source, sink):
                with contextlib.suppress(OSError):
                    end.shutdown(socket.SHUT_RDWR)
            with self._lock:
                self._open.discard(source)
                self._open.discard(sink)


def _reset(connection: socket.socket) -> None:
    """End a connection without a websocket close: to the page, the network went away.
    (shutdown, not only close, so that the pump blocked reading it wakes up.)"""
    with contextlib.suppress(OSError):
        connection.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        connection.close()
