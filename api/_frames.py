"""Websocket frames: JSON text, one event per frame, `{"type": ...}`, camelCase fields.

Client frames are parsed into a discriminated union; server frames are built from models too, so the
README's examples and the code cannot drift apart.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, TypeAdapter

from api._schemas import WireModel

ChatId = Annotated[str, Field(min_length=1, max_length=64)]
ClientMsgId = Annotated[str, Field(min_length=1, max_length=128)]
MAX_CONTENT_CHARS = 16_000


class MessageSend(WireModel):
    type: Literal["message.send"]
    chat_id: ChatId
    client_msg_id: ClientMsgId
    content: Annotated[str, Field(min_length=1, max_length=MAX_CONTENT_CHARS)]


class Typing(WireModel):
    type: Literal["typing"]
    chat_id: ChatId
    on: bool


class Read(WireModel):
    type: Literal["read"]
    chat_id: ChatId
    seq: Annotated[int, Field(ge=0, le=2**53)]


class StatusSet(WireModel):
    type: Literal["status.set"]
    status: Literal["available", "away"]


class Resume(WireModel):
    type: Literal["resume"]
    chat_id: ChatId
    after_seq: Annotated[int, Field(ge=0, le=2**53)]


class Ping(WireModel):
    type: Literal["ping"]


ClientFrame = Annotated[
    MessageSend | Typing | Read | StatusSet | Resume | Ping, Field(discriminator="type")
]
client_frame: TypeAdapter[ClientFrame] = TypeAdapter(ClientFrame)
