"""A stored message's `{message}` JSON is made once for the sender's `messageDelivered` and the
receiver's `messageReceived`, even when other chats' messages are rendered in between (as they
are when many chats are busy), and never given for another message."""

from __future__ import annotations

import json

import pytest

from api import _sio_namespace
from api._sio_events import SioMessage
from api._sio_namespace import MESSAGE_JSONS, message_json
from store import Message, Role


def stored(n: int) -> Message:
    return Message(f"m{n}", f"chat-{n}", 1, f"c{n}", "customer-1", Role.CUSTOMER, f"hello {n}")


def test_each_message_is_made_once_with_others_in_between(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    made: list[str] = []
    original = SioMessage.of.__func__  # type: ignore[attr-defined]

    def counting(cls: type[SioMessage], message: Message) -> SioMessage:
        made.append(message.id)
        return original(cls, message)  # type: ignore[no-any-return]

    monkeypatch.setattr(SioMessage, "of", classmethod(counting))
    monkeypatch.setattr(_sio_namespace, "_message_jsons", {})
    messages = [stored(n) for n in range(100)]
    delivered = [message_json(message) for message in messages]  # each sender's event
    received = [message_json(message) for message in messages]  # then each receiver's
    assert received == delivered
    assert made == [message.id for message in messages]
    for message, text in zip(messages, received, strict=True):
        assert json.loads(text.text)["message"]["_id"] == message.id


def test_what_is_kept_is_bounded_and_never_another_messages(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_sio_namespace, "_message_jsons", {})
    for n in range(MESSAGE_JSONS * 3):
        message = stored(n)  # ids of dead messages are reused by new ones
        assert json.loads(message_json(message).text)["message"]["content"] == f"hello {n}"
        assert len(_sio_namespace._message_jsons) <= MESSAGE_JSONS
