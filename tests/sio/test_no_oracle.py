"""No oracle over Socket.IO, with the stock client: every event that names a chat answers someone
else's chat (open or resolved) exactly like an id that names no chat, through the ack and
through the original's `error` event alike, and never wakes the other chat's conversation."""

from __future__ import annotations

import json
from typing import Any

from store import ActedBy, ChatStatus, new_id
from tests.conftest import Live
from tests.sio.node import NodeClients
from tests.sio.test_interop import connected, make_available, open_chat, user_id

ANN = "ann@switchboard.example"
BOB = "bob@switchboard.example"

# Each event with what it carries besides the chat's id.
CHAT_EVENTS: tuple[tuple[str, dict[str, Any]], ...] = (
    ("sendMessage", {"message": "anyone there?"}),
    ("joinChat", {}),
    ("startTyping", {}),
    ("stopTyping", {}),
    ("leaveChat", {}),
)
# Events the original answered with an `error` event when no ack was asked for.
WITH_ERROR_EVENT = ("sendMessage", "joinChat")

NOT_FOUND = {"code": "chat_not_found", "message": "no chat <chat> of yours"}
EXPECTED: dict[str, Any] = {
    "sendMessage": {"error": NOT_FOUND},
    "joinChat": {"error": NOT_FOUND},
    "startTyping": {"error": NOT_FOUND},
    # Leaving, or stopping to type, where one never was changes nothing, whoever's chat it is.
    "stopTyping": {"room": "<chat>"},
    "leaveChat": {"room": "<chat>"},
    "sendMessage (error event)": {
        "message": "Failed to send message",
        "code": "chat_not_found",
        "error": "no chat <chat> of yours",
    },
    "joinChat (error event)": {
        "message": "Failed to join chat",
        "code": "chat_not_found",
        "error": "no chat <chat> of yours",
    },
}


def hidden(answer: Any, chat_id: str) -> str:
    return json.dumps(answer, sort_keys=True).replace(chat_id, "<chat>")


async def acked(
    node: NodeClients, name: str, event: str, extra: dict[str, Any], chat_id: str
) -> str:
    return hidden(await node.call(name, event, {"chatId": chat_id, **extra}), chat_id)


async def error_event(
    node: NodeClients, name: str, event: str, extra: dict[str, Any], chat_id: str
) -> str:
    await node.emit(name, event, {"chatId": chat_id, **extra})
    return hidden(await node.event(name, "error"), chat_id)


def conversations(live: Live) -> set[str]:
    return {a.name for a in live.services.system.actor_states() if a.name.startswith("chat:")}


async def test_someone_elses_chat_answers_as_no_chat_at_all(live: Live, node: NodeClients) -> None:
    ann_token = await live.login(ANN)
    await connected(node, "ann", ann_token)
    await make_available(live, await user_id(live, ann_token))
    owner = await user_id(live, await live.customer_token("shop-customer-1"))
    resolved = await open_chat(live, owner)
    await live.services.system.resolve_chat(resolved, by=ActedBy.ADMIN, actor_id=None)
    assigned = await open_chat(live, owner)
    awake = conversations(live)
    await connected(node, "bob", await live.login(BOB))  # an agent, not this chat's
    await connected(node, "dan", await live.customer_token("shop-customer-2"))

    compared: list[tuple[str, str, str, str]] = []
    for name in ("bob", "dan"):
        for event, extra in CHAT_EVENTS:
            nowhere = await acked(node, name, event, extra, new_id())
            for chat_id in (assigned, resolved):
                theirs = await acked(node, name, event, extra, chat_id)
                compared.append((event, chat_id, theirs, nowhere))
        for event in WITH_ERROR_EVENT:
            extra = dict(CHAT_EVENTS)[event]
            nowhere = await error_event(node, name, event, extra, new_id())
            for chat_id in (assigned, resolved):
                theirs = await error_event(node, name, event, extra, chat_id)
                compared.append((f"{event} (error event)", chat_id, theirs, nowhere))

    assert len(compared) == 2 * (len(CHAT_EVENTS) + len(WITH_ERROR_EVENT)) * 2
    for event, chat_id, theirs, nowhere in compared:
        assert theirs == nowhere, (event, chat_id)
        assert json.loads(nowhere) == EXPECTED[event], event
    assert conversations(live) - awake == set()
    for chat_id, status in ((assigned, ChatStatus.OPEN), (resolved, ChatStatus.RESOLVED)):
        chat = await live.services.store.get_chat(chat_id)
        assert chat is not None
        assert chat.status == status
        assert await live.services.store.list_messages(chat_id, after_seq=0, limit=10) == []
