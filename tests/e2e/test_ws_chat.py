"""Conversations over /ws end to end: a real Hypercorn on 127.0.0.1, trio-websocket clients.

Rules: every wait is bounded (`trio.fail_after`, in the client helper) and waits for a frame or a
close, never for time to pass; a `ping` round trip is how a test knows every earlier frame of
that connection was handled; what the clients see is checked against the store.
"""

from __future__ import annotations

from pathlib import Path

import trio

from store import MessageStatus
from tests.conftest import Live, make_settings, running_server
from tests.e2e.wsclient import WsClient, connect, open_chat, ready_agent, say

ANN = "ann@switchboard.example"
BOB = "bob@switchboard.example"
ADMIN = "admin@switchboard.example"


def messages_of(client: WsClient, chat_id: str) -> list[tuple[int, str]]:
    return [
        (frame["seq"], frame["message"]["content"])
        for frame in client.of_type("message")
        if frame["chatId"] == chat_id
    ]


async def test_customer_and_agent_converse_with_acks_seqs_and_receipts(live: Live) -> None:
    ann_token = await live.login(ANN)
    async with (
        connect(live, ann_token) as agent,
        connect(live, await live.customer_token("shop-customer-1")) as customer,
    ):
        await ready_agent(live, agent)
        chat = await open_chat(customer)
        assert chat["status"] == "open"
        assert chat["agent"]["email"] == ANN
        assigned = await agent.expect("chat.assigned")
        assert assigned["chat"]["id"] == chat["id"]
        assert assigned["reason"].startswith("least loaded")
        chat_id, customer_id, agent_id = chat["id"], chat["customer"], chat["agent"]["_id"]

        acks = [await say(customer, chat_id, f"c{i}", f"question {i}") for i in (1, 2, 3)]
        assert [ack["seq"] for ack in acks] == [1, 2, 3]
        acks += [await say(agent, chat_id, f"a{i}", f"answer {i}") for i in (1, 2)]
        assert [ack["seq"] for ack in acks] == [1, 2, 3, 4, 5]
        for ack in acks:
            stored = await live.services.store.get_message(ack["messageId"])
            assert stored is not None
            assert (stored.seq, stored.client_msg_id) == (ack["seq"], ack["clientMsgId"])

        await agent.expect("message", seq=5)
        await customer.expect("message", seq=5)
        expected = [
            (1, "question 1"),
            (2, "question 2"),
            (3, "question 3"),
            (4, "answer 1"),
            (5, "answer 2"),
        ]
        assert messages_of(agent, chat_id) == expected
        assert messages_of(customer, chat_id) == expected
        first = agent.of_type("message")[0]["message"]
        assert set(first) == {
            "id", "chatId", "seq", "senderId", "receiverId", "content", "status", "senderRole",
            "createdAt",
        }  # fmt: skip
        assert (first["senderId"], first["receiverId"], first["senderRole"]) == (
            customer_id,
            agent_id,
            "customer",
        )

        # Written to the agent's socket: the customer learns the messages were delivered.
        await customer.expect("read", readerId=agent_id, seq=3, status="delivered")
        await agent.send({"type": "read", "chatId": chat_id, "seq": 3})
        await customer.expect("read", readerId=agent_id, seq=3, status="seen")
        transcript = await live.services.store.list_messages(chat_id, after_seq=0, limit=10)
        assert [m.status for m in transcript[:3]] == [MessageStatus.SEEN] * 3


async def test_two_agent_tabs_both_receive(live: Live) -> None:
    ann_token = await live.login(ANN)
    async with (
        connect(live, ann_token) as tab1,
        connect(live, ann_token) as tab2,
        connect(live, await live.customer_token("shop-customer-1")) as customer,
    ):
        await ready_agent(live, tab1)
        chat = await open_chat(customer)
        for tab in (tab1, tab2):
            assert (await tab.expect("chat.assigned"))["chat"]["id"] == chat["id"]
        await say(customer, chat["id"], "c1", "hello both tabs")
        for tab in (tab1, tab2):
            frame = await tab.expect("message", seq=1)
            assert frame["message"]["content"] == "hello both tabs"
        # What one tab sends, the other tab shows too.
        await say(tab1, chat["id"], "a1", "from tab one")
        assert (await tab2.expect("message", seq=2))["message"]["content"] == "from tab one"
        assert live.services.system.connections(chat["agent"]["_id"]) == 2


async def test_resending_a_client_msg_id_gets_the_same_ack_and_stores_nothing_twice(
    live: Live,
) -> None:
    async with (
        connect(live, await live.login(ANN)) as agent,
        connect(live, await live.customer_token("shop-customer-1")) as customer,
    ):
        await ready_agent(live, agent)
        chat = await open_chat(customer)
        first = await say(customer, chat["id"], "same-id", "only once")
        again = await say(customer, chat["id"], "same-id", "only once")
        assert again == first
        await say(customer, chat["id"], "next-id", "second")
        await agent.expect("message", seq=2)
        await agent.ping()
        assert messages_of(agent, chat["id"]) == [(1, "only once"), (2, "second")]
        stored = await live.services.store.list_messages(chat["id"], after_seq=0, limit=10)
        assert [m.client_msg_id for m in stored] == ["same-id", "next-id"]


