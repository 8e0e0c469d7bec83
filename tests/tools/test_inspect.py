"""`switchboard inspect` against a live server: an agent at max load with one chat queued behind
them, seen in the overview tables, as JSON, for one agent and one chat (with the reason each
assignment was made), refreshed with --watch; and the errors an operator meets: nothing
listening, wrong password, a token or an account that is not an admin's, an unknown agent.
"""

from __future__ import annotations

import io
import json
import socket
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass

import pytest
import trio
from rich.console import Console

from api import DEMO_PASSWORD, DEMO_STAFF
from store import Role
from tests.conftest import Live
from tests.e2e.wsclient import connect, open_chat, ready_agent, say
from tools import inspect as tools_inspect
from tools._remote import DEMO_ADMIN_EMAIL, Credentials
from tools.cli import main
from tools.inspect import InspectOptions, inspect

ANN = "ann@switchboard.example"
ANN_MAX_LOAD = 3
SEEDED_AGENTS = sum(account.role is Role.AGENT for account in DEMO_STAFF)
WAIT_SECONDS = 30


@dataclass(frozen=True)
class Busy:
    """Ann holding her max load of chats, and one more chat waiting for her."""

    ann_id: str
    assigned: list[str]
    queued: str


@asynccontextmanager
async def ann_at_max_load(live: Live) -> AsyncIterator[Busy]:
    """Ann's chats are opened by customers over the websocket; the first has one message, so
    its conversation actor is running."""
    async with AsyncExitStack() as stack:
        ann = await stack.enter_async_context(connect(live, await live.login(ANN)))
        await ready_agent(live, ann)
        chats = []
        for n in range(ANN_MAX_LOAD + 1):
            token = await live.customer_token(f"shop-{n}")
            customer = await stack.enter_async_context(connect(live, token))
            chats.append(await open_chat(customer, f"order {n}"))
            if n == 0:
                await say(customer, chats[0]["id"], "hello-1", "where is my parcel?")
        assert [chat["status"] for chat in chats] == ["open"] * ANN_MAX_LOAD + ["new"]
        yield Busy(chats[0]["agent"]["_id"], [c["id"] for c in chats[:-1]], chats[-1]["id"])


def options(live: Live, **changes: object) -> InspectOptions:
    fields: dict[str, object] = {
        "url": live.url,
        "credentials": Credentials(token=None, email=DEMO_ADMIN_EMAIL, password=DEMO_PASSWORD),
    }
    fields.update(changes)
    return InspectOptions(**fields)  # type: ignore[arg-type]


async def shown(live: Live, width: int = 250, **changes: object) -> tuple[int, str]:
    """The exit code and what inspect printed (not on a terminal: as when piped)."""
    out = io.StringIO()
    console = Console(file=out, width=width, color_system=None)
    with trio.fail_after(WAIT_SECONDS):
        code = await inspect(options(live, **changes), console)
    return code, out.getvalue()


async def test_overview_tables_show_agents_queue_conversations_and_assignment_actor(
    live: Live,
) -> None:
    async with ann_at_max_load(live) as busy:
        code, text = await shown(live)
    assert code == 0
    assert f"Agents ({SEEDED_AGENTS})" in text
    ann_row = next(line for line in text.splitlines() if ANN in line)
    assert busy.ann_id in ann_row
    assert "busy" in ann_row
    assert f"{ANN_MAX_LOAD}/{ANN_MAX_LOAD}" in ann_row
    ann_rows = text[text.index(ANN) : text.index("Bob Agent")]  # an id a line
    assert all(chat_id in ann_rows for chat_id in busy.assigned)
    assert "Queue (1 waiting)" in text
    queue_row = next(line for line in text.splitlines() if busy.queued in line and "new" in line)
    assert "medium" in queue_row
    conversation_row = next(
        line for line in text.splitlines() if line.startswith(f" {busy.assigned[0]}")
    )
    assert "open" in conversation_row
    assert "supervisor mailbox 0" in text
    assert "Single node" in text
    assert "no SWITCHBOARD_BUS_URL" in text


async def test_json_has_the_same_state(live: Live) -> None:
    async with ann_at_max_load(live) as busy:
        code, text = await shown(live, json=True)
    assert code == 0
    document = json.loads(text)
    assert document["view"] == "overview"
    ann = next(agent for agent in document["agents"] if agent["email"] == ANN)
    assert (ann["status"], ann["load"], ann["max_load"]) == ("busy", ANN_MAX_LOAD, ANN_MAX_LOAD)
    assert ann["connections"] == 1
    assert set(ann["chat_ids"]) == set(busy.assigned)
    assert [entry["chat_id"] for entry in document["queue"]] == [busy.queued]
    assert document["queue"][0]["position"] == 1
    assert document["supervisor"]["name"] == "supervisor"
    assert document["supervisor"]["restarts"] == 0
    assert document["sessions"] == 1 + ANN_MAX_LOAD + 1
    cluster = document["cluster"]
    assert (cluster["clustered"], cluster["leader"]) == (False, cluster["node"])
    assert cluster["nodes"] == [
        {"id": cluster["node"], "connections": 1 + ANN_MAX_LOAD + 1, "leads": True}
    ]
    talked = next(
        row
        for row in document["conversations"]
        if row["actor"]["name"] == f"chat:{busy.assigned[0]}"
    )
    assert talked["chat"]["last_seq"] == 1
    assert talked["chat"]["agent"] == f"Ann Agent <{ANN}>"
    assert talked["actor"]["mailbox_depth"] == 0


