"""The tools' HTTP client: a server busy checking passwords is asked again, nothing else is."""

from __future__ import annotations

import httpx
import pytest
import trio
import trio.testing

from tools._remote import RemoteError, Server

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
