"""The websocket connection core and the JSON edge's pure parts, without sockets.

Rules: the core runs against the real domain (`open_system` on a MemoryStore), never a stand-in;
what a connection receives is recorded by its Session; waits are for recorded events, and the
token bucket's time is trio's clock (autojump where time must pass); each refusal is checked for
changing nothing.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import pytest
import trio

from actors import (
    AgentStatusEvent,
    Event,
    MessageAdded,
    ReadEvent,
    Session,
    System,
    TypingEvent,
    open_system,
)
from api._cors import origin_allowed
from api._errors import ASK_SECONDS, ApiError
from api._ws import RenderedMessages, credentials, decode, too_big
from api._ws_core import (
    ALLOWED_ROLES,
    CLOSE_POLICY,
    RESUME_MAX_MESSAGES,
    Ack,
    ChatOpened,
    Close,
    Command,
    Connection,
    Error,
    FollowFloor,
    Malformed,
    MarkSeen,
    NotRecovered,
    Peer,
    Ping,
    Pong,
    PostMessage,
    Resume,
    Resumed,
    SetStatus,
    SetTyping,
    StartChat,
    TokenBucket,
)
from store import (
    AgentStatus,
    MemoryStore,
    Message,
    MessageStatus,
    Priority,
    Role,
    User,
    utcnow,
)

UNKNOWN_CHAT = "0" * 24


@dataclass(eq=False)
class Inbox:
    """A live session of a user that records what the domain pushes to it."""

    user_id: str
    events: list[Event] = field(default_factory=list)
    _arrived: trio.Event = field(default_factory=trio.Event)

    def __post_init__(self) -> None:
        self.session = Session(f"s-{self.user_id}", self.user_id, self._offer, self._close)

    def _offer(self, event: Event) -> None:
        self.events.append(event)
        self._arrived.set()
        self._arrived = trio.Event()

    def _close(self, code: int, reason: str) -> None:
        raise AssertionError(f"closed unexpectedly: {code} {reason}")

    async def wait_for(self, wanted: Callable[[Event], bool]) -> Event:
        with trio.fail_after(5):
            while True:
                for event in self.events:
                    if wanted(event):
                        return event
                await self._arrived.wait()


@dataclass
class World:
    store: MemoryStore
    system: System
    agent: User
    customer: User
    stranger: User
    admin: User

    def connection(self, user: User, *, rate: float = 1000.0, burst: int = 1000) -> Connection:
        return Connection(
            self.system,
            Peer(user.id, user.role, f"s-{user.id}"),
            self.store.get_chat,
            frames_per_second=rate,
            burst=burst,
        )


def _user(user_id: str, role: Role) -> User:
    now = utcnow()
    return User(
        id=user_id,
        email=f"{user_id}@example.com",
        name=user_id.title(),
        role=role,
        max_load=2,
        created_at=now,
        updated_at=now,
    )


@asynccontextmanager
async def open_world(store: MemoryStore) -> AsyncIterator[World]:
    users = [
        await store.create_user(_user(user_id, role))
        for user_id, role in (
            ("ann", Role.AGENT),
            ("carla", Role.CUSTOMER),
            ("dan", Role.CUSTOMER),
            ("ada", Role.ADMIN),
        )
    ]
    async with open_system(store) as system:
        yield World(store, system, *users)


@pytest.fixture
async def world() -> AsyncIterator[World]:
    async with open_world(MemoryStore()) as opened:
        yield opened


async def open_assigned_chat(world: World) -> tuple[str, Inbox, Inbox]:
    """A chat between the customer and the agent, both with a live session."""
    agent_inbox, customer_inbox = Inbox(world.agent.id), Inbox(world.customer.id)
    await world.system.connect(agent_inbox.session, Role.AGENT)
    await world.system.connect(customer_inbox.session, Role.CUSTOMER)
    assert await world.connection(world.agent).handle(SetStatus(AgentStatus.AVAILABLE))
    [opened] = await world.connection(world.customer).handle(
        StartChat("Late parcel", "", Priority.HIGH)
    )
    assert isinstance(opened, ChatOpened)
    assert opened.created
    assert opened.chat.agent_id == world.agent.id
    return opened.chat.id, agent_inbox, customer_inbox


# --- rules ---------------------------------------------------------------------------------------

SAMPLES: list[Command] = [
    PostMessage(UNKNOWN_CHAT, "m1", "hi"),
    SetTyping(UNKNOWN_CHAT, True),
    MarkSeen(UNKNOWN_CHAT, 1),
    SetStatus(AgentStatus.AWAY),
    Resume(UNKNOWN_CHAT, 0),
    StartChat("t", "", Priority.LOW),
    Ping(),
    FollowFloor(True),
]


def test_every_command_kind_has_an_allowed_roles_rule() -> None:
    assert {type(command) for command in SAMPLES} == set(ALLOWED_ROLES)
    assert ALLOWED_ROLES[SetStatus] == {Role.AGENT}
    assert ALLOWED_ROLES[StartChat] == {Role.CUSTOMER}
    assert ALLOWED_ROLES[FollowFloor] == {Role.ADMIN}
    assert ALLOWED_ROLES[PostMessage] == {Role.CUSTOMER, Role.AGENT}
    assert ALLOWED_ROLES[Resume] == ALLOWED_ROLES[MarkSeen] == ALLOWED_ROLES[Ping]


@pytest.mark.parametrize("command", SAMPLES, ids=lambda command: command.kind)
async def test_a_role_not_allowed_gets_forbidden_and_nothing_changes(
    world: World, command: Command
) -> None:
    users = (world.agent, world.customer, world.admin)
    allowed = ALLOWED_ROLES[type(command)]
    for user in [user for user in users if user.role not in allowed]:
        [refused] = await world.connection(user).handle(command)
        assert isinstance(refused, Error)
        ref = command.client_msg_id if isinstance(command, PostMessage) else command.kind
        assert (refused.code, refused.ref) == ("forbidden", ref)
    assert await world.store.count_chats() == 0
    assert world.system.route(UNKNOWN_CHAT) is None
    for user in [user for user in users if user.role in allowed]:
        effects = await world.connection(user).handle(command)
        assert not [e for e in effects if isinstance(e, Error) and e.code == "forbidden"]


def test_token_bucket_allows_a_burst_then_the_rate() -> None:
    bucket = TokenBucket(rate=2.0, burst=3, now=0.0)
    assert [bucket.take(0.0) for _ in range(4)] == [True, True, True, False]
    assert bucket.take(0.25) is False  # half a token
    assert bucket.take(0.5) is True
    assert bucket.take(0.5) is False
    assert [bucket.take(100.0) for _ in range(4)] == [True, True, True, False]  # capped at burst


async def test_a_flood_is_answered_with_an_error_and_a_1008_close(
    world: World, autojump_clock: trio.abc.Clock
) -> None:
    connection = world.connection(world.customer, rate=1.0, burst=2)
    assert await connection.handle(Ping()) == [Pong()]
    assert await connection.handle(Malformed("invalid_json", "bad", None)) == [
        Error("invalid_json", "bad", None)
    ]
    effects = await connection.handle(Ping())
    assert [type(effect) for effect in effects] == [Error, Close]
    assert isinstance(effects[0], Error)
    assert (effects[0].code, effects[0].ref) == ("rate_limited", "ping")
    assert effects[1] == Close(CLOSE_POLICY, "too many frames")
    await trio.sleep(1.0)
    assert await connection.handle(Ping()) == [Pong()]


# --- the domain through the core -----------------------------------------------------------------


async def test_send_is_acknowledged_once_durable_and_a_resend_gets_the_same_ack(
    world: World,
) -> None:
    chat_id, agent_inbox, _ = await open_assigned_chat(world)
    customer = world.connection(world.customer)
    [ack] = await customer.handle(PostMessage(chat_id, "c1", "hello"))
    assert isinstance(ack, Ack)
    stored = await world.store.get_message(ack.message_id)
    assert stored is not None
    assert (ack.chat_id, ack.seq, ack.client_msg_id) == (chat_id, 1, "c1")
    assert await customer.handle(PostMessage(chat_id, "c1", "hello")) == [ack]
    assert len(await world.store.list_messages(chat_id, after_seq=0, limit=10)) == 1
    assert [e for e in agent_inbox.events if isinstance(e, MessageAdded)] == [MessageAdded(stored)]


async def test_strangers_and_unknown_chats_are_refused_and_nothing_is_stored(
    world: World,
) -> None:
    chat_id, _, _ = await open_assigned_chat(world)
    stranger = world.connection(world.stranger)
    # Someone else's chat reads exactly as one that does not exist.
    for chat in (chat_id, UNKNOWN_CHAT):
        not_yours = f"no chat {chat} of yours"
        [refused] = await stranger.handle(PostMessage(chat, "s1", "let me in"))
        assert refused == Error("chat_not_found", not_yours, "s1")
        for command in (SetTyping(chat, True), MarkSeen(chat, 1)):
            assert await stranger.handle(command) == [
                Error("chat_not_found", not_yours, command.kind)
            ]
        assert await stranger.handle(Resume(chat, 0)) == [NotRecovered(chat, "chat_not_found")]
    assert await world.store.list_messages(chat_id, after_seq=0, limit=10) == []


async def test_typing_reaches_the_other_participant(world: World) -> None:
    chat_id, agent_inbox, _ = await open_assigned_chat(world)
    assert await world.connection(world.customer).handle(SetTyping(chat_id, True)) == []
    await agent_inbox.wait_for(lambda e: e == TypingEvent(chat_id, world.customer.id, True))


async def test_resume_returns_exactly_the_missed_messages_then_resumed(world: World) -> None:
    chat_id, _, _ = await open_assigned_chat(world)
    customer = world.connection(world.customer)
    for i in range(1, 5):
        await customer.handle(PostMessage(chat_id, f"c{i}", f"m{i}"))
    effects = await world.connection(world.agent).handle(Resume(chat_id, 2))
    assert [(e.message.seq, e.message.content) for e in effects if isinstance(e, MessageAdded)] == [
        (3, "m3"),
        (4, "m4"),
    ]
    assert effects[-1] == Resumed(chat_id, 4)
    assert await customer.handle(Resume(chat_id, 4)) == [Resumed(chat_id, 4)]
    assert await customer.handle(Resume(UNKNOWN_CHAT, 0)) == [
        NotRecovered(UNKNOWN_CHAT, "chat_not_found")
    ]


async def test_resume_over_the_cap_is_not_recovered(world: World) -> None:
    chat_id, _, _ = await open_assigned_chat(world)
    customer = world.connection(world.customer)
    for i in range(RESUME_MAX_MESSAGES + 1):
        await customer.handle(PostMessage(chat_id, f"c{i}", "x"))
    agent = world.connection(world.agent)
    assert await agent.handle(Resume(chat_id, 0)) == [NotRecovered(chat_id, "gap_too_large")]
    effects = await agent.handle(Resume(chat_id, 1))
    assert len(effects) == RESUME_MAX_MESSAGES + 1
    assert effects[-1] == Resumed(chat_id, RESUME_MAX_MESSAGES + 1)


async def test_messages_written_to_the_receiver_are_marked_delivered(world: World) -> None:
    chat_id, _, customer_inbox = await open_assigned_chat(world)
    customer = world.connection(world.customer)
    agent = world.connection(world.agent)
    for i in (1, 2):
        await customer.handle(PostMessage(chat_id, f"c{i}", f"m{i}"))
    [own] = [
        e for e in await agent.handle(PostMessage(chat_id, "a1", "reply")) if isinstance(e, Ack)
    ]
    messages = await world.store.list_messages(chat_id, after_seq=0, limit=10)
    # The first write makes receipts due: the edge starts one sender, which ends once it has
    # sent them (an idle connection keeps no task for receipts). Its own message is no receipt.
    assert [agent.written(MessageAdded(message)) for message in messages] == [True, False, False]
    with trio.fail_after(5):
        await agent.send_receipts()
    await customer_inbox.wait_for(
        lambda e: e == ReadEvent(chat_id, world.agent.id, 2, MessageStatus.DELIVERED)
    )
    statuses = [m.status for m in await world.store.list_messages(chat_id, after_seq=0, limit=10)]
    assert statuses == [MessageStatus.DELIVERED, MessageStatus.DELIVERED, MessageStatus.SENT]
    assert own.seq == 3


async def test_agent_status_set_answers_the_resulting_status(world: World) -> None:
    agent_inbox = Inbox(world.agent.id)
    await world.system.connect(agent_inbox.session, Role.AGENT)
    [answer] = await world.connection(world.agent).handle(SetStatus(AgentStatus.AVAILABLE))
    assert answer == AgentStatusEvent(world.agent.id, AgentStatus.AVAILABLE, "status.set")


# --- the JSON edge's parsing ---------------------------------------------------------------------


def test_decode_turns_frames_into_commands() -> None:
    assert decode('{"type": "ping"}') == Ping()
    assert decode(
        '{"type": "message.send", "chatId": "c", "clientMsgId": "m", "content": "hi"}'
    ) == PostMessage("c", "m", "hi")
    assert decode('{"type": "chat.open"}') == StartChat("Support chat", "", Priority.MEDIUM)
    assert decode('{"type": "status.set", "status": "away"}') == SetStatus(AgentStatus.AWAY)
    assert decode('{"type": "resume", "chatId": "c", "afterSeq": 3}') == Resume("c", 3)


@pytest.mark.parametrize(
    ("frame", "code", "ref"),
    [
        ("nope", "invalid_json", None),
        ("[" * 5000 + "]" * 5000, "invalid_json", None),
        ('"text"', "invalid_frame", None),
        ('{"type": "nope"}', "unknown_type", "nope"),
        ('{"type": "status.set", "status": "busy"}', "invalid_frame", "status.set"),
        ('{"type": "read", "chatId": "c", "seq": 1.5}', "invalid_frame", "read"),
        (b"{}", "invalid_frame", None),
    ],
)
def test_decode_says_what_is_wrong(frame: str | bytes, code: str, ref: str | None) -> None:
    malformed = decode(frame)
    assert isinstance(malformed, Malformed)
    assert (malformed.code, malformed.ref) == (code, ref)
    assert malformed.message


def test_size_is_counted_in_utf8_bytes() -> None:
    assert not too_big("x" * 1024, 1024)
    assert too_big("x" * 1025, 1024)
    assert too_big("€" * 342, 1024)  # 342 characters, 1026 bytes
    assert not too_big("€" * 341, 1024)


def test_credentials_from_the_header_or_the_subprotocols() -> None:
    assert credentials("Bearer abc", []) == ("abc", None)
    assert credentials(None, ["bearer", "abc"]) == ("abc", "bearer")
    assert credentials("Bearer abc", ["bearer", "other"]) == ("abc", "bearer")
    for authorization, offered in ((None, []), (None, ["bearer"]), ("Basic x", []), (None, ["x"])):
        with pytest.raises(ApiError) as refused:
            credentials(authorization, offered)
        assert refused.value.status == 401


def test_origin_allow_list() -> None:
    allowed = ["https://shop.example"]
    assert origin_allowed(None, allowed)
    assert origin_allowed("https://SHOP.example/", allowed)
    assert not origin_allowed("https://evil.example", allowed)
    assert not origin_allowed("null", allowed)
    assert not origin_allowed("https://shop.example", [])
    # The server's own pages (the console): Origin names the host the socket was asked for.
    assert origin_allowed("http://127.0.0.1:8080", [], "127.0.0.1:8080")
    assert origin_allowed("https://Support.Example", [], "support.example")
    assert not origin_allowed("http://127.0.0.1:8081", [], "127.0.0.1:8080")
    assert not origin_allowed("null", [], "null")
    assert not origin_allowed("ws://support.example", [], "support.example")


class StalledStore(MemoryStore):
    """A store whose message writes take twice the edge's deadline."""

    async def append_messages(self, messages: Sequence[Message]) -> list[Message]:
        await trio.sleep(2 * ASK_SECONDS)
        return await super().append_messages(messages)


