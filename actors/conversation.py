"""The ConversationActor: single writer of one chat's transcript, activated on demand.

`Transcript` holds the decisions (who may write or read, the next seq, which client ids were
seen) as plain code; the actor performs them: it persists a message before it acknowledges it,
then fans it out to the chat's participants. Every send waiting in the mailbox behind the one
being handled is stored with it in one `append_messages` call (all or none), so a busy chat costs
one store round trip per batch, not per message; the store refuses a batch without saying which
message it refused (a client id stored before), so then they are appended one by one and only
that one is answered as a resend.

Seqs have no gaps because only this actor appends to the chat and numbers a batch only from the
last seq known durable. A write that fails (the database unreachable, an error that may hide a
commit, or a seq some other writer took) answers every send of its batch `store_unavailable`
(clients resend with the same client id) and the actor carries on: before it numbers anything
again, it reads which seqs the store holds, so a write that did commit is found and its resends
are answered from it.

The actor stops itself after `idle_seconds` without a message (passivation), so only chats in
use cost memory; the next message to the chat starts it again from the store. A resolved chat's
actor stops after `closed_idle_seconds` without a message instead, counted from the resolution
(`ChatClosed`, told by the assignment actor) or from its last message: what still reaches it (the
last receipts, sends that crossed the resolution, a reader's history) comes within moments, and
anything later starts it again. Kept for the whole idle time, resolved chats outnumbered active
ones ten to one under chat turnover, and every full garbage collection walked them.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import replace
from itertools import takewhile
from typing import assert_never

import trio

from actors.events import MessageAdded, ReadEvent, TypingEvent
from actors.messages import (
    AssignmentMessage,
    ChatClosed,
    ConversationMessage,
    DeleteTranscript,
    History,
    IdleCheck,
    MarkRead,
    ReadHistory,
    SendMessage,
    Sent,
    Speaker,
    Typing,
)
from actors.messages import CustomerWrote as CustomerWroteMessage
from actors.presence import Presence, Route, Routes
from actors.transcripts import TranscriptHead, Transcripts
from router import ActorDead, ActorRef, BatchActor, Refused, Timer
from store import (
    Chat,
    ChatStatus,
    DuplicateMessage,
    Message,
    MessageStatus,
    NotFound,
    Notification,
    Role,
    Store,
    StoreError,
    StoreUnavailable,
    new_id,
    statuses_below,
    utcnow,
)

log = logging.getLogger("actors")

RECENT_CLIENT_IDS = 256  # resends usually follow closely; older ones are looked up in the store
NEW_MESSAGE = "new_message"  # the notification kind for a message that found its reader offline
PREVIEW_CHARS = 140
# Sends stored in one append at most: the conversation's whole mailbox (CONVERSATION_MAILBOX).
SEND_BATCH = 64


class Transcript:
    """One chat's writing rules and counters, without I/O."""

    def __init__(self, chat: Chat) -> None:
        self.chat_id = chat.id
        self.customer_id = chat.customer_id
        self.last_agent_id = chat.agent_id
        self.last_seq = chat.last_seq
        self._recent: OrderedDict[str, Message] = OrderedDict()
        # By reader and status: every message up to this seq not sent by the reader has that
        # status or a later one (statuses only rise, and only this actor raises them). Lost
        # with the actor: the first receipt after an activation starts from the first message.
        self._marked: dict[tuple[str, MessageStatus], int] = {}

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
        self,
        sender: Speaker,
        client_msg_id: str,
        content: str,
        receiver_id: str | None,
        *,
        planned: int = 0,
    ) -> Message:
        """The message after the last stored one and the `planned` ones numbered before it."""
        return Message(
            id=new_id(),
            chat_id=self.chat_id,
            seq=self.last_seq + planned + 1,
            client_msg_id=client_msg_id,
            sender_id=sender.user_id,
            sender_role=sender.role,
            content=content,
            receiver_id=receiver_id,
            created_at=utcnow(),
        )

    def marked_up_to(self, reader_id: str, status: MessageStatus) -> int:
        """The seq up to which `reader_id`'s receipt of `status` would change nothing."""
        # A receipt of `status` or of a later status (seen covers delivered).
        covering = frozenset(MessageStatus) - statuses_below(status)
        return max(self._marked.get((reader_id, s), 0) for s in covering)

    def marked(self, reader_id: str, up_to_seq: int, status: MessageStatus) -> None:
        """A receipt up to `up_to_seq` is stored. It covers only the messages stored when it
        was: a later message with a seq below a receipt's (a client may name any seq) is
        still unmarked."""
        key = (reader_id, status)
        self._marked[key] = max(self._marked.get(key, 0), min(up_to_seq, self.last_seq))

    def stored(self, message: Message) -> None:
        self.last_seq = message.seq
        self.remember(message)

    def remember(self, message: Message) -> None:
        self._recent[message.client_msg_id] = message
        if len(self._recent) > RECENT_CLIENT_IDS:
            self._recent.popitem(last=False)


