"""A Socket.IO session carried on a websocket reads no frame in a task of its own: the server's
reader task hands each frame to the session as it reads it (a task of the session's own, woken
for every frame, was one more task step each). Frames that came in behind the upgrade's probe
are read first, in order; the peer's end still ends the session.

A real server on 127.0.0.1, in the test's own trio run, so its tasks can be looked at.
"""

from __future__ import annotations

import json

import trio
import trio.testing

from tests.conftest import Live
from tests.e2e.test_ws_idle_stack import _stacks
from tests.sio.test_protocol import PATH, WAIT_SECONDS, Polling
from tests.sio.test_send_runs import RawWebsocket

# Where a task waits for a websocket's next frame, read through the app's queue.
_WAITS_FOR_A_FRAME = ("DirectWebsocket.receive", "AppQueue.receive")


def _frame_readers() -> list[list[str]]:
    return [stack for stack in _stacks() if set(_WAITS_FOR_A_FRAME) & set(stack)]


async def test_a_websocket_session_has_no_task_waiting_for_its_frames(live: Live) -> None:
    token = await live.customer_token("shop-customer-1")
    with trio.fail_after(WAIT_SECONDS):
        ws = await RawWebsocket.open(live)
        await ws.send_together("40" + json.dumps({"token": token}))
        await ws.until_prefix("40")
        await trio.testing.wait_all_tasks_blocked()
        assert _frame_readers() == []
        # The frames still come through, each answered.
        await ws.send_together('421["joinNotification"]')
        assert (await ws.until_prefix("431"))[-1].startswith('431[{"room":')
        await ws.close()


async def test_frames_behind_the_upgrade_are_read_in_order_then_handed_over(live: Live) -> None:
    session, _ = await Polling.open(live)
    await session.connect(await live.customer_token("shop-customer-1"))
    with trio.fail_after(WAIT_SECONDS):
        ws = await RawWebsocket.open(live, session.sid)
        await ws.send_together("2probe")
        await ws.until_prefix("3probe")
        assert await session.get() == ["6"]  # the poll answers noop: the client may switch
        # The upgrade and two events in one write: the events wait behind the "5" while the
        # upgrade completes, and are answered in order.
        await ws.send_together("5", '421["joinNotification"]', '422["joinNotification"]')
        seen = await ws.until_prefix("432")
        assert [text[:3] for text in seen if text.startswith("43")] == ["431", "432"]
        await trio.testing.wait_all_tasks_blocked()
        assert _frame_readers() == []
        await ws.send_together('423["joinNotification"]')
        await ws.until_prefix("433")
        # The peer goes: the session ends with it (an unknown sid to a poll).
        await ws.close()
        await trio.testing.wait_all_tasks_blocked()
        response = await live.http.get(
            PATH, params={"EIO": "4", "transport": "polling", "sid": session.sid}
        )
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == "session_unknown"
