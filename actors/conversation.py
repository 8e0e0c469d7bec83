"""The ConversationActor: single writer of one chat's transcript, activated on demand.

`Transcript` holds the decisions (who may write or read, the next seq, which client ids were
seen) as plain code; the actor performs them: it persists a message before it acknowledges it,
then fans it out to the chat's participants. Seqs have no gaps because only this actor appends
to the chat and takes the next seq only after the previous append is durable; a failed append
crashes the actor, and the restart reloads `last_seq` from the store.

The actor stops itself after `idle_seconds` without a message (passivation), so only chats in
use cost memory; the next message to the chat starts it again from the store.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import assert_never

import trio

from actors.events import MessageAdded, ReadEvent, TypingEvent
from actors.messages import (
    ConversationMessage,
    DeleteTranscript,
    History,
    IdleCheck,
    MarkRead,
    ReadHistory,
    SendMessage,
    Sent,
    Speaker,
    SupervisorMessage,
    Typing,
)
from actors.messages import CustomerWrote as CustomerWroteMessage
from actors.presence import Presence, Route, Routes
from router import Actor, ActorRef, Refused
from store import (
    Chat,
    ChatStatus,
    DuplicateMessage,
    Message,
    NotFound,
    Notification,
    Role,
    Store,
    new_id,
    utcnow,
)

RECENT_CLIENT_IDS = 256  # resends usually follow closely; older ones are looked up in the store
NEW_MESSAGE = "new_message"  # the notification kind for a message that found its reader offline
PREVIEW_CHARS = 140


class Transcript:
    """One chat's writing rules and counters, without I/O."""

    def __init__(self, chat: Chat) -> None:
        self.chat_id = chat.id
        self.customer_id = chat.customer_id
        self.last_agent_id = chat.agent_id
        self.last_seq = chat.last_seq
        self._recent: OrderedDict[str, Message] = OrderedDict()

    def recent(self, client_msg_id: str) -> Message | None:
        return self._recent.get(client_msg_id)

    def resend(self, sender: Speaker, stored: Message) -> Sent:
        """A client id seen before: the same ack again, if it is the same sender's."""
        if stored.sender_id != sender.user_id:
            raise Refused(
                "client_msg_id_taken",
                f"clientMsgId {stored.client_msg_id!r} is already used in this chat by someone "
                "else; use a fresh id per message",
            )
        return Sent(stored, duplicate=True)

    def receiver(self, sender: Speaker, route: Route | None) -> str | None:
        """Who the message is for; refuses a sender who may not write in the chat now."""
        if route is None:
            raise Refused(
                "chat_resolved", f"chat {self.chat_id} is resolved; open a new chat to write again"
            )
        if sender.role == Role.CUSTOMER and sender.user_id == route.customer_id:
            return route.agent_id
        if sender.role == Role.AGENT and sender.user_id == route.agent_id:
            return route.customer_id
        raise Refused("not_a_participant", f"you are not taking part in chat {self.chat_id}")

    def check_reader(self, reader: Speaker, route: Route | None) -> None:
        """Participants read their chat; admins read any; an agent reads a resolved chat they
        had last."""
        if reader.role == Role.ADMIN or reader.user_id == self.customer_id:
            return
        if route is not None and route.participant(reader.user_id):
            return
        if route is None and reader.user_id == self.last_agent_id:
            return
        raise Refused("not_a_participant", f"you are not taking part in chat {self.chat_id}")

    def next_message(
        self, sender: Speaker, client_msg_id: str, content: str, receiver_id: str | None
    ) -> Message:
        return Message(
            id=new_id(),
            chat_id=self.chat_id,
            seq=self.last_seq + 1,
            client_msg_id=client_msg_id,
            sender_id=sender.user_id,
            sender_role=sender.role,
            content=content,
            receiver_id=receiver_id,
            created_at=utcnow(),
        )

    def stored(self, message: Message) -> None:
        self.last_seq = message.seq
        self.remember(message)

    def remember(self, message: Message) -> None:
        self._recent[message.client_msg_id] = message
        if len(self._recent) > RECENT_CLIENT_IDS:
            self._recent.popitem(last=False)