async def test_drop_and_resume_returns_exactly_the_missed_messages_in_order(live: Live) -> None:
    ann_token = await live.login(ANN)
    async with connect(live, await live.customer_token("shop-customer-1")) as customer:
        async with connect(live, ann_token) as agent:
            await ready_agent(live, agent)
            chat = await open_chat(customer)
            chat_id = chat["id"]
            for i in (1, 2):
                await say(customer, chat_id, f"c{i}", f"before {i}")
            await agent.expect("message", seq=2)
        # The agent's socket is gone (within the grace period: the chat stays theirs).
        for i in (3, 4, 5):
            await say(customer, chat_id, f"c{i}", f"missed {i}")
        async with connect(live, ann_token) as agent:
            await agent.send({"type": "resume", "chatId": chat_id, "afterSeq": 2})
            resumed = await agent.expect("resumed", chatId=chat_id)
            assert resumed == {
                "type": "resumed",
                "chatId": chat_id,
                "recovered": True,
                "lastSeq": 5,
                "reason": None,
            }
            assert messages_of(agent, chat_id) == [
                (3, "missed 3"),
                (4, "missed 4"),
                (5, "missed 5"),
            ]
            # Nothing more was missed: resuming from the end returns nothing.
            await agent.send({"type": "resume", "chatId": chat_id, "afterSeq": 5})
            assert (await agent.expect("resumed"))["lastSeq"] == 5
            assert len(agent.of_type("message")) == 3
            # Written by resume counts as delivered.
            await customer.expect("read", seq=5, status="delivered")
            await agent.send({"type": "resume", "chatId": "0" * 24, "afterSeq": 0})
            unknown = await agent.expect("resumed", chatId="0" * 24)
            assert (unknown["recovered"], unknown["reason"]) == (False, "chat_not_found")


async def test_a_resume_answer_is_contiguous_while_messages_keep_coming(tmp_path: Path) -> None:
    before, writers, each = 60, 3, 20
    total = before + writers * each
    settings = make_settings(tmp_path, ws_max_frames_per_second=1000, ws_frame_burst=1000)
    async with running_server(settings) as live:
        await _resume_while_writing(live, before, writers, each, total)


async def _resume_while_writing(
    live: Live, before: int, writers: int, each: int, total: int
) -> None:
    ann_token = await live.login(ANN)
    customer_token = await live.customer_token("shop-customer-1")
    async with (
        connect(live, ann_token) as agent,
        connect(live, customer_token) as customer,
    ):
        await ready_agent(live, agent)
        chat_id = (await open_chat(customer))["id"]
        for i in range(before):
            await say(customer, chat_id, f"c{i}", f"m{i}")

        async def keep_writing(writer: int) -> None:
            async with connect(live, customer_token) as tab:
                for i in range(each):
                    await say(tab, chat_id, f"w{writer}-{i}", "more")

        async with connect(live, ann_token) as tab, trio.open_nursery() as nursery:
            for writer in range(writers):
                nursery.start_soon(keep_writing, writer)
            await tab.expect("message", chatId=chat_id, seq=before + 3)  # traffic is flowing
            await tab.send({"type": "resume", "chatId": chat_id, "afterSeq": 0})
            await tab.expect("resumed", chatId=chat_id)
            await tab.expect("message", chatId=chat_id, seq=total)
        # From the answer's first message on: the answer in order, `resumed`, then the live
        # messages after it, each once.
        frames = [f for f in tab.frames if f["type"] in ("message", "resumed")]
        start = next(i for i, f in enumerate(frames) if f.get("seq") == 1)
        answer_and_after = frames[start:]
        at = next(i for i, f in enumerate(answer_and_after) if f["type"] == "resumed")
        last = answer_and_after[at]["lastSeq"]
        assert before < last < total
        assert [f["seq"] for f in answer_and_after[:at]] == list(range(1, last + 1))
        assert [f["seq"] for f in answer_and_after[at + 1 :]] == list(range(last + 1, total + 1))