async def test_a_command_past_its_deadline_is_answered_overloaded(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_world(StalledStore()) as world:
        chat_id, _, _ = await open_assigned_chat(world)
        began = trio.current_time()
        [answer] = await world.connection(world.customer).handle(PostMessage(chat_id, "c1", "hi"))
        assert answer == Error("overloaded", "the service is too busy to answer; retry", "c1")
        assert trio.current_time() - began == pytest.approx(ASK_SECONDS)


async def test_sends_past_their_deadline_are_each_answered_overloaded(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_world(StalledStore()) as world:
        chat_id, _, _ = await open_assigned_chat(world)
        began = trio.current_time()
        answers = await world.connection(world.customer).handle_sends(
            [PostMessage(chat_id, "c1", "hi"), PostMessage(chat_id, "c2", "again")]
        )
        assert answers == [
            [Error("overloaded", "the service is too busy to answer; retry", ref)]
            for ref in ("c1", "c2")
        ]
        assert trio.current_time() - began == pytest.approx(ASK_SECONDS)


def test_a_message_event_is_rendered_once_for_every_session() -> None:
    rendered = RenderedMessages(2)
    first, second, third = (
        MessageAdded(
            Message(
                id=f"m{n}",
                chat_id="c",
                seq=n,
                client_msg_id=f"k{n}",
                sender_id="carla",
                sender_role=Role.CUSTOMER,
                content="hello",
            )
        )
        for n in (1, 2, 3)
    )
    text = rendered.text(first)
    assert json.loads(text)["message"]["seq"] == 1
    assert rendered.text(first) is text  # the second session's copy
    assert json.loads(rendered.text(second))["seq"] == 2
    assert json.loads(rendered.text(third))["seq"] == 3  # the oldest entry made room
    again = rendered.text(first)  # evicted: rendered anew, alike
    assert again == text
    assert again is not text
