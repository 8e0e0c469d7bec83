"""Messages over REST, the original backend's paths: the same path into a chat as the websocket's
(`System.send_message`), so a message sent here gets its seq, is deduplicated by its client id,
and reaches the other side's live connections exactly as one sent over the websocket."""

from __future__ import annotations

from quart import Blueprint, Response
from quart_schema import (
    document_response,
    validate_headers,
    validate_querystring,
    validate_request,
)

from actors import Speaker
from api._access import ask, visible_chat
from api._errors import ApiError
from api._guard import current_principal, requires
from api._pages import NumberedPageQuery, PageHeaders, page_response
from api._paths import choice
from api._payloads import IdempotencyHeaders, MessageList, SendMessageBody
from api._respond import respond
from api._schemas import ChatMessageOut
from api._services import services
from api._visibility import may_see
from store import MessageStatus, Role, new_id
from telemetry import limit_hit

messages = Blueprint("messages", __name__)


def _client_msg_id(data: SendMessageBody, headers: IdempotencyHeaders) -> str:
    """The sender's key for the message: `clientMsgId`, or the Idempotency-Key header. Without
    either the server makes one up, so a retry of that request stores the message again."""
    body, header = data.client_msg_id, headers.idempotency_key
    if body is not None and header is not None and body != header:
        raise ApiError(
            409,
            "idempotency_key_mismatch",
            "clientMsgId and the Idempotency-Key header differ; send one of them, or the same",
        )
    return body or header or f"server-{new_id()}"


async def _send(data: SendMessageBody, headers: IdempotencyHeaders) -> Response:
    me = current_principal().user
    wait = services().throttles.sends.take(me.id)
    if wait:
        limit_hit("message_rate", edge="rest", principal=me.id)
        raise ApiError(
            429, "rate_limited", "too many messages; slow down and retry", retry_after=wait
        )
    client_msg_id = _client_msg_id(data, headers)
    chat = await visible_chat(data.chat_id)
    sent = await ask(
        chat.id,
        services().system.send_message(
            chat.id, Speaker(me.id, me.role), client_msg_id=client_msg_id, content=data.content
        ),
    )
    return respond(ChatMessageOut.of(sent.message), 200 if sent.duplicate else 201)


async def _list(chat_id: str, query: NumberedPageQuery) -> Response:
    chat = await visible_chat(chat_id)
    listed = await services().store.list_messages(
        chat.id, after_seq=query.after, limit=query.size + 1
    )
    page = listed[: query.size]
    next_cursor = page[-1].seq if len(listed) > query.size else None
    return page_response(MessageList([ChatMessageOut.of(m) for m in page]), next_cursor)


async def _mark(message_id: str, status: str) -> Response:
    """Read receipts are cumulative, as over the websocket: marking a message marks it and every
    earlier one from the other side. Your own messages are left as they are."""
    wanted = choice("status", status, (MessageStatus.DELIVERED, MessageStatus.SEEN))
    store = services().store
    message = await store.get_message(message_id)
    chat = await store.get_chat(message.chat_id) if message is not None else None
    me = current_principal().user
    if message is None or chat is None or not may_see(me.id, me.role, chat):
        raise ApiError(404, "message_not_found", f"no message {message_id} in a chat of yours")
    await ask(
        chat.id,
        services().system.mark_read(
            chat.id, Speaker(me.id, me.role), seq=message.seq, status=wanted
        ),
    )
    return respond(ChatMessageOut.of(await store.get_message(message.id) or message))


@messages.get("/messages/agent/<id:chat_id>")
@requires(Role.AGENT)
@validate_querystring(NumberedPageQuery)
@document_response(MessageList, 200, PageHeaders)
async def agent_messages(chat_id: str, query_args: NumberedPageQuery) -> Response:
    """The messages of one of your chats, in seq order."""
    return await _list(chat_id, query_args)


@messages.post("/messages/agent/send")
@requires(Role.AGENT)
@validate_headers(IdempotencyHeaders)
@validate_request(SendMessageBody)
@document_response(ChatMessageOut, 201)
@document_response(ChatMessageOut, 200)
async def agent_send(data: SendMessageBody, headers: IdempotencyHeaders) -> Response:
    """Write to the customer of one of your chats (201; 200 with the stored message when its
    clientMsgId or Idempotency-Key was sent before)."""
    return await _send(data, headers)


@messages.put("/messages/agent/<id:message_id>/<oneof(delivered, seen):status>")
@requires(Role.AGENT)
@document_response(ChatMessageOut)
async def agent_mark(message_id: str, status: str) -> Response:
    """Mark the customer's messages up to this one delivered or seen."""
    return await _mark(message_id, status)


@messages.get("/messages/customer/<id:chat_id>")
@requires(Role.CUSTOMER)
@validate_querystring(NumberedPageQuery)
@document_response(MessageList, 200, PageHeaders)
async def customer_messages(chat_id: str, query_args: NumberedPageQuery) -> Response:
    """The messages of your chat, in seq order."""
    return await _list(chat_id, query_args)


@messages.post("/messages/customer/send")
@requires(Role.CUSTOMER)
@validate_headers(IdempotencyHeaders)
@validate_request(SendMessageBody)
@document_response(ChatMessageOut, 201)
@document_response(ChatMessageOut, 200)
async def customer_send(data: SendMessageBody, headers: IdempotencyHeaders) -> Response:
    """Write in your chat (201; 200 with the stored message when its clientMsgId or
    Idempotency-Key was sent before). A chat set pending goes back to the queue."""
    return await _send(data, headers)


@messages.put("/messages/customer/<id:message_id>/<oneof(delivered, seen):status>")
@requires(Role.CUSTOMER)
@document_response(ChatMessageOut)
async def customer_mark(message_id: str, status: str) -> Response:
    """Mark the agent's messages up to this one delivered or seen."""
    return await _mark(message_id, status)