async def test_one_agent_with_why_they_got_their_chats(live: Live) -> None:
    async with ann_at_max_load(live) as busy:
        code, text = await shown(live, agent=ANN, json=True)
    assert code == 0
    document = json.loads(text)
    assert document["view"] == "agent"
    assert document["agent"]["id"] == busy.ann_id
    reasons = [entry["reason"] for entry in document["history"] if entry["kind"] == "assignment"]
    assert len(reasons) == ANN_MAX_LOAD
    assert all(reason.startswith("least loaded") for reason in reasons)


async def test_one_chat_with_its_participants_actor_and_history(live: Live) -> None:
    async with ann_at_max_load(live) as busy:
        code, text = await shown(live, chat=busy.assigned[0])
        queued_code, queued = await shown(live, chat=busy.queued, json=True)
    assert code == 0
    assert f"Chat {busy.assigned[0]}" in text
    assert ANN in text
    assert "least loaded (0/3); candidates: Ann Agent 0/3" in text  # why this agent
    assert queued_code == 0
    document = json.loads(queued)
    assert document["chat"]["agent"] is None
    assert document["queue"]["position"] == 1


async def test_watch_redraws_until_its_count(live: Live) -> None:
    code, text = await shown(live, watch=True, interval=0.0, count=3, json=True)
    assert code == 0
    documents = [json.loads(line) for line in text.splitlines()]
    assert len(documents) == 3
    assert all(document["view"] == "overview" for document in documents)
    # Piped, each refresh is printed after the one before (a terminal redraws in place).
    code, text = await shown(live, watch=True, interval=0.0, count=3)
    assert code == 0
    assert text.count(f"Agents ({SEEDED_AGENTS})") == 3


async def test_ids_stay_whole_and_distinct_at_80_columns(live: Live) -> None:
    async with ann_at_max_load(live) as busy:
        code, text = await shown(live, width=80)
    assert code == 0
    assert max(len(line) for line in text.splitlines()) <= 80
    for whole in [busy.ann_id, *busy.assigned, busy.queued]:
        assert shown_whole(text, whole), whole
    assert "…" not in "".join(line for line in text.splitlines() if "0006" in line)


def shown_whole(text: str, whole: str) -> bool:
    """On one line, or folded: its start at the end of a line's cell, its rest right below."""
    lines = text.splitlines()
    for above, below in zip(lines, [*lines[1:], ""], strict=True):
        if whole in above:
            return True
        for cut in range(8, len(whole)):
            column = above.find(whole[:cut] + " ")
            if column >= 0 and below[column:].startswith(whole[cut:]):
                return True
    return False


async def test_an_email_or_an_id_alone_finds_the_agent_or_the_chat(live: Live) -> None:
    async with ann_at_max_load(live) as busy:
        code, by_id = await shown(live, either=busy.ann_id, json=True)
        assert code == 0
        assert json.loads(by_id)["view"] == "agent"
        code, chat = await shown(live, either=busy.queued, json=True)
        assert code == 0
        assert json.loads(chat)["chat"]["id"] == busy.queued
        assert (await shown(live, either="0" * 24))[0] == 2


def test_the_command_line_takes_an_email_or_an_id_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[InspectOptions] = []

    async def capture(options: InspectOptions, console: Console) -> int:
        seen.append(options)
        return 0

    monkeypatch.setattr(tools_inspect, "inspect", capture)
    assert main(["inspect", ANN]) == 0
    assert main(["inspect", "0" * 24]) == 0
    assert main(["inspect", "chat", "1" * 24]) == 0
    assert [(o.agent, o.either, o.chat) for o in seen] == [
        (ANN, None, None),
        (None, "0" * 24, None),
        (None, None, "1" * 24),
    ]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def test_server_down_is_one_line_naming_the_url(capsys: pytest.CaptureFixture[str]) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    assert main(["inspect", "--url", url]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (
        f"switchboard: error: cannot reach Switchboard at {url}: connection refused "
        "(is the server running?)"
    )


async def test_refused_credentials_and_non_admins(
    live: Live, capsys: pytest.CaptureFixture[str]
) -> None:
    wrong = Credentials(token=None, email=DEMO_ADMIN_EMAIL, password="not-the-password")
    assert (await shown(live, credentials=wrong))[0] == 2
    assert "wrong email or password" in capsys.readouterr().err

    agent_account = Credentials(token=None, email=ANN, password=DEMO_PASSWORD)
    assert (await shown(live, credentials=agent_account))[0] == 2
    assert f"{ANN} is not an admin" in capsys.readouterr().err

    agent_token = Credentials(token=await live.login(ANN), email="", password="")
    assert (await shown(live, credentials=agent_token))[0] == 2
    assert "you are signed in as agent" in capsys.readouterr().err

    garbage = Credentials(token="not-a-token", email="", password="")
    assert (await shown(live, credentials=garbage))[0] == 2
    assert "refused the token" in capsys.readouterr().err


async def test_unknown_agent_and_chat(live: Live, capsys: pytest.CaptureFixture[str]) -> None:
    assert (await shown(live, agent="nobody@switchboard.example"))[0] == 2
    assert "no agent 'nobody@switchboard.example'" in capsys.readouterr().err
    assert (await shown(live, chat="0" * 24))[0] == 2
    assert f"no chat '{'0' * 24}'" in capsys.readouterr().err


def test_target_must_be_agent_or_chat(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["inspect", "agent"]) == 2
    assert main(["inspect", "queue", "x"]) == 2
    assert "`agent ID|EMAIL`, `chat ID`" in capsys.readouterr().err
