"""A Socket.IO session carried on a websocket reads no frame in a task of its own: the server's
reader task hands each frame to the session as it reads it (a task of the session's own, woken
for every frame, was one more task step each). Frames that came in behind the upgrade's probe
are read first, in order; the peer's end still ends the session. A frame enters no cancel scope
of its own, and what its handling waits for ends with the session. What the session writes
leaves without a step of its writer's task where the socket is free.

A real server on 127.0.0.1, in the test's own trio run, so its tasks can be looked at.
"""

from __future__ import annotations

import gc
import json
from collections.abc import Callable
from typing import cast

import pytest
import trio
import trio.testing

from actors import System
from api._sio_namespace import ChatSocket
from api._sio_session import SioSession
from store import Priority, Role, Store
from tests.cancelling import Stuck, scopes_entered
from tests.conftest import Live
from tests.e2e.test_ws_idle_stack import _stacks
from tests.e2e.wsclient import connect as ws_connect
from tests.e2e.wsclient import ready_agent, say
from tests.sio.test_protocol import PATH, WAIT_SECONDS, Polling
from tests.sio.test_send_runs import RawWebsocket, send

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


def _session_of(role: Role) -> SioSession:
    """The server's one connected Socket.IO session of a peer with `role`."""
    (session,) = [
        each
        for each in gc.get_objects()
        if type(each) is SioSession and each._socket is not None and each._socket.role is role
    ]
    return session


async def _connected_with_a_chat(live: Live) -> tuple[RawWebsocket, str]:
    token = await live.customer_token("shop-customer-1")
    me = (await live.services.tokens.authenticate(token)).user.id
    opened = await live.services.system.open_chat(
        me, title="Where is my order?", description="", priority=Priority.MEDIUM
    )
    ws = await RawWebsocket.open(live)
    await ws.send_together("40" + json.dumps({"token": token}))
    await ws.until_prefix("40")
    return ws, opened.chat.id


async def test_a_send_enters_one_cancel_scope_on_its_way_in(live: Live) -> None:
    # As on /ws (tests/e2e/test_ws_frames.py): the send's answer has one scope, the bound of its
    # ask, which the session's end also cancels. The frame enters none of its own.
    with trio.fail_after(WAIT_SECONDS):
        ws, chat_id = await _connected_with_a_chat(live)
        for ack in range(1, 4):
            with scopes_entered() as entered:
                await ws.send_together(send(ack, chat_id, f"message {ack}", f"c{ack}"))
                await ws.until_prefix(f"43{ack}")
            ours = [name for name in entered if name.split(":")[0] in ("api", "store")]
            assert ours == ["api:Connection._send_run"], entered
        await ws.close()


def _stuck_ask(socket: ChatSocket) -> Stuck:
    stuck = Stuck(socket.core._system, "send_messages")
    socket.core._system = cast(System, stuck)
    return stuck


def _stuck_read(socket: ChatSocket) -> Stuck:
    stuck = Stuck(socket._store, "get_chat")
    socket._store = cast(Store, stuck)
    return stuck


@pytest.mark.parametrize(
    ("stick", "frame"),
    [
        # A send: its ask is bounded by the connection core, which the session's end stops.
        (_stuck_ask, lambda chat_id: send(1, chat_id, "never answered", "c1")),
        # Every other event: its handling runs in a scope the session's end cancels.
        (_stuck_read, lambda chat_id: '421["joinChat",' + json.dumps({"chatId": chat_id}) + "]"),
    ],
    ids=["send", "joinChat"],
)
async def test_a_packet_waiting_for_its_answer_ends_with_its_session(
    live: Live, stick: Callable[[ChatSocket], Stuck], frame: Callable[[str], str]
) -> None:
    # Handled in the server's reader task, outside the session's nursery: left waiting, the
    # reader (and the connection's memory) would stay until the ask's 10 s bound.
    with trio.fail_after(WAIT_SECONDS):
        ws, chat_id = await _connected_with_a_chat(live)
        session = _session_of(Role.CUSTOMER)
        assert session._socket is not None
        stuck = stick(session._socket)
        await ws.send_together(frame(chat_id))
        await stuck.asked.wait()
        session._go_away()  # as when the server begins to stop
        await ws.until_prefix("1")  # Engine.IO's close
        await trio.testing.wait_all_tasks_blocked()
        assert stuck.cancelled
        await ws.close()


class _Steps(trio.abc.Instrument):
    """Counts the task steps of the session's websocket writer."""

    def __init__(self) -> None:
        self.writer = 0

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        code = getattr(task.coro, "cr_code", None)
        if code is not None and code.co_qualname == "SioSession._write_websocket":
            self.writer += 1


async def test_answers_and_events_are_written_without_the_writer_task(live: Live) -> None:
    # The writer's task woke for each write: a task step (and a trip through the scheduler)
    # for every message in and out. An answer is written by the task that answered it, the
    # message and its ack together; an event by the step that pushed it, where the socket is
    # free and nothing is buffered before it.
    token = await live.customer_token("shop-customer-1")
    me = (await live.services.tokens.authenticate(token)).user.id
    with trio.fail_after(WAIT_SECONDS):
        async with ws_connect(live, await live.login("ann@switchboard.example")) as agent:
            await ready_agent(live, agent)
            chat_id = (
                await live.services.system.open_chat(
                    me, title="Where is my order?", description="", priority=Priority.MEDIUM
                )
            ).chat.id
            ws = await RawWebsocket.open(live)
            await ws.send_together("40" + json.dumps({"token": token}))
            await ws.until_prefix("40")
            await ws.send_together('421["joinChat",' + json.dumps({"chatId": chat_id}) + "]")
            await ws.until_prefix("431")
            await trio.testing.wait_all_tasks_blocked()
            steps = _Steps()
            trio.lowlevel.add_instrument(steps)
            try:
                for n in range(2, 5):
                    await ws.send_together(send(n, chat_id, f"question {n}", f"c{n}"))
                    answer = await ws.until_prefix(f"43{n}")
                    assert answer[-2].startswith('42["messageDelivered"'), answer
                    await say(agent, chat_id, f"a{n}", f"answer {n}")
                    pushed = await ws.until_prefix('42["messageReceived"')
                    assert f"answer {n}" in pushed[-1]
                await trio.testing.wait_all_tasks_blocked()
            finally:
                trio.lowlevel.remove_instrument(steps)
            assert steps.writer == 0
            await ws.close()
