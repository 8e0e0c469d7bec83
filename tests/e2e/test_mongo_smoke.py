"""The whole app on the MongoDB store: a MongoDB wire-protocol server started by the test, a real
Hypercorn on 127.0.0.1, a real websocket agent and a REST customer.

The flow: a chat is opened, assigned, messages go both ways, each side reads them, the agent
resolves it, the history shows it all; then the server restarts on the same database and the
transcript is still there, each message seen.
Every wait is for a frame or a response, bounded by `trio.fail_after`.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

from tests.conftest import make_settings, running_server
from tests.e2e.wsclient import connect, ready_agent, say
from tests.store.mongo_server import WireServer, fresh_database_url, running_wire_server

ANN = "ann@switchboard.example"


@pytest.fixture(scope="module")
def wire_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WireServer]:
    with running_wire_server(tmp_path_factory.mktemp("nx-27017-e2e")) as server:
        yield server


async def test_chat_flow_on_mongodb(tmp_path: Path, wire_server: WireServer) -> None:
    settings = make_settings(tmp_path, store=fresh_database_url(wire_server.url))
    with trio.fail_after(60):
        async with running_server(settings) as live:
            customer = {"Authorization": f"Bearer {await live.customer_token('shop-1')}"}
            async with connect(live, await live.login(ANN)) as agent:
                await ready_agent(live, agent)
                opened = await live.http.post(
                    "/chats/customer", headers=customer, json={"title": "Broken zip"}
                )
                assert opened.status_code in (200, 201), opened.text
                chat_id = opened.json()["id"]
                assigned = await agent.expect("chat.assigned")
                assert assigned["chat"]["id"] == chat_id

                sent = await live.http.post(
                    "/messages/customer/send",
                    headers=customer,
                    json={"chatId": chat_id, "content": "the zip is stuck", "clientMsgId": "c1"},
                )
                assert sent.status_code in (200, 201), sent.text
                received = await agent.expect("message", chatId=chat_id)
                assert received["message"]["content"] == "the zip is stuck"
                ack = await say(agent, chat_id, "a1", "try pulling it gently")
                assert ack["seq"] == 2

                agent_headers = {"Authorization": f"Bearer {await live.login(ANN)}"}
                # Each side reads the other's message: the chat's read marks (no message written).
                for side, headers in (("agent", agent_headers), ("customer", customer)):
                    read = await live.http.put(f"/chats/{side}/read/{chat_id}", headers=headers)
                    assert read.status_code == 200, read.text
                resolved = await live.http.put(
                    f"/chats/agent/{chat_id}/resolved", headers=agent_headers
                )
                assert resolved.status_code == 200, resolved.text

            admin_token = await live.login("admin@switchboard.example", admin=True)
            history = await live.http.get(
                f"/admin/chats/{chat_id}/history",
                headers={"Authorization": f"Bearer {admin_token}"},
            )
            assert history.status_code == 200, history.text
            ann = await live.services.store.get_user_by_email(ANN)
            assert ann is not None
            entries = history.json()
            assert [(e["kind"], e["from"], e["to"]) for e in entries] == [
                ("assignment", None, ann.id),
                ("chat_status", "new", "open"),
                ("chat_status", "open", "resolved"),
            ]
            assert entries[0]["reason"].startswith("least loaded (0/3)")

        async with running_server(settings, seed=False) as live:
            customer = {"Authorization": f"Bearer {await live.customer_token('shop-1')}"}
            messages = await live.http.get(f"/messages/customer/{chat_id}", headers=customer)
            assert messages.status_code == 200, messages.text
            body = messages.json()
            assert [(m["seq"], m["content"], m["status"]) for m in body] == [
                (1, "the zip is stuck", "seen"),
                (2, "try pulling it gently", "seen"),
            ]
