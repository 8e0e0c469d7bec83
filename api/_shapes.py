"""Store records to wire shapes where the shape needs more than the record (a chat embeds its
agent and its last message)."""

from __future__ import annotations

from actors import AgentCard
from api._schemas import AgentRef, ChatMessageOut, ChatOut
from store import Chat, EdgeStore, Message


async def chat_out(store: EdgeStore, chat: Chat) -> ChatOut:
    """The chat with its agent and last message read from the store (REST answers)."""
    user = await store.get_user(chat.agent_id) if chat.agent_id is not None else None
    last = await store.get_message(chat.last_message_id) if chat.last_message_id else None
    agent = AgentCard(user.id, user.name, user.email) if user is not None else None
    return chat_shape(chat, agent, last)


def chat_shape(chat: Chat, agent: AgentCard | None, last: Message | None) -> ChatOut:
    """The chat with the agent and last message an event carries: renders without a read."""
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