class ConversationActor(Actor[ConversationMessage]):
    def __init__(
        self,
        chat_id: str,
        store: Store,
        presence: Presence,
        routes: Routes,
        supervisor: ActorRef[SupervisorMessage],
        *,
        idle_seconds: float,
    ) -> None:
        self._chat_id = chat_id
        self._store = store
        self._presence = presence
        self._routes = routes
        self._supervisor = supervisor
        self._idle_seconds = idle_seconds
        self._last_activity = 0.0
        self._transcript: Transcript

    async def on_start(self) -> None:
        chat = await self._store.get_chat(self._chat_id)
        if chat is None:
            raise Refused("chat_not_found", f"chat {self._chat_id} does not exist")
        self._transcript = Transcript(chat)
        # A store may lose the connection between storing a message and updating the chat's
        # counters: the stored seqs, not the counter, say which seq comes next.
        while tail := await self._store.list_messages(
            self._chat_id, after_seq=self._transcript.last_seq, limit=500
        ):
            self._transcript.last_seq = tail[-1].seq
        self._last_activity = trio.current_time()
        self.context.send_after(self._idle_seconds, IdleCheck())

    async def handle(self, message: ConversationMessage) -> None:
        try:
            await self._handle(message)
        except NotFound as gone:
            # Deleted by another process of the cluster or a tool: a refusal, not a crash
            # whose restart could only fail to find the chat again.
            self.context.stop()
            raise Refused("chat_not_found", f"chat {self._chat_id} does not exist") from gone

    async def _handle(self, message: ConversationMessage) -> None:
        if not isinstance(message, IdleCheck):
            self._last_activity = trio.current_time()
        transcript = self._transcript
        route = self._routes.get(self._chat_id)
        match message:
            case SendMessage(sender, client_msg_id, content, reply):
                sent = await self._send(sender, client_msg_id, content, route)
                if not sent.duplicate:
                    # Before the ack, so whoever sees the ack also sees the notification.
                    await self._notify_if_offline(sent.message)
                reply.send(sent)
            case MarkRead(reader, seq, status, reply):
                transcript.check_reader(reader, route)
                if reader.role == Role.ADMIN:
                    # An admin watching is nobody's receiver: marking the messages seen would
                    # hide them from the agent's unread count.
                    reply.send(0)
                else:
                    changed = await self._store.mark_messages(
                        self._chat_id, reader_id=reader.user_id, up_to_seq=seq, status=status
                    )
                    reply.send(changed)
                    self._fan_out(
                        route,
                        reader.user_id,
                        ReadEvent(self._chat_id, reader.user_id, seq, status),
                    )
            case Typing(speaker, on):
                # Ephemeral: a typing signal from someone not in the chat is dropped quietly.
                if route is not None and route.participant(speaker.user_id):
                    self._fan_out(
                        route, speaker.user_id, TypingEvent(self._chat_id, speaker.user_id, on)
                    )
            case ReadHistory(reader, after_seq, limit, reply):
                transcript.check_reader(reader, route)
                messages = await self._store.list_messages(
                    self._chat_id, after_seq=after_seq, limit=limit + 1
                )
                reply.send(
                    History(tuple(messages[:limit]), transcript.last_seq, len(messages) <= limit)
                )
            case DeleteTranscript(reply):
                # The transcript's writer deletes it and stops in the same step, so no message
                # waiting behind this one is written to a chat that is gone: each fails with
                # ActorDead, and the next activation finds no chat.
                reply.send(await self._store.delete_chat(self._chat_id))
                self.context.stop()
            case IdleCheck():
                idle = trio.current_time() - self._last_activity
                if idle >= self._idle_seconds:
                    self.context.stop()
                else:
                    self.context.send_after(self._idle_seconds - idle, IdleCheck())
            case _ as unreachable:
                assert_never(unreachable)

    async def _send(
        self, sender: Speaker, client_msg_id: str, content: str, route: Route | None
    ) -> Sent:
        transcript = self._transcript
        seen = transcript.recent(client_msg_id)
        if seen is not None:
            return transcript.resend(sender, seen)
        # The store's unique (chat, clientMsgId) finds older resends, so a new message costs one
        # store call; the look-up happens only when the store or the rules say no.
        try:
            receiver_id = transcript.receiver(sender, route)
        except Refused as refusal:
            # A resend of a message stored before the chat closed still gets its ack.
            return await self._stored_resend(sender, client_msg_id, refusal)
        assert route is not None  # receiver() refuses a chat without a route
        try:
            message = await self._store.append_message(
                transcript.next_message(sender, client_msg_id, content, receiver_id)
            )
        except DuplicateMessage as duplicate:
            return await self._stored_resend(sender, client_msg_id, duplicate)
        transcript.stored(message)
        self._fan_out(route, None, MessageAdded(message))
        if (
            sender.role == Role.CUSTOMER
            and route.status == ChatStatus.PENDING
            and route.agent_id is None
        ):
            await self._supervisor.tell(CustomerWroteMessage(self._chat_id))
        return Sent(message, duplicate=False)

    async def _stored_resend(
        self, sender: Speaker, client_msg_id: str, otherwise: Exception
    ) -> Sent:
        """The stored message a client id names, as a resend. Without one, `otherwise` is
        raised: a refusal stands, and a duplicate seq crashes the actor, whose restart reloads
        the seqs."""
        stored = await self._store.get_message_by_client_id(self._chat_id, client_msg_id)
        if stored is None:
            raise otherwise
        self._transcript.remember(stored)
        return self._transcript.resend(sender, stored)

    async def _notify_if_offline(self, message: Message) -> None:
        """A message reaching someone with no live connection (an agent in their grace period, a
        customer whose page is closed) leaves them a notification; a run of messages in one chat
        makes one unread notification, not one each. Other events (a chat assigned, reassigned,
        closed) only reach agents who are connected, so they need none."""
        receiver_id = message.receiver_id
        if receiver_id is None or self._presence.connections(receiver_id) > 0:
            return
        latest, _ = await self._store.list_notifications(receiver_id, limit=1)
        last = latest[0] if latest else None
        if last and not last.read and last.kind == NEW_MESSAGE and last.chat_id == self._chat_id:
            return
        await self._store.add_notification(
            Notification(
                id=new_id(),
                user_id=receiver_id,
                kind=NEW_MESSAGE,
                title="New message",
                body=message.content[:PREVIEW_CHARS],
                chat_id=self._chat_id,
                created_at=utcnow(),
            )
        )

    def _fan_out(
        self, route: Route | None, skip: str | None, event: MessageAdded | ReadEvent | TypingEvent
    ) -> None:
        """Deliver to the chat's participants other than `skip` (every session of each)."""
        if route is None:
            return
        for user_id in (route.customer_id, route.agent_id):
            if user_id is not None and user_id != skip:
                self._presence.deliver(user_id, event)
