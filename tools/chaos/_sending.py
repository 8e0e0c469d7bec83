"""What a client sends and shows: its in-order view of a chat, its half of a chat's messages
(sent in a window, resent until acknowledged), and one live connection."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import trio
from trio_websocket import (
    ConnectionClosed,
    WebSocketConnection,
)

from tools._ws_client import message_send
from tools.chaos._plan import (
    ACK_SECONDS,
    WINDOW_RETRY_SECONDS,
    Frame,
    Stats,
)
from tools.chaos._run import ChatPlan
from tools.chaos_check import (
    AckRecord,
)

if TYPE_CHECKING:
    from tools.chaos._peers import ReconnectingClient


class ShownChat:
    """One client's in-order picture of one chat: a message is shown once every earlier one is;
    ones that arrive ahead of a gap wait for it (live pushes can overtake a resume's answer)."""

    def __init__(self) -> None:
        self.seen: list[tuple[int, str]] = []
        self.ahead: dict[int, str] = {}
        self.inflight = 0  # resumes sent on this connection, not answered yet
        self.answered = 0  # resumes answered
        self.last_answer = -1  # lastSeq of the latest answer
        self.changed = trio.Event()

    @property
    def last(self) -> int:
        return len(self.seen)

    def offer(self, seq: int, message_id: str, stats: Stats) -> bool:
        """Show a message if it is next; True if it reveals a gap."""
        if seq <= self.last:
            stats.duplicates += 1
            return False
        if seq > self.last + 1:
            stats.gaps += seq not in self.ahead
            self.ahead[seq] = message_id
            return True
        self.seen.append((seq, message_id))
        while (following := self.ahead.pop(self.last + 1, None)) is not None:
            self.seen.append((self.last + 1, following))
        return False

    def answer(self, last_seq: int) -> None:
        self.inflight = max(0, self.inflight - 1)
        self.answered += 1
        self.last_answer = last_seq
        self.changed.set()
        self.changed = trio.Event()

    @property
    def caught_up(self) -> bool:
        return not self.ahead and self.last >= self.last_answer


class ChatSender:
    """One sender's messages into one chat. Unacknowledged ones are resent, in order, with the
    same clientMsgId after a reconnect; at most `window` are unacknowledged at once."""

    def __init__(self, peer: ReconnectingClient, chat: ChatPlan) -> None:
        self.peer = peer
        self.chat = chat
        self.unacked: dict[str, str] = {}  # clientMsgId -> content, in send order
        self.retry: list[str] = []  # refused for now: send again
        self.changed = trio.Event()

    def _wake(self) -> None:
        self.changed.set()
        self.changed = trio.Event()

    def next_message(self) -> str | None:
        raise NotImplementedError

    def finished(self) -> bool:
        raise NotImplementedError

    def on_ack(self, client_msg_id: str) -> None:
        raise NotImplementedError

    def refused(self, client_msg_id: str) -> None:
        self.retry.append(client_msg_id)
        self._wake()

    def ack(self, frame: Frame) -> bool:
        client_msg_id = frame["clientMsgId"]
        content = self.unacked.pop(client_msg_id, None)
        if content is None:
            return False
        self.peer.run.acked(
            AckRecord(frame["chatId"], client_msg_id, content, frame["seq"], frame["messageId"])
        )
        self.on_ack(client_msg_id)
        self._wake()
        return True

    async def pump(self, link: Link) -> None:
        chat_id = self.chat.chat_id
        assert chat_id is not None
        stats, window = self.peer.run.stats, self.peer.run.plan.window
        self.retry.clear()
        for client_msg_id, content in list(self.unacked.items()):
            stats.resends += 1
            await link.send_message(chat_id, client_msg_id, content)
        while not self.finished():
            if self.retry:
                await trio.sleep(WINDOW_RETRY_SECONDS)
                again, self.retry = self.retry, []
                for refused in again:
                    if (text := self.unacked.get(refused)) is not None:
                        stats.resends += 1
                        await link.send_message(chat_id, refused, text)
                continue
            fresh = self.next_message() if len(self.unacked) < window else None
            if fresh is None:
                changed = self.changed
                with trio.move_on_after(ACK_SECONDS) as waiting:
                    await changed.wait()
                if waiting.cancelled_caught and self.unacked:
                    stats.ack_stalls += 1
                    link.drop()
                    return
                continue
            content = f"chat{self.chat.index} {fresh}"
            self.unacked[fresh] = content
            await link.send_message(chat_id, fresh, content)


class CustomerHalf(ChatSender):
    def __init__(self, peer: ReconnectingClient, chat: ChatPlan, total: int) -> None:
        super().__init__(peer, chat)
        self.total = total
        self.sent = 0
        self.acked_count = 0

    def next_message(self) -> str | None:
        if self.sent >= self.total:
            return None
        self.sent += 1
        return f"c{self.sent}"

    def finished(self) -> bool:
        return self.acked_count >= self.total

    def on_ack(self, client_msg_id: str) -> None:
        self.acked_count += 1
        if self.acked_count == self.total:
            self.peer.run.half_done()


class AgentHalf(ChatSender):
    def next_message(self) -> str | None:
        number = self.chat.take_agent_number()
        return None if number is None else f"a{self.chat.index}-{self.peer.name}-{number}"

    def finished(self) -> bool:
        return self.chat.agent_acked >= self.chat.agent_total

    def on_ack(self, client_msg_id: str) -> None:
        self.chat.agent_inflight -= 1
        self.count_ack()

    def count_ack(self) -> None:
        self.chat.agent_acked += 1
        if self.chat.agent_acked == self.chat.agent_total:
            self.peer.run.half_done()

    def abandon(self) -> None:
        """The agent lost the chat: what they have not had acknowledged is not theirs to send."""
        self.peer.run.stats.abandoned += len(self.unacked)
        self.chat.agent_inflight -= len(self.unacked)
        self.peer.abandoned.update(self.unacked)
        self.unacked.clear()
        self._wake()


class Link:
    """One live connection of a peer."""

    def __init__(
        self, peer: ReconnectingClient, ws: WebSocketConnection, nursery: trio.Nursery
    ) -> None:
        self.peer = peer
        self.ws = ws
        self.nursery = nursery

    def drop(self) -> None:
        self.nursery.cancel_scope.cancel()

    async def send(self, frame: Frame) -> None:
        try:
            await self.ws.send_message(json.dumps(frame))
        except ConnectionClosed:
            self.drop()
            await trio.lowlevel.checkpoint()

    async def send_message(self, chat_id: str, client_msg_id: str, content: str) -> None:
        await self.send(message_send(chat_id, client_msg_id, content))

    def resume(self, chat_id: str) -> None:
        """Ask for what this client has not shown of the chat (counted in flight at once, so
        a burst of gaps asks once)."""
        view = self.peer.view(chat_id)
        view.inflight += 1
        self.peer.run.stats.resumes += 1
        self.start(lambda: self.send({"type": "resume", "chatId": chat_id, "afterSeq": view.last}))

    def start(self, work: Callable[[], Awaitable[None]]) -> None:
        self.nursery.start_soon(work)
