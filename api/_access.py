"""Which chats a caller may see, and asking the domain on a request's behalf.

A customer sees their own chats, an agent the chats assigned to them (and the resolved ones they
handled last), an admin every chat. Any other chat is answered 404, exactly like a chat that does
not exist, so an id tells nobody whether someone else's chat exists.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import TypeVar

import trio

from api._errors import ASK_SECONDS, ApiError
from api._guard import current_principal
from api._services import services
from router import Refused
from store import Chat, Role, User

T = TypeVar("T")

# The domain's own "not yours" refusals: they arise when a chat changes hands mid-request.
_NOT_YOURS = frozenset({"not_your_chat", "not_a_participant"})


def may_see(user: User, chat: Chat) -> bool:
    match user.role:
        case Role.ADMIN:
            return True
        case Role.CUSTOMER:
            return chat.customer_id == user.id
        case Role.AGENT:
            return chat.agent_id == user.id
        case _:
            return False


def chat_not_found(chat_id: str) -> ApiError:
    return ApiError(404, "chat_not_found", f"no chat {chat_id} of yours")


async def visible_chat(chat_id: str) -> Chat:
    chat = await services().store.get_chat(chat_id)
    if chat is None or not may_see(current_principal().user, chat):
        raise chat_not_found(chat_id)
    return chat


async def ask(chat_id: str | None, answer: Awaitable[T]) -> T:
    """The domain's answer within ASK_SECONDS (else 503). A refusal because the chat is not the
    caller's becomes the same 404 as `visible_chat`."""
    try:
        with trio.fail_after(ASK_SECONDS):
            return await answer
    except Refused as refusal:
        if chat_id is not None and refusal.code in _NOT_YOURS:
            raise chat_not_found(chat_id) from refusal
        raise
