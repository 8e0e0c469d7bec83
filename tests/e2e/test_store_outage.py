"""A store outage under live sessions, on a real server: SQLite locked by another process's
write transaction, or MongoDB (nx-27017) stopped and started again on the same data.

Throughout, the server answers (`/healthz`), requests answer or get 503 `store_unavailable`
(never a 500, never a hang), and the assignment actor does not restart; afterwards `/readyz` is
ready again, the same requests go through, and the store and the assignment actor agree on every
chat, agent and message, none lost or doubled.

A SQLite writer waits up to 5 s for a lock (its busy timeout), so an outage shorter than that only
delays writes; the 60 s ones are in the slow tier.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import ExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from store import ACTIVE_CHAT_STATUSES, ChatFilter, ChatStatus
from tests.conftest import Live, make_settings, running_server
from tests.e2e.wsclient import connect, ready_agent
from tests.store.mongo_server import WireServer, fresh_database_url, running_wire_server

ANN = "ann@switchboard.example"
BOUND = 120.0  # the whole test, outage included
REQUEST_SECONDS = 15.0  # one request during the outage: an answer within the ask bound
SQLITE_BUSY_SECONDS = 6.0  # a writer waits 5 s for a lock before it fails


@pytest.fixture
def own_server(tmp_path: Path) -> Iterator[WireServer]:
    with running_wire_server(tmp_path / "nx-27017") as server:
        yield server


@asynccontextmanager
async def sqlite_locked(path: Path, seconds: float) -> AsyncIterator[trio.Event]:
    """Another process's write transaction holds the database for `seconds`; the event is set
    when it has let go."""
    released = trio.Event()
    taken = threading.Event()

    def hold() -> None:
        other = sqlite3.connect(path, isolation_level=None)
        try:
            other.execute("BEGIN IMMEDIATE")
            taken.set()
            threading.Event().wait(seconds)
            other.execute("ROLLBACK")
        finally:
            other.close()

    async with trio.open_nursery() as nursery:

        async def run() -> None:
            await trio.to_thread.run_sync(hold)
            released.set()

        nursery.start_soon(run)
        await trio.to_thread.run_sync(taken.wait)
        yield released


@asynccontextmanager
async def mongodb_stopped(
    server: WireServer, seconds: float, restarted: ExitStack
) -> AsyncIterator[trio.Event]:
    """nx-27017 killed, and started again on the same port and data after `seconds` (kept
    running by `restarted`)."""
    released = trio.Event()
    server.kill()

    async def restart() -> None:
        await trio.sleep(seconds)
        again = running_wire_server(server.data_dir, server.port)
        await trio.to_thread.run_sync(lambda: restarted.enter_context(again))
        released.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(restart)
        yield released


async def status_of(http: httpx.AsyncClient, method: str, url: str, **kwargs: Any) -> int:
    response = await http.request(method, url, timeout=REQUEST_SECONDS, **kwargs)
    if response.status_code == 503:
        assert response.json()["error"]["code"] in ("store_unavailable", "not_ready"), response.text
    return response.status_code


async def check_agreement(live: Live) -> None:
    """The store and the assignment actor agree on every active chat's agent and on loads."""
    store = live.services.store
    snapshot = (await live.services.system.snapshot()).core
    owners = {chat_id: view.agent_id for view in snapshot.agents for chat_id in view.chat_ids}
    waiting = {entry.chat_id for entry in snapshot.queue}
    active = (await store.list_chats(ChatFilter(statuses=ACTIVE_CHAT_STATUSES), limit=500)).items
    for chat in active:
        if chat.status == ChatStatus.OPEN:
            assert owners.get(chat.id) == chat.agent_id, chat
        elif chat.id not in snapshot.parked:
            assert chat.id in waiting, chat
    assert set(owners) | waiting <= {chat.id for chat in active}


