"""A socket that keeps several `sendMessage` events in flight: those waiting behind one another
go to the chat's conversation together and are stored in one write, and every answer still
comes in the order the events were sent, each message numbered in that order.

Over raw long-polling, so one POST hands the server the whole run at once.
"""

from __future__ import annotations

import json

import trio
from prometheus_client.parser import text_string_to_metric_families
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, Ping, Request, TextMessage

from store import Priority
from tests.conftest import Live
from tests.sio.test_protocol import Polling

RUN = 8


async def appends(live: Live) -> float:
    """The server's store calls that appended messages so far."""
    response = await live.http.get("/metrics")
    assert response.status_code == 200, response.text
    return sum(
        sample.value
        for family in text_string_to_metric_families(response.text)
        if family.name == "switchboard_store_call_duration_seconds"
        for sample in family.samples
        if sample.name.endswith("_count")
        and sample.labels["operation"] in ("append_message", "append_messages")
    )


def send(ack: int, chat_id: str, text: str, client_msg_id: str | None = None) -> str:
    payload = {"chatId": chat_id, "message": text, "clientMsgId": client_msg_id}
    return f"42{ack}" + json.dumps(["sendMessage", payload])


async def test_sends_in_flight_are_stored_together_and_answered_in_order(live: Live) -> None:
    token = await live.customer_token("shop-customer-1")
    me = (await live.services.tokens.authenticate(token)).user.id
    chat_id = (
        await live.services.system.open_chat(
            me, title="Where is my order?", description="", priority=Priority.MEDIUM
        )
    ).chat.id
    session, _ = await Polling.open(live)
    await session.connect(token)
    before = await appends(live)

    packets = [send(ack, chat_id, f"message {ack}", f"c{ack}") for ack in range(1, RUN + 1)]
    # Inside the run: a payload the server refuses, a resend of an id sent earlier in the
    # run, then one more send, and an event of another kind last.
    packets.insert(3, '4250["sendMessage",{"chatId":""}]')
    packets.append(send(51, chat_id, "message 1 again", "c1"))
    packets.append(send(52, chat_id, "last", "c-last"))
    packets.append('4253["joinChat",{"chatId":"' + chat_id + '"}]')
    assert (await session.post(*packets)).text == "ok"
    seen = await session.until_prefix("4353")

    acks = [packet for packet in seen if packet.startswith("43")]
    assert [int(packet[2 : packet.index("[")]) for packet in acks] == [
        1, 2, 3, 50, 4, 5, 6, 7, 8, 51, 52, 53,
    ]  # fmt: skip
    answers = {int(p[2 : p.index("[")]): json.loads(p[p.index("[") :])[0] for p in acks}
    sent = {ack: answer["message"] for ack, answer in answers.items() if "message" in answer}
    assert answers[50]["error"]["code"] == "invalid_payload"
    # Numbered in the order sent; the resend is the stored first message, not a new one.
    assert [sent[ack]["seq"] for ack in (*range(1, RUN + 1), 51, 52)] == [
        *range(1, RUN + 1),
        1,
        RUN + 1,
    ]
    assert sent[51]["_id"] == sent[1]["_id"]
    stored = await live.services.store.list_messages(chat_id, after_seq=0, limit=100)
    assert [message.content for message in stored] == [
        *(f"message {ack}" for ack in range(1, RUN + 1)),
        "last",
    ]
    # Before, each send waited for the one before it to be stored: one append each (9).
    assert await appends(live) - before <= 3


class RawWebsocket:
    """A Socket.IO websocket spoken through wsproto over a bare TCP stream, so several frames
    can leave in one write (trio-websocket writes each frame by itself)."""

    def __init__(self, stream: trio.SocketStream, connection: WSConnection) -> None:
        self._stream = stream
        self._connection = connection
        self._texts: list[str] = []

    @classmethod
    async def open(cls, live: Live, sid: str | None = None) -> RawWebsocket:
        """A websocket session, or the websocket that upgrades the polling session `sid`."""
        host, port = live.url.removeprefix("http://").split(":")
        stream = await trio.open_tcp_stream(host, int(port))
        connection = WSConnection(ConnectionType.CLIENT)
        target = "/socket.io/?EIO=4&transport=websocket" + ("" if sid is None else f"&sid={sid}")
        await stream.send_all(connection.send(Request(host=f"{host}:{port}", target=target)))
        raw = cls(stream, connection)
        while not await raw._pump():
            pass
        return raw

    async def _pump(self) -> bool:
        """Read once; whether the handshake was accepted by now."""
        data = await self._stream.receive_some()
        assert data, "the server closed the connection"
        self._connection.receive_data(data)
        accepted = False
        for event in self._connection.events():
            if isinstance(event, AcceptConnection):
                accepted = True
            elif isinstance(event, TextMessage):
                self._texts.append(event.data)
            elif isinstance(event, Ping):
                await self._stream.send_all(self._connection.send(event.response()))
        return accepted

    async def send_together(self, *texts: str) -> None:
        await self._stream.send_all(
            b"".join(self._connection.send(TextMessage(data=text)) for text in texts)
        )

    async def close(self) -> None:
        await self._stream.aclose()

    async def until_prefix(self, prefix: str) -> list[str]:
        seen: list[str] = []
        while True:
            while self._texts:
                text = self._texts.pop(0)
                seen.append(text)
                if text.startswith(prefix):
                    return seen
            await self._pump()


async def test_sends_arriving_together_on_a_websocket_are_stored_together(live: Live) -> None:
    """The websocket's reader handles a packet itself only when no frame waits behind it;
    frames that arrived together still reach the conversation as one run."""
    token = await live.customer_token("shop-customer-2")
    me = (await live.services.tokens.authenticate(token)).user.id
    chat_id = (
        await live.services.system.open_chat(
            me, title="Where is my order?", description="", priority=Priority.MEDIUM
        )
    ).chat.id
    with trio.fail_after(10):
        ws = await RawWebsocket.open(live)
        await ws.send_together("40" + json.dumps({"token": token}))
        await ws.until_prefix("40")
        before = await appends(live)
        await ws.send_together(
            *(send(ack, chat_id, f"message {ack}", f"w{ack}") for ack in range(1, RUN + 1))
        )
        seen = await ws.until_prefix(f"43{RUN}")
    acks = [int(text[2 : text.index("[")]) for text in seen if text.startswith("43")]
    assert acks == list(range(1, RUN + 1))
    stored = await live.services.store.list_messages(chat_id, after_seq=0, limit=100)
    assert [message.content for message in stored] == [
        f"message {ack}" for ack in range(1, RUN + 1)
    ]
    # Handled one by one as they were read, each would have waited for its own append (8).
    assert await appends(live) - before <= 3
