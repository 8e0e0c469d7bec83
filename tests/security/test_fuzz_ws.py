"""Hypothesis fuzzes /ws frames against a live server: random JSON, frames of the right shape with
wrong types, huge and non-finite numbers, deep nesting, any unicode, binary frames, garbage, and
frames just under and just over the size limit, as a customer, an agent and an admin.

For every frame the server answers before it answers the next one, and what it answers is an
`error` with a malformed-frame code when the frame is not a valid client frame (by the wire
schema), never an `internal` error; a frame over the limit closes the socket with 1009, and no
other close happens. Meanwhile a customer and her agent are connected mid-conversation: after
each example they still exchange a message both ways, and nothing the fuzzer sent reached
their chat. Nothing is logged at error level all along.

The server runs for the whole module on its own Trio loop in a thread (a Hypothesis example is
one `trio.run` of the test's clients). A few hundred examples in the PR tier; `-m slow` runs
thousands.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pydantic_core
import pytest
import trio
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from api._frames import client_frame
from tests.conftest import Live, make_settings, running_server
from tests.e2e.wsclient import WAIT_SECONDS, WsClient, connect, open_chat, ready_agent, say

ANN = "ann@switchboard.example"
BOB = "bob@switchboard.example"
ADMIN = "admin@switchboard.example"
LIMIT = 64 * 1024  # the frame limit the module's server runs with (the default)
CHAT = "<CHAT>"  # replaced by the watched chat's id when sent
STARTUP_SECONDS = 60.0
MALFORMED = frozenset({"invalid_json", "invalid_frame", "unknown_type"})
SERVER_FRAMES = frozenset(
    {
        "ack", "message", "chat.assigned", "chat.unassigned", "chat.status", "queue.position",
        "agent.status", "typing", "read", "resumed", "chat.opened", "pong", "error",
    }
)  # fmt: skip
CLIENT_TYPES = ["message.send", "typing", "read", "status.set", "resume", "chat.open", "ping"]


# --- the server, for the module ------------------------------------------------------------------


@dataclass
class Watched:
    """The live server, its tokens, and the conversation the fuzzing must not disturb."""

    live: Live
    tokens: dict[str, str]  # fuzzers by role, and the watched conversation's two sides
    chat_id: str
    errors: list[logging.LogRecord]


class _Errors(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture(scope="module")
def watched(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Watched]:
    data_dir: Path = tmp_path_factory.mktemp("fuzz-ws")
    started: queue.Queue[tuple[Watched, trio.lowlevel.TrioToken, trio.Event] | BaseException] = (
        queue.Queue()
    )
    errors = _Errors()
    logging.getLogger().addHandler(errors)

    async def serve_until_done() -> None:
        try:
            async with running_server(make_settings(data_dir)) as live:
                ann = await live.login(ANN)
                customer = await live.customer_token("shop-customer-1")
                async with connect(live, ann) as agent, connect(live, customer) as her:
                    await ready_agent(live, agent)
                    chat_id = (await open_chat(her, "watched"))["id"]
                tokens = {
                    "ann": ann,
                    "her": customer,
                    "customer": await live.customer_token("shop-customer-2"),
                    "agent": await live.login(BOB),
                    "admin": await live.login(ADMIN, admin=True),
                }
                done = trio.Event()
                watched = Watched(live, tokens, chat_id, errors.records)
                started.put((watched, trio.lowlevel.current_trio_token(), done))
                await done.wait()
        except BaseException as error:
            started.put(error)
            raise

    thread = threading.Thread(target=trio.run, args=(serve_until_done,), daemon=True)
    thread.start()
    try:
        ready = started.get(timeout=STARTUP_SECONDS)
        if isinstance(ready, BaseException):
            raise ready
        state, trio_token, done = ready
        yield state
        # After the module's fuzzing, in the worker that ran it (a test of its own for this was
        # split from the fuzzing by `pytest -n 2`): nothing any fuzzer sent was stored in the
        # watched chat, and both sides' messages were.
        found = trio.from_thread.run(two_sides, state, trio_token=trio_token)
        assert len(found) == 2, found
        trio.from_thread.run_sync(done.set, trio_token=trio_token)
        thread.join(timeout=STARTUP_SECONDS)
        assert not thread.is_alive()
    finally:
        logging.getLogger().removeHandler(errors)


# --- what to send --------------------------------------------------------------------------------

texts = st.one_of(
    st.text(st.characters(exclude_categories=["Cs"]), max_size=40),
    st.sampled_from(["", " ", CHAT, "\u202e\u0000", "\U0001d54f" * 33, "a" * 129, "0" * 24]),
)
numbers = st.one_of(
    st.integers(),
    st.sampled_from([0, -1, 1, 2**53, 2**53 + 1, 2**63, 2**64 + 1, 10**400, -(10**30)]),
    st.floats(),
)
json_values = st.recursive(
    st.none() | st.booleans() | numbers | texts,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(texts, inner, max_size=4),
    max_leaves=16,
)
field_values = st.one_of(texts, numbers, json_values)
shaped = st.fixed_dictionaries(
    {"type": st.one_of(st.sampled_from(CLIENT_TYPES), texts, json_values)},
    optional={
        "chatId": st.one_of(st.just(CHAT), field_values),
        "clientMsgId": field_values,
        "content": field_values,
        "seq": numbers,
        "afterSeq": numbers,
        "on": field_values,
        "status": st.one_of(st.sampled_from(["available", "away", "busy"]), field_values),
        "title": field_values,
        "description": field_values,
        "priority": st.one_of(st.sampled_from(["low", "urgent", "URGENT"]), field_values),
        "extra": json_values,
    },
)


def _dump(value: Any, ascii_only: bool) -> str:
    try:
        return json.dumps(value, ensure_ascii=ascii_only)
    except ValueError:  # an integer too long to print
        return "[]"


def _nested(depth: int) -> str:
    return '{"type": "ping", "x": ' + "[" * depth + "]" * depth + "}"


def _sized(size: int) -> str:
    """A ping padded to exactly `size` bytes."""
    head = '{"type": "ping", "pad": "'
    return head + "x" * (size - len(head) - 2) + '"}'


frames = st.one_of(
    st.builds(_dump, shaped, st.booleans()),
    st.builds(_dump, json_values, st.booleans()),
    texts,
    st.binary(max_size=64),
    st.integers(1, 30_000).map(lambda depth: "[" * depth + "]" * depth),
    st.integers(1, 30_000).map(_nested),
    st.integers(LIMIT - 64, LIMIT).map(_sized),
    st.sampled_from(['{"type": "ping"', "\ufeff{}", '{"type": "ping"} {}', "€" * (LIMIT // 3)]),
)
too_big = st.one_of(
    st.integers(LIMIT + 1, LIMIT + 4096).map(_sized),
    st.just("€" * (LIMIT // 3 + 1)),  # under the limit in characters, over it in bytes
    st.binary(min_size=LIMIT + 1, max_size=LIMIT + 1),
)


def valid(frame: str | bytes) -> bool:
    """A frame the wire schema accepts (what the server must not call malformed)."""
    if isinstance(frame, bytes) or len(frame.encode()) > LIMIT:
        return False
    try:
        raw = pydantic_core.from_json(frame)
        if not isinstance(raw, dict):
            return False
        client_frame.validate_python(raw)
    except (ValueError, ValidationError):
        return False
    return True


# --- the checks ----------------------------------------------------------------------------------


async def answers(fuzzer: WsClient, frame: str | bytes, marker: str) -> list[dict[str, Any]]:
    """Send `frame`, then a resume of a chat that does not exist, whose answer marks the end of
    what the server said about `frame`; returns what it said."""
    start = len(fuzzer.frames)
    await fuzzer.send_raw(frame)
    await fuzzer.send({"type": "resume", "chatId": marker, "afterSeq": 0})
    await fuzzer.expect("resumed", chatId=marker)
    return fuzzer.frames[start:-1]


def check_answers(frame: str | bytes, replies: list[dict[str, Any]]) -> None:
    assert {reply["type"] for reply in replies} <= SERVER_FRAMES, replies
    errors = [reply for reply in replies if reply["type"] == "error"]
    assert all(error["code"] != "internal" and error["message"] for error in errors), errors
    if not valid(frame):
        assert len(errors) == 1, (frame[:200], replies)
        assert errors[0]["code"] in MALFORMED, errors


async def fuzz_once(
    watched: Watched, role: str, sent: list[str | bytes], last: str | bytes | None
) -> None:
    live, tokens, chat_id = watched.live, watched.tokens, watched.chat_id
    with trio.fail_after(WAIT_SECONDS * 3):
        async with (
            connect(live, tokens["ann"]) as ann,
            connect(live, tokens["her"]) as her,
            connect(live, tokens[role]) as fuzzer,
        ):
            await ready_agent(live, ann)  # the chat stays hers whatever the fuzzer did before
            for n, frame in enumerate(sent):
                if isinstance(frame, str):
                    frame = frame.replace(CHAT, chat_id)
                check_answers(frame, await answers(fuzzer, frame, f"marker-{n}"))
            if last is not None:
                await fuzzer.send_raw(last)
                assert (await fuzzer.closed()).code == 1009
            # The watched conversation goes on, both ways.
            asked = await say(her, chat_id, f"q-{uuid.uuid4().hex}", "still there?")
            await ann.expect("message", chatId=chat_id, seq=asked["seq"])
            answered = await say(ann, chat_id, f"a-{uuid.uuid4().hex}", "yes")
            await her.expect("message", chatId=chat_id, seq=answered["seq"])
    assert watched.errors == [], [record.getMessage() for record in watched.errors]


def run_example(
    watched: Watched, role: str, sent: list[str | bytes], last: str | bytes | None
) -> None:
    trio.run(fuzz_once, watched, role, sent, last)


examples = given(
    role=st.sampled_from(["customer", "agent", "admin"]),
    sent=st.lists(frames, min_size=1, max_size=6),
    last=st.none() | st.none() | too_big,
)
fuzz_settings = {"deadline": None, "suppress_health_check": list(HealthCheck)}


@settings(max_examples=300, **fuzz_settings)  # type: ignore[arg-type]
@examples
# Quart hands an empty binary frame to the handler as None: it once crashed the connection.
@example(role="customer", sent=[b"", ""], last=None)
def test_fuzzed_frames_get_errors_or_1009_and_the_watched_chat_goes_on(
    watched: Watched, role: str, sent: list[str | bytes], last: str | bytes | None
) -> None:
    run_example(watched, role, sent, last)


@pytest.mark.slow
@settings(max_examples=5000, **fuzz_settings)  # type: ignore[arg-type]
@examples
def test_fuzzed_frames_thoroughly(
    watched: Watched, role: str, sent: list[str | bytes], last: str | bytes | None
) -> None:
    run_example(watched, role, sent, last)


async def two_sides(watched: Watched) -> set[str]:
    """Who wrote in the watched chat (every page of it)."""
    found: set[str] = set()
    path = f"/messages/customer/{watched.chat_id}"
    headers = {"Authorization": f"Bearer {watched.tokens['her']}"}
    async with httpx.AsyncClient(base_url=watched.live.url) as http:
        cursor: str | None = "0"
        while cursor is not None:
            page = await http.get(path, headers=headers, params={"cursor": cursor, "limit": 100})
            assert page.status_code == 200, page.text
            found |= {message["senderId"] for message in page.json()}
            cursor = page.headers.get("X-Next-Cursor")
    return found