async def outage_under_traffic(
    live: Live, outage: Any, seconds: float, *, refused_past: float
) -> None:
    """`refused_past`: from this length on, the outage must show as 503s and not ready."""
    http = live.http
    customer_a = {"Authorization": f"Bearer {await live.customer_token('shop-a')}"}
    customer_b = {"Authorization": f"Bearer {await live.customer_token('shop-b')}"}
    async with connect(live, await live.login(ANN)) as agent:
        await ready_agent(live, agent)
        opened = await http.post("/chats/customer", headers=customer_a, json={"title": "Zip"})
        assert opened.status_code in (200, 201), opened.text
        chat_a = opened.json()["id"]
        await agent.expect("chat.assigned")
        acked: list[str] = []
        seen: dict[str, set[int | str]] = {
            "open": set(), "send": set(), "readyz": set(), "healthz": set(), "status": set()
        }  # fmt: skip

        async def set_status(status: str) -> str:
            """The agent's own status change, a decision of the assignment actor: the answer
            frame's type, or the error's code."""
            await agent.send({"type": "status.set", "status": status})
            answer = await agent._first(
                lambda frame: (
                    frame["type"] == "error"
                    or (frame["type"] == "agent.status" and frame.get("reason") == "status.set")
                ),
                REQUEST_SECONDS,
            )
            return str(answer.get("code", answer["type"]))

        async def send(client_msg_id: str) -> int:
            code = await status_of(
                http, "POST", "/messages/customer/send", headers=customer_a,
                json={"chatId": chat_a, "content": client_msg_id, "clientMsgId": client_msg_id},
            )  # fmt: skip
            if code in (200, 201):
                acked.append(client_msg_id)
            return code

        assert await send("before") in (200, 201)
        async with outage(seconds) as released:
            n = 0
            while not released.is_set():
                n += 1
                seen["healthz"].add(await status_of(http, "GET", "/healthz"))
                seen["readyz"].add(await status_of(http, "GET", "/readyz"))
                seen["send"].add(await send(f"during-{n}"))
                seen["status"].add(await set_status("away" if n % 2 else "available"))
                seen["open"].add(
                    await status_of(
                        http, "POST", "/chats/customer", headers=customer_b, json={"title": "B"}
                    )
                )
        # Ready again once the store answers and a routing write went through.
        while (await http.get("/readyz", timeout=REQUEST_SECONDS)).status_code != 200:
            pass
        assert seen["healthz"] == {200}
        assert seen["send"] | seen["open"] <= {200, 201, 503}, seen
        assert seen["status"] <= {"agent.status", "store_unavailable"}, seen
        if seconds >= refused_past:
            assert 503 in seen["readyz"], seen
            assert 503 in seen["open"], seen
            assert "store_unavailable" in seen["status"], seen
        assert await set_status("available") == "agent.status"
        assert await send("after") in (200, 201)
        reopened = await http.post("/chats/customer", headers=customer_b, json={"title": "B"})
        assert reopened.status_code in (200, 201), reopened.text
        actors = (await live.services.system.snapshot()).actors
        assert [a.restarts for a in actors if a.name == "supervisor"] == [0]
        await check_agreement(live)
        stored = await live.services.store.list_messages(chat_a, after_seq=0, limit=1000)
        # Every acknowledged message is stored once, in order, with seqs 1, 2, 3, ...
        assert [m.client_msg_id for m in stored if m.client_msg_id in acked] == acked
        assert [m.seq for m in stored] == list(range(1, len(stored) + 1))
        assert len({m.client_msg_id for m in stored}) == len(stored)


@pytest.mark.parametrize("seconds", [0.5, 5.0, pytest.param(60.0, marks=pytest.mark.slow)], ids=str)
async def test_sqlite_locked_by_another_writer(tmp_path: Path, seconds: float) -> None:
    settings = make_settings(tmp_path)

    def outage(held: float) -> Any:
        return sqlite_locked(tmp_path / "test.db", held)

    with trio.fail_after(BOUND):
        async with running_server(settings) as live:
            await outage_under_traffic(live, outage, seconds, refused_past=SQLITE_BUSY_SECONDS)


@pytest.mark.parametrize("seconds", [0.5, 5.0, pytest.param(60.0, marks=pytest.mark.slow)], ids=str)
async def test_mongodb_stopped_and_started_again(
    tmp_path: Path, own_server: WireServer, seconds: float
) -> None:
    settings = make_settings(tmp_path, store=fresh_database_url(own_server.url))

    def outage(down: float) -> Any:
        return mongodb_stopped(own_server, down, restarted)

    with ExitStack() as restarted, trio.fail_after(BOUND):
        async with running_server(settings) as live:
            await outage_under_traffic(live, outage, seconds, refused_past=2.0)
