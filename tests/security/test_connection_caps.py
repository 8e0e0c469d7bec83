"""Live connections per principal, /ws and Socket.IO together: the new one over the cap is
refused with `too_many_connections`, and the ones already open are kept.

Against a real server; waits are for the server's answers, bounded.
"""

from __future__ import annotations

import json
from contextlib import AsyncExitStack
from pathlib import Path

import pytest
import trio
from trio_websocket import ConnectionRejected

from tests.conftest import Live, make_settings, running_server
from tests.e2e.test_ws_limits import error_body
from tests.e2e.wsclient import WAIT_SECONDS, WsClient, connect

ANN = "ann@switchboard.example"
PATH = "/socket.io/"
HANDSHAKE = {"EIO": "4", "transport": "polling"}


async def socketio_connect(live: Live, token: str) -> str:
    """A polling session's CONNECT: the packet that answers it (`40...` or `44...`)."""
    opened = await live.http.get(PATH, params=HANDSHAKE)
    assert opened.status_code == 200, opened.text
    sid = json.loads(opened.text[1:])["sid"]
    session = {**HANDSHAKE, "sid": sid}
    posted = await live.http.post(PATH, params=session, content="40" + json.dumps({"token": token}))
    assert posted.text == "ok"
    with trio.fail_after(WAIT_SECONDS):
        answer = await live.http.get(PATH, params=session, timeout=None)
    return answer.text.split("\x1e")[0]


async def pongs(client: WsClient) -> None:
    await client.send({"type": "ping"})
    with trio.fail_after(WAIT_SECONDS):
        await client.expect("pong")


@pytest.mark.parametrize(("who", "cap"), [("customer", 3), ("agent", 4)])
async def test_a_principal_over_its_cap_is_refused_and_the_open_ones_kept(
    tmp_path: Path, who: str, cap: int
) -> None:
    settings = make_settings(tmp_path, max_connections_per_customer=3, max_connections_per_staff=4)
    # What happens with connections open is recorded and checked once they are closed: an
    # exception inside nested trio-websocket blocks can be lost on the way out.
    refusals: list[ConnectionRejected] = []
    answers: list[str] = []
    async with running_server(settings) as live:
        token = (
            await live.customer_token("shop-customer-1")
            if who == "customer"
            else await live.login(ANN)
        )
        other = await live.customer_token("shop-customer-2")
        async with AsyncExitStack() as stack:
            open_ones = [await stack.enter_async_context(connect(live, token)) for _ in range(cap)]
            try:
                refused = await stack.enter_async_context(connect(live, token))
            except ConnectionRejected as refusal:
                refusals.append(refusal)
            else:
                open_ones.append(refused)
            # Socket.IO counts with /ws: its CONNECT is refused the same way.
            answers.append(await socketio_connect(live, token))
            # Nothing already open was dropped, and another principal is not counted with this one.
            stranger = await stack.enter_async_context(connect(live, other))
            for client in [*open_ones, stranger]:
                await pongs(client)
            alive = len(open_ones)
        # All closed: room again, on either edge.
        with trio.fail_after(WAIT_SECONDS):
            # The server counts a closing connection until its handler ends: no event tells
            # the client when that is.
            while (answer := await socketio_connect(live, token)).startswith("44"):  # noqa: ASYNC110
                await trio.sleep(0.05)
    assert alive == cap
    assert [refusal.status_code for refusal in refusals] == [429]
    # Retry after the ping interval and timeout (20 + 20 s): a vanished peer's slot is free by then.
    assert (b"retry-after", b"40") in [(name.lower(), value) for name, value in refusals[0].headers]
    body = error_body(refusals[0])
    assert body["error"]["code"] == "too_many_connections"
    assert f"you have {cap} live connections" in body["error"]["message"]
    assert answers[0].startswith("44"), answers
    assert json.loads(answers[0][2:])["data"] == {"code": "too_many_connections"}
    assert answer.startswith("40{"), answer
