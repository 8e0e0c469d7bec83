"""No oracle on /ws: every frame that names a chat answers someone else's chat (open or resolved)
exactly like an id that names no chat: the same frames, code and message, the id aside. The
answer costs the same store read either way and never wakes the other chat's conversation."""

from __future__ import annotations

import json
from typing import Any

from store import ActedBy, ChatStatus, new_id
from tests.conftest import Live
from tests.e2e.wsclient import WsClient, connect, open_chat, ready_agent

ANN = "ann@switchboard.example"
BOB = "bob@switchboard.example"

CHAT_FRAMES: tuple[dict[str, Any], ...] = (
    {"type": "message.send", "clientMsgId": "probe", "content": "anyone there?"},
    {"type": "typing", "on": True},
    {"type": "typing", "on": False},
    {"type": "read", "seq": 1},
    {"type": "resume", "afterSeq": 0},
)


async def answers(client: WsClient, frame: dict[str, Any], chat_id: str) -> list[str]:
    """Everything the server sent after the frame, up to the pong of a ping sent behind it, as
    JSON with the chat's id written `<chat>`."""
    seen = len(client.frames)
    await client.send({**frame, "chatId": chat_id})
    await client.ping()
    return [
        json.dumps(answer, sort_keys=True).replace(chat_id, "<chat>")
        for answer in client.frames[seen:]
    ]


def conversations(live: Live) -> set[str]:
    return {a.name for a in live.services.system.actor_states() if a.name.startswith("chat:")}


async def test_someone_elses_chat_answers_as_no_chat_at_all(live: Live) -> None:
    ann_token = await live.login(ANN)
    compared: list[tuple[str, str, list[str], list[str]]] = []
    async with (
        connect(live, ann_token) as ann,
        connect(live, await live.customer_token("shop-customer-1")) as owner,
    ):
        await ready_agent(live, ann)
        # A customer has one active chat: the first is resolved before the second opens.
        resolved = (await open_chat(owner))["id"]
        await live.services.system.resolve_chat(resolved, by=ActedBy.ADMIN, actor_id=None)
        opened = await open_chat(owner, "Another question")
        assert (opened["status"], opened["agent"]["email"]) == ("open", ANN)
        assigned = opened["id"]
        awake = conversations(live)
        async with (
            connect(live, await live.login(BOB)) as bob,  # an agent, not this chat's
            connect(live, await live.customer_token("shop-customer-2")) as dan,
        ):
            for intruder in (bob, dan):
                for frame in CHAT_FRAMES:
                    nowhere = await answers(intruder, frame, new_id())
                    for chat_id in (assigned, resolved):
                        theirs = await answers(intruder, frame, chat_id)
                        compared.append((frame["type"], chat_id, theirs, nowhere))
        woken = conversations(live) - awake
    assert len(compared) == 2 * len(CHAT_FRAMES) * 2
    for kind, chat_id, theirs, nowhere in compared:
        assert theirs == nowhere, (kind, chat_id)
        # An answer besides the pong: a refusal, or a resume that recovered nothing.
        assert len(nowhere) == 2, (kind, nowhere)
        assert '"chat_not_found"' in nowhere[0]
    assert woken == set()
    for chat_id, status in ((assigned, ChatStatus.OPEN), (resolved, ChatStatus.RESOLVED)):
        chat = await live.services.store.get_chat(chat_id)
        assert chat is not None
        assert chat.status == status
        assert await live.services.store.list_messages(chat_id, after_seq=0, limit=10) == []
