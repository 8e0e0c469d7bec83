"""Which chats a user may see, and the one answer about any other chat.

A customer sees their own chats, an agent the chats assigned to them (and the resolved ones they
handled last), an admin every chat. Any other chat is answered exactly like a chat that does not
exist (same code, same message, one store read either way) on REST, /ws and Socket.IO, so an id
tells nobody whether someone else's chat exists.
"""

from __future__ import annotations

from store import Chat, Role

NOT_FOUND = "chat_not_found"
# The domain's own "not yours" refusals: they arise when a chat changes hands mid-request.
NOT_YOURS = frozenset({"not_your_chat", "not_a_participant"})


def may_see(user_id: str, role: Role, chat: Chat) -> bool:
    match role:
        case Role.ADMIN:
            return True
        case Role.CUSTOMER:
            return chat.customer_id == user_id
        case Role.AGENT:
            return chat.agent_id == user_id
        case _:
            return False


def not_found_message(chat_id: str) -> str:
    return f"no chat {chat_id} of yours"
