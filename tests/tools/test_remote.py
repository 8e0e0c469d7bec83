"""The tools' HTTP client: a server busy checking passwords is asked again, nothing else is;
riding out restarts, a server down or failing is asked again on the next node, boundedly."""

from __future__ import annotations

import httpx
import pytest
import trio
import trio.testing

from tools._remote import RemoteError, RideOut, Server, Unreachable, metrics_text

BUSY = {"error": {"code": "busy", "message": "the server is busy checking passwords"}}
DOWN = {"error": {"code": "store_unavailable", "message": "the database cannot be reached"}}


def server(answers: list[httpx.Response], asked: list[float]) -> Server:
    def answer(request: httpx.Request) -> httpx.Response:
        asked.append(trio.current_time())
        return answers.pop(0)

    http = httpx.AsyncClient(transport=httpx.MockTransport(answer), base_url="http://127.0.0.1")
    return Server(http, "http://127.0.0.1")


async def test_a_busy_answer_is_asked_again_after_its_retry_after(
    autojump_clock: trio.testing.MockClock,
) -> None:
    busy = httpx.Response(503, json=BUSY, headers={"Retry-After": "2"})
    asked: list[float] = []
    remote = server([busy, busy, httpx.Response(201, json={"id": "a1"})], asked)
    created = await remote.call("POST", "/admin/users", json={})
    assert created.json() == {"id": "a1"}
    assert [round(at - asked[0]) for at in asked] == [0, 2, 4]


async def test_another_refusal_is_not_asked_again(autojump_clock: trio.testing.MockClock) -> None:
    asked: list[float] = []
    remote = server([httpx.Response(503, json=DOWN), httpx.Response(201, json={})], asked)
    with pytest.raises(RemoteError, match="database cannot be reached"):
        await remote.call("POST", "/admin/users", json={})
    assert len(asked) == 1


RIDE_OUT = RideOut(attempts=4, seconds=1.0, first=0.02, cap=0.5)


def nodes(answers: list[httpx.Response | Exception], asked: list[str]) -> Server:
    """Two nodes answering from one script, each request recording the node it went to."""

    def answer(request: httpx.Request) -> httpx.Response:
        asked.append(request.url.host)
        found = answers.pop(0)
        if isinstance(found, Exception):
            raise found
        return found

    first, second = (
        httpx.AsyncClient(transport=httpx.MockTransport(answer), base_url=f"http://{host}")
        for host in ("127.0.0.1", "127.0.0.2")
    )
    return Server(first, "http://127.0.0.1", failover=[second], ride_out=RIDE_OUT)


async def test_riding_out_a_restart_asks_the_next_node_until_one_answers(
    autojump_clock: trio.testing.MockClock,
) -> None:
    asked: list[str] = []
    down = httpx.ConnectError("connection refused")
    remote = nodes([down, httpx.Response(502), httpx.Response(404, json={})], asked)
    answered = await remote.send("GET", "/chats/agent", token="t")
    assert answered.status_code == 404  # a 4xx is an answer: given to the caller as it is
    assert asked == ["127.0.0.1", "127.0.0.2", "127.0.0.1"]


async def test_riding_out_gives_up_after_its_attempts(
    autojump_clock: trio.testing.MockClock,
) -> None:
    asked: list[str] = []
    remote = nodes([httpx.Response(503, json=DOWN) for _ in range(5)], asked)
    with pytest.raises(Unreachable, match=r"no answer .* after 3 attempts"):
        await remote.send("GET", "/admin/system", attempts=3)
    assert len(asked) == 3


async def test_metrics_are_the_exposition_or_none_when_unreadable() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/metrics"
        match request.url.host:
            case "up.example":
                return httpx.Response(200, text="switchboard_up 1.0\n")
            case "locked.example":
                return httpx.Response(404, json={})
        raise httpx.ConnectError("connection refused", request=request)

    transport = httpx.MockTransport(answer)
    for host, expected in (
        ("up.example", "switchboard_up 1.0\n"),
        ("locked.example", None),
        ("down.example", None),
    ):
        async with httpx.AsyncClient(transport=transport, base_url=f"http://{host}") as http:
            assert await metrics_text(http) == expected
