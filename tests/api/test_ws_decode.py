"""A `message.send` frame in its plain form is read without building its model
(api._ws._plain_send), and decodes to exactly what the model makes of it: the same command, or
the same error for every frame the shortcut leaves to the models. An ack is written without its
model too (api._ws.ack_json), as the same text."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from api._frames import AckOut, client_frame
from api._ws import _invalid, _plain_send, _raw_ref, ack_json, decode
from api._ws_core import Ack, Inbound, PostMessage


def by_the_models(raw: dict[str, object]) -> Inbound:
    try:
        return client_frame.validate_python(raw).command()
    except ValidationError as error:
        return _invalid(error, raw, _raw_ref(raw))


def send(**fields: object) -> dict[str, object]:
    frame: dict[str, object] = {
        "type": "message.send",
        "chatId": "c1",
        "clientMsgId": "m-1",
        "content": "hello",
    }
    frame.update(fields)
    return {key: value for key, value in frame.items() if value is not None}


FRAMES = [
    send(),
    send(chatId="c" * 64),
    send(chatId="c" * 65),
    send(chatId=""),
    send(chatId=7),
    send(clientMsgId="!" + "~" * 127),
    send(clientMsgId="m" * 129),
    send(clientMsgId=""),
    send(clientMsgId="with space"),
    send(clientMsgId="tab\t"),
    send(clientMsgId="é"),
    send(clientMsgId="m\n"),
    send(content="x" * 16_000),
    send(content="x" * 16_001),
    send(content=""),
    send(content=" "),
    send(content="日本語 ✓\u0000"),
    send(content=["list"]),
    send(content=None),
    send(extra=1),
    send(type="typing"),
    send(type="message.sent"),
    {"type": "message.send", "chat_id": "c1", "client_msg_id": "m-1", "content": "hi"},
]


@pytest.mark.parametrize("raw", FRAMES, ids=lambda raw: json.dumps(raw)[:60])
def test_a_frame_decodes_as_its_model_decodes_it(raw: dict[str, object]) -> None:
    assert decode(json.dumps(raw)) == by_the_models(raw)


def test_the_plain_form_is_read_without_the_models() -> None:
    assert _plain_send(send()) == PostMessage("c1", "m-1", "hello")
    assert _plain_send(send(extra=1)) is None
    assert _plain_send(send(content="")) is None


ACKS = [
    Ack("m-1", "c1", 1, "id-1"),
    Ack("!~\"\\'", "chat/é 日本", 2**53, "x" * 200),
    Ack("m", "c", 0, "\u0000\u001f\u2028"),
]


@pytest.mark.parametrize("ack", ACKS, ids=lambda ack: ack.client_msg_id)
def test_an_ack_is_the_text_its_model_makes(ack: Ack) -> None:
    model = AckOut(
        client_msg_id=ack.client_msg_id, chat_id=ack.chat_id, seq=ack.seq, message_id=ack.message_id
    )
    assert ack_json(ack) == model.model_dump_json(by_alias=True)