class ConversationActor(BatchActor[ConversationMessage]):
    max_batch = SEND_BATCH

    def __init__(
        self,
        chat_id: str,
        store: Store,
        presence: Presence,
        routes: Routes,
        transcripts: Transcripts,
        assignment_actor: ActorRef[AssignmentMessage],
        *,
        idle_seconds: float,
        closed_idle_seconds: float,
    ) -> None:
        self._chat_id = chat_id
        self._store = store
        self._presence = presence
        self._routes = routes
        self._transcripts = transcripts
        self._head = TranscriptHead(0, None, 0, 0)
        self._assignment_actor = assignment_actor
        self._idle_seconds = idle_seconds
        self._closed_idle_seconds = closed_idle_seconds
        self._last_activity = 0.0
        self._idle_timer: Timer | None = None  # the one IdleCheck pending, due at _idle_due
        self._idle_due = 0.0
        self._transcript: Transcript
        self._unsure = False  # a write failed that may have committed: catch up before the next
        self._stopping = False

    def _stop(self) -> None:
        self._stopping = True
        self.context.stop()

    async def _catch_up(self) -> None:
        """Take the seqs the store holds after the last one known: the next seq follows them."""
        transcript = self._transcript
        while tail := await self._store.list_messages(
            self._chat_id, after_seq=transcript.last_seq, limit=500
        ):
            for message in tail:
                transcript.stored(message)
            self._moved(self._head.appended(tail))
        self._unsure = False

    def _moved(self, head: TranscriptHead) -> None:
        """The transcript's head changed: published while the chat is active (the assignment actor
        forgets it when the chat leaves the active set)."""
        self._head = head
        if self._routes.get(self._chat_id) is not None:
            self._transcripts.publish(self._chat_id, head)

    async def on_start(self) -> None:
        chat = await self._store.get_chat(self._chat_id)
        if chat is None:
            raise Refused("chat_not_found", f"chat {self._chat_id} does not exist")
        self._transcript = Transcript(chat)
        self._head = TranscriptHead(
            chat.last_seq, None, chat.agent_unread_count, chat.customer_unread_count
        )
        # A store may lose the connection between storing a message and updating the chat's
        # counters: the stored seqs, not the counter, say which seq comes next.
        await self._catch_up()
        if self._head.last_message is None and self._head.last_seq:
            last = await self._store.list_messages(
                self._chat_id, after_seq=self._head.last_seq - 1, limit=1
            )
            self._head = replace(self._head, last_message=last[0] if last else None)
        self._moved(self._head)
        self._last_activity = trio.current_time()
        self._check_idle_at(self._last_activity + self._quiet_limit())

    async def handle_batch(self, batch: list[ConversationMessage]) -> None:
        """What waited in the mailbox, in order: consecutive sends stored in one append, anything
        else alone. After a stop (deleted, passivated, gone) the rest is answered ActorDead, as
        a stopping actor answers what is left in its mailbox."""
        done = 0
        while done < len(batch):
            if self._stopping:
                _refuse(batch[done:], ActorDead(self.context.name))
                return
            # Consecutive sends together, anything else alone, in the order they came.
            sends = [m for m in takewhile(_is_send, batch[done:]) if isinstance(m, SendMessage)]
            step: list[ConversationMessage] = [*sends] if sends else [batch[done]]
            done += len(step)
            if not isinstance(step[0], IdleCheck):
                self._last_activity = trio.current_time()
            try:
                if sends:
                    await self._send_all(sends)
                else:
                    await self._handle(step[0])
            except StoreUnavailable as error:
                # A receipt, a history read or a delete that could not reach the database: the
                # asker retries; nothing here needs reloading.
                _refuse(step, error)
            except NotFound as gone:
                # Deleted by another process of the cluster or a tool: a refusal, not a crash
                # whose restart could only fail to find the chat again.
                self._stop()
                _refuse(step, Refused("chat_not_found", f"chat {self._chat_id} does not exist"))
                log.info("chat %s is gone: %s", self._chat_id, gone)
            except Refused as refusal:
                _refuse(step, refusal)
        if not self._stopping and self._routes.get(self._chat_id) is None:
            # Resolved (told, or found out by a message): stop after the short quiet time.
            self._check_idle_at(self._last_activity + self._closed_idle_seconds)

    def _quiet_limit(self) -> float:
        """How long without a message before passivating: short once the chat is resolved."""
        if self._routes.get(self._chat_id) is None:
            return self._closed_idle_seconds
        return self._idle_seconds

    def _check_idle_at(self, deadline: float) -> None:
        """Have the pending idle check come at `deadline` if that is sooner than it would."""
        if self._idle_timer is not None:
            if self._idle_due <= deadline:
                return
            self._idle_timer.cancel()
        self._idle_due = deadline
        self._idle_timer = self.context.send_after(
            max(0.0, deadline - trio.current_time()), IdleCheck()
        )

    async def _handle(self, message: ConversationMessage) -> None:
        transcript = self._transcript
        route = self._routes.get(self._chat_id)
        match message:
            case SendMessage():
                await self._send_all([message])
            case MarkRead(reader, seq, status, reply):
                transcript.check_reader(reader, route)
                if reader.role == Role.ADMIN:
                    # An admin watching is nobody's receiver: marking the messages seen would
                    # hide them from the agent's unread count.
                    reply.send(None)
                else:
                    await self._store.mark_messages(
                        self._chat_id,
                        reader_id=reader.user_id,
                        up_to_seq=seq,
                        status=status,
                        after_seq=transcript.marked_up_to(reader.user_id, status),
                    )
                    transcript.marked(reader.user_id, seq, status)
                    self._moved(self._head.read(reader.user_id == transcript.customer_id, status))
                    reply.send(None)
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
                self._transcripts.forget(self._chat_id)
                self._stop()
            case IdleCheck():
                self._idle_timer = None
                if trio.current_time() - self._last_activity >= self._quiet_limit():
                    self._stop()
                else:
                    self._check_idle_at(self._last_activity + self._quiet_limit())
            case ChatClosed():
                pass  # a message like any other: the quiet time starts now (see handle_batch)
            case _ as unreachable:
                assert_never(unreachable)

    async def _send_all(self, sends: list[SendMessage]) -> None:
        """Store the new messages among `sends` in one append, then fan them out and answer
        each send; resends and refusals are answered without storing anything."""
        if self._unsure:
            try:
                await self._catch_up()
            except StoreError as error:
                _refuse(sends, _unavailable(error))
                return
        route = self._routes.get(self._chat_id)
        transcript = self._transcript
        planned: dict[str, tuple[SendMessage, Message]] = {}  # by client id, in seq order
        repeats: list[SendMessage] = []  # a client id planned earlier in this batch
        for send in sends:
            try:
                if (seen := transcript.recent(send.client_msg_id)) is not None:
                    send.reply.send(transcript.resend(send.sender, seen))
                elif send.client_msg_id in planned:
                    repeats.append(send)
                else:
                    receiver_id = transcript.receiver(send.sender, route)
                    planned[send.client_msg_id] = (
                        send,
                        transcript.next_message(
                            send.sender,
                            send.client_msg_id,
                            send.content,
                            receiver_id,
                            planned=len(planned),
                        ),
                    )
            except Refused as refusal:
                # A resend of a message stored before the chat closed still gets its ack.
                await self._answer_stored(send, refusal)
        if planned:
            assert route is not None  # receiver() refuses a chat without a route
            try:
                stored = await self._store.append_messages([m for _, m in planned.values()])
            except DuplicateMessage:
                # The store does not say which: a client id stored before. One by one, each
                # after the last stored, so the others are still stored and acknowledged.
                stored = await self._append_one_by_one(list(planned.values()))
            except StoreError as error:
                if isinstance(error, NotFound):
                    raise
                self._unsure = True
                _refuse([send for send, _ in planned.values()], _unavailable(error))
                stored = []
            else:
                for message in stored:
                    transcript.stored(message)
            self._moved(self._head.appended(stored))
            await self._deliver(stored, route)
            for message in stored:
                send, _ = planned[message.client_msg_id]
                send.reply.send(Sent(message, duplicate=False))
        for send in repeats:
            seen = transcript.recent(send.client_msg_id)
            try:
                if seen is None:
                    raise StoreUnavailable("the message could not be stored; resend it")
                send.reply.send(transcript.resend(send.sender, seen))
            except (Refused, StoreUnavailable) as refusal:
                send.reply.fail(refusal)

    async def _append_one_by_one(self, planned: list[tuple[SendMessage, Message]]) -> list[Message]:
        """Append each message alone; a client id stored before is answered as a resend. Returns
        the messages stored; a failed write answers the sends left `store_unavailable`."""
        transcript = self._transcript
        stored: list[Message] = []
        for index, (send, message) in enumerate(planned):
            try:
                done = await self._store.append_message(
                    replace(message, seq=transcript.last_seq + 1)
                )
            except DuplicateMessage as duplicate:
                if await self._answer_stored(send, duplicate):
                    continue
                # Not a resend: the seq is taken. Catch up before numbering anything again.
                error: StoreError = StoreUnavailable(f"seq {transcript.last_seq + 1} is taken")
            except StoreError as failed:
                if isinstance(failed, NotFound):
                    raise
                error = failed
            else:
                transcript.stored(done)
                stored.append(done)
                continue
            self._unsure = True
            _refuse([send for send, _ in planned[index:]], _unavailable(error))
            break
        return stored

    async def _answer_stored(
        self, send: SendMessage, otherwise: Refused | DuplicateMessage
    ) -> bool:
        """Answer `send` with the stored message its client id names, as a resend; without one,
        with the refusal `otherwise`. False, answering nothing, when there is none and
        `otherwise` is a duplicate: then its seq was taken (by another writer)."""
        try:
            stored = await self._store.get_message_by_client_id(self._chat_id, send.client_msg_id)
        except StoreError as error:
            send.reply.fail(_unavailable(error))
            return True
        if stored is None:
            if isinstance(otherwise, DuplicateMessage):
                return False
            send.reply.fail(otherwise)
            return True
        self._transcript.remember(stored)
        try:
            send.reply.send(self._transcript.resend(send.sender, stored))
        except Refused as refusal:
            send.reply.fail(refusal)
        return True

    async def _deliver(self, stored: list[Message], route: Route) -> None:
        """Fan the stored messages out in seq order, leave their offline readers a notification
        (before the acks, so whoever sees an ack also sees it), and wake a waiting chat."""
        for message in stored:
            self._fan_out(route, None, MessageAdded(message))
        receivers = {m.receiver_id: m for m in reversed(stored)}  # each one's first message
        for message in receivers.values():
            try:
                await self._notify_if_offline(message)
            except StoreError as error:
                # The messages are stored; the reader sees them when they come back anyway.
                log.warning("no notification for chat %s: %s", self._chat_id, error)
        customer_wrote = any(m.sender_role == Role.CUSTOMER for m in stored)
        if customer_wrote and route.status == ChatStatus.PENDING and route.agent_id is None:
            await self._assignment_actor.tell(CustomerWroteMessage(self._chat_id))

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


def _refuse(messages: Iterable[ConversationMessage], error: Exception) -> None:
    """Fail the unanswered asks among `messages` with `error`."""
    for message in messages:
        match message:
            case SendMessage(reply=reply) | MarkRead(reply=reply) | ReadHistory(reply=reply):
                if not reply.done:
                    reply.fail(error)
            case DeleteTranscript(reply=reply):
                if not reply.done:
                    reply.fail(error)
            case Typing() | IdleCheck() | ChatClosed():
                log.warning("a conversation refused %s: %s", type(message).__name__, error)
            case _ as unreachable:
                assert_never(unreachable)


def _unavailable(error: StoreError) -> StoreUnavailable:
    """What a sender hears of a failed write: retry (with the same client id) shortly."""
    if isinstance(error, StoreUnavailable):
        return error
    return StoreUnavailable(f"the message may not be stored: {error}; resend it")


def _is_send(message: ConversationMessage) -> bool:
    return isinstance(message, SendMessage)
