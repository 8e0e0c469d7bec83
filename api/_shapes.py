"""Store records to wire shapes where the shape needs more than the record (a chat embeds its
agent and its last message)."""

from __future__ import annotations

from api._schemas import AgentRef, ChatMessageOut, ChatOut
from store import Chat, Store


async def chat_out(store: Store, chat: Chat) -> ChatOut:
    agent = await store.get_user(chat.agent_id) if chat.agent_id is not None else None
    last = await store.get_message(chat.last_message_id) if chat.last_message_id else None
    return ChatOut(
        id=chat.id,
        title=chat.title,
        description=chat.description,
        status=chat.status,
        priority=chat.priority,
        customer_unread_count=chat.customer_unread_count,
        agent_unread_count=chat.agent_unread_count,
        created_at=chat.created_at,
        updated_at=chat.updated_at,
        last_seq=chat.last_seq,
        last_message=ChatMessageOut.of(last) if last is not None else None,
        customer=chat.customer_id,
        agent=AgentRef(id=agent.id, name=agent.name, email=agent.email) if agent else None,
    )
