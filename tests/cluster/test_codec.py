"""What crosses the bus comes back equal, enums as enums; nothing unregistered is built."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from actors import AgentCard, ChatAssigned, MessageAdded, OpenedChat, Sent, Speaker
from cluster._codec import CodecError, decode, encode
from store import Chat, ChatStatus, Message, Priority, Role

AT = datetime(2026, 12, 5, 3, 0, 1, 250000, tzinfo=UTC)
CHAT = Chat(
    id="c1",
    customer_id="u1",
    title="t",
    status=ChatStatus.OPEN,
    agent_id="a1",
    priority=Priority.HIGH,
    created_at=AT,
    queued_at=None,
)
MESSAGE = Message(
    id="m1",
    chat_id="c1",
    seq=3,
    client_msg_id="x",
    sender_id="u1",
    sender_role=Role.CUSTOMER,
    content="hé",
    created_at=AT,
)


@pytest.mark.parametrize(
    "value",
    [
        OpenedChat(CHAT, True, AgentCard("a1", "Ann", "ann@example.com"), MESSAGE),
        OpenedChat(CHAT, True, None, None),
        Sent(MESSAGE, duplicate=False),
        MessageAdded(MESSAGE),
        ChatAssigned(CHAT, "least loaded", AgentCard("a1", "Ann", "ann@example.com"), MESSAGE),
        {"speaker": Speaker("u1", Role.AGENT), "ids": ("a", "b"), "n": None},
    ],
)
def test_values_come_back_equal(value: object) -> None:
    back = decode(encode(value))
    assert back == value


def test_a_str_enum_comes_back_as_the_enum_not_a_str() -> None:
    back = decode(encode(Speaker("u1", Role.AGENT)))
    assert type(back.role) is Role


def test_an_unregistered_class_is_neither_sent_nor_built() -> None:
    class Evil:
        pass

    with pytest.raises(TypeError, match="cannot cross the bus"):
        encode(Evil())
    with pytest.raises(CodecError):
        decode(b'{"~c": "Popen", "f": {"args": ["sh"]}}')
    with pytest.raises(CodecError):
        decode(b"not json")
