"""Which chats a caller may see (api/_visibility.py), and asking the domain on a request's
behalf: any chat not the caller's is answered 404, exactly like a chat that does not exist.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import TypeVar

import trio

from api._errors import ASK_SECONDS, ApiError
from api._guard import current_principal
from api._services import services
from api._visibility import NOT_FOUND, NOT_YOURS, may_see, not_found_message
from router import Refused
from store import Chat, Role, User

T = TypeVar("T")


def chat_not_found(chat_id: str) -> ApiError:
    return ApiError(404, NOT_FOUND, not_found_message(chat_id))


async def visible_chat(chat_id: str) -> Chat:
    chat = await services().store.get_chat(chat_id)
    me = current_principal().user
    if chat is None or not may_see(me.id, me.role, chat):
        raise chat_not_found(chat_id)
    return chat


async def ask(chat_id: str | None, answer: Awaitable[T]) -> T:
    """The domain's answer within ASK_SECONDS (else 503). A refusal because the chat is not the
    caller's becomes the same 404 as `visible_chat`."""
    try:
        with trio.fail_after(ASK_SECONDS):
            return await answer
    except Refused as refusal:
        if chat_id is not None and refusal.code in NOT_YOURS:
            raise chat_not_found(chat_id) from refusal
        raise


async def store_profile(edited: User) -> User:
    """Store an edited profile; answers the stored record. An agent's is written by their agent
    actor (which tells the assignment actor, pushing chats without reading the store, their new
    card); anyone else's here. Raises DuplicateEmail, or Refused("email_taken") for an agent."""
    if edited.role is Role.AGENT:
        return await ask(None, services().system.edit_agent_profile(edited))
    return await services().store.update_user(edited)
