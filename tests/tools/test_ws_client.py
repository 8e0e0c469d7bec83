"""The one reconnect loop of the tools' /ws clients: it counts failures in a row, pauses by the
client's backoff, gives up past its bound, starts the count again after a connection that lasted,
stops when told, and never keeps a handshake slot after an attempt."""

from __future__ import annotations

import socket
from functools import partial

import trio
from trio_websocket import (
    HandshakeError,
    WebSocketConnection,
    WebSocketRequest,
    serve_websocket,
)
from wsproto.utilities import LocalProtocolError

from tools._ws_client import Attempt, Redial, stay_connected


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Client:
    def __init__(self, url: str, outcomes: list[Attempt]) -> None:
        self.token = "t"
        self.stopping = False
        self._url = url
        self.outcomes = outcomes
        self.dialled = 0
        self.sessions = 0
        self.refusals: list[str] = []
        self.pauses: list[int] = []
        self.gave_up = 0

    def url(self) -> str:
        self.dialled += 1
        return self._url

    async def session(self, ws: WebSocketConnection) -> Attempt:
        self.sessions += 1
        return self.outcomes.pop(0)

    def refused(self, error: HandshakeError | OSError) -> None:
        self.refusals.append(type(error).__name__)

    def crossed(self, error: LocalProtocolError) -> Attempt:
        raise error

    def backoff(self, failures: int) -> float:
        self.pauses.append(failures)
        return 0.0

    def give_up(self) -> None:
        self.gave_up += 1


def redial(attempts: int, handshakes: trio.CapacityLimiter | None = None) -> Redial:
    return Redial(
        message_queue_size=8,
        connect_seconds=5.0,
        disconnect_seconds=1.0,
        attempts=attempts,
        handshakes=handshakes,
    )


async def test_nobody_listening_gives_up_after_its_attempts_and_frees_the_slot() -> None:
    client = Client(f"ws://127.0.0.1:{free_port()}/ws", [])
    slots = trio.CapacityLimiter(1)
    with trio.fail_after(10):
        await stay_connected(client, redial(3, slots))
    assert client.dialled == 4
    assert len(client.refusals) == 4
    assert client.pauses == [1, 2, 3]
    assert client.gave_up == 1
    assert slots.borrowed_tokens == 0


async def test_a_lasting_connection_starts_the_count_again_and_stop_gives_up_at_once() -> None:
    async def accept(request: WebSocketRequest) -> None:
        ws = await request.accept()
        await ws.aclose()

    async with trio.open_nursery() as nursery:
        server = await nursery.start(partial(serve_websocket, accept, "127.0.0.1", 0, None))
        url = f"ws://127.0.0.1:{server.port}/ws"
        outcomes = [Attempt.FAILED, Attempt.FAILED, Attempt.LASTED, Attempt.NEITHER, Attempt.STOP]
        client = Client(url, outcomes)
        slots = trio.CapacityLimiter(1)
        with trio.fail_after(10):
            await stay_connected(client, redial(2, slots))
        nursery.cancel_scope.cancel()
    assert client.sessions == 5
    assert client.pauses == [1, 2, 0, 0]  # none after the stop
    assert client.gave_up == 1
    assert slots.borrowed_tokens == 0


async def test_a_stopping_client_does_not_dial_again() -> None:
    client = Client(f"ws://127.0.0.1:{free_port()}/ws", [])

    def stop_after_first(failures: int) -> float:
        raise AssertionError("no pause once stopping")

    def refused(error: HandshakeError | OSError) -> None:
        client.stopping = True

    client.backoff = stop_after_first  # type: ignore[method-assign]
    client.refused = refused  # type: ignore[method-assign]
    with trio.fail_after(10):
        await stay_connected(client, redial(5))
    assert client.dialled == 1
    assert client.gave_up == 0
