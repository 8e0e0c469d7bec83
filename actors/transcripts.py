"""Each active chat's transcript head (last seq, last message, unread counts) as its conversation
last stored it: what the assignment actor puts into a chat it pushes (`ChatAssigned`), so that
neither it nor a connection's writer reads the store for it.

A registry, not an actor, like `Routes`: a chat's conversation is the only writer of its entry
(on activation and after each write); the assignment actor reads it, and forgets it when the chat
leaves the active set.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from store import Chat, Message, MessageStatus, Role


@dataclass(frozen=True, slots=True)
class TranscriptHead:
    last_seq: int
    last_message: Message | None
    agent_unread: int
    customer_unread: int

    def applied(self, chat: Chat) -> Chat:
        """`chat` with these transcript fields."""
        last = self.last_message
        return replace(
            chat,
            last_seq=self.last_seq,
            last_message_id=None if last is None else last.id,
            agent_unread_count=self.agent_unread,
            customer_unread_count=self.customer_unread,
        )

    def appended(self, messages: list[Message]) -> TranscriptHead:
        """After a run of stored messages, counted as the store counts them: a customer's is
        unread for the agent, anyone else's for the customer."""
        if not messages:
            return self
        from_customer = sum(m.sender_role == Role.CUSTOMER for m in messages)
        return TranscriptHead(
            messages[-1].seq,
            messages[-1],
            self.agent_unread + from_customer,
            self.customer_unread + len(messages) - from_customer,
        )

    def read(self, by_customer: bool, status: MessageStatus) -> TranscriptHead:
        """After a receipt: the reader's side has nothing unread once they have seen it."""
        if status != MessageStatus.SEEN:
            return self
        if by_customer:
            return replace(self, customer_unread=0)
        return replace(self, agent_unread=0)


class Transcripts:
    def __init__(self) -> None:
        self._heads: dict[str, TranscriptHead] = {}

    def publish(self, chat_id: str, head: TranscriptHead) -> None:
        self._heads[chat_id] = head

    def get(self, chat_id: str) -> TranscriptHead | None:
        return self._heads.get(chat_id)

    def forget(self, chat_id: str) -> None:
        self._heads.pop(chat_id, None)