async def test_agent_going_away_hands_the_chat_and_its_history_to_another(live: Live) -> None:
    async with (
        connect(live, await live.login(ANN)) as ann,
        connect(live, await live.login(BOB)) as bob,
        connect(live, await live.customer_token("shop-customer-1")) as customer,
    ):
        agents = {ANN: ann, BOB: bob}
        for agent in agents.values():
            await ready_agent(live, agent)
        chat = await open_chat(customer)
        chat_id = chat["id"]
        first, second = (ANN, BOB) if chat["agent"]["email"] == ANN else (BOB, ANN)
        owner, other = agents[first], agents[second]
        await owner.expect("chat.assigned")
        await customer.expect("chat.assigned")
        await say(customer, chat_id, "c1", "my parcel is late")
        await say(owner, chat_id, "a1", "let me check")

        await owner.request({"type": "status.set", "status": "away"}, "agent.status", status="away")
        await owner.expect("chat.unassigned", chatId=chat_id)
        handed = await other.expect("chat.assigned")
        assert handed["chat"]["id"] == chat_id
        assert handed["chat"]["agent"]["email"] == second
        # What the event carries, as the store holds it: the transcript so far and its reader.
        assert handed["chat"]["lastSeq"] == 2
        assert handed["chat"]["lastMessage"]["content"] == "let me check"
        assert handed["chat"]["customerUnreadCount"] == 1
        assert (await customer.expect("chat.assigned"))["chat"]["agent"]["email"] == second

        await other.send({"type": "resume", "chatId": chat_id, "afterSeq": 0})
        assert (await other.expect("resumed"))["lastSeq"] == 2
        assert messages_of(other, chat_id) == [(1, "my parcel is late"), (2, "let me check")]
        await say(other, chat_id, "b1", "it arrives tomorrow")
        assert (await customer.expect("message", seq=3))["message"]["content"] == (
            "it arrives tomorrow"
        )
        # The agent who left may no longer write in it: to them it is a chat that is not there.
        await owner.send(
            {"type": "message.send", "chatId": chat_id, "clientMsgId": "late", "content": "x"}
        )
        assert (await owner.expect("error", ref="late"))["code"] == "chat_not_found"


async def test_agent_whose_last_socket_drops_loses_the_chat_after_the_grace_period(
    tmp_path: Path,
) -> None:
    async with (
        running_server(make_settings(tmp_path, grace_period_seconds=0.2)) as live,
        connect(live, await live.login(BOB)) as bob,
        connect(live, await live.customer_token("shop-customer-1")) as customer,
    ):
        async with connect(live, await live.login(ANN)) as ann:
            await ready_agent(live, ann)
            chat = await open_chat(customer)
            assert chat["agent"]["email"] == ANN
            await say(customer, chat["id"], "c1", "hello?")
        await ready_agent(live, bob)
        # Ann's only socket closed; after the grace period her chat goes to Bob.
        handed = await bob.expect("chat.assigned")
        assert handed["chat"]["id"] == chat["id"]
        await bob.send({"type": "resume", "chatId": chat["id"], "afterSeq": 0})
        await bob.expect("resumed", chatId=chat["id"])
        assert messages_of(bob, chat["id"]) == [(1, "hello?")]


async def test_waiting_customers_get_their_queue_position_and_then_an_agent(live: Live) -> None:
    async with (
        connect(live, await live.customer_token("shop-customer-1")) as first,
        connect(live, await live.customer_token("shop-customer-2")) as second,
    ):
        chat1 = await open_chat(first)
        assert chat1["status"] == "new"
        assert (await first.expect("queue.position", chatId=chat1["id"]))["position"] == 1
        chat2 = await open_chat(second)
        position = await second.expect("queue.position", chatId=chat2["id"])
        assert position["position"] == 2
        assert position["etaSeconds"] > 0
        # Opening again finds the waiting chat instead of making another.
        again = await first.request({"type": "chat.open"}, "chat.opened")
        assert (again["chat"]["id"], again["created"]) == (chat1["id"], False)

        async with connect(live, await live.login(ANN)) as ann:
            await ready_agent(live, ann)
            for customer, chat in ((first, chat1), (second, chat2)):
                assigned = await customer.expect("chat.assigned")
                assert assigned["chat"]["id"] == chat["id"]
                assert assigned["chat"]["agent"]["email"] == ANN


async def test_typing_reaches_the_other_side(live: Live) -> None:
    async with (
        connect(live, await live.login(ANN)) as agent,
        connect(live, await live.customer_token("shop-customer-1")) as customer,
    ):
        await ready_agent(live, agent)
        chat = await open_chat(customer)
        await customer.send({"type": "typing", "chatId": chat["id"], "on": True})
        typing = await agent.expect("typing")
        assert typing == {
            "type": "typing",
            "chatId": chat["id"],
            "userId": chat["customer"],
            "on": True,
        }
        await agent.send({"type": "typing", "chatId": chat["id"], "on": False})
        assert (await customer.expect("typing"))["on"] is False


async def test_admin_watches_but_does_not_write(live: Live) -> None:
    async with (
        connect(live, await live.login(ANN)) as agent,
        connect(live, await live.customer_token("shop-customer-1")) as customer,
        connect(live, await live.login(ADMIN, admin=True)) as admin,
    ):
        await ready_agent(live, agent)
        chat = await open_chat(customer)
        await say(customer, chat["id"], "c1", "hello")
        await admin.send({"type": "resume", "chatId": chat["id"], "afterSeq": 0})
        await admin.expect("resumed", recovered=True)
        assert messages_of(admin, chat["id"]) == [(1, "hello")]
        refused = await admin.request(
            {"type": "message.send", "chatId": chat["id"], "clientMsgId": "x", "content": "hi"},
            "error",
        )
        assert (refused["code"], refused["ref"]) == ("forbidden", "x")
        # An admin's reading marks nothing seen for the agent.
        await admin.send({"type": "read", "chatId": chat["id"], "seq": 1})
        await admin.ping()
        stored = await live.services.store.list_messages(chat["id"], after_seq=0, limit=10)
        assert stored[0].status != MessageStatus.SEEN
