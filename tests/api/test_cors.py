"""Browser origins on REST, as a browser asks (a preflight, then the request), and Express-style
trailing slashes on every route."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.api.support import ADMIN, ANN, assert_error, customer, staff
from tests.conftest import Live, make_settings, running_server

AGENT_APP = "http://localhost:5173"
EVIL = "https://evil.example"


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[Live]:
    settings = make_settings(tmp_path, allowed_origins=[AGENT_APP, "https://shop.example/"])
    async with running_server(settings) as live:
        yield live


def preflight(origin: str, method: str, headers: str) -> dict[str, str]:
    return {
        "Origin": origin,
        "Access-Control-Request-Method": method,
        "Access-Control-Request-Headers": headers,
    }


async def test_a_preflight_from_an_allowed_origin_lets_the_request_through(served: Live) -> None:
    answer = await served.http.options(
        "/auth/login", headers=preflight(AGENT_APP, "POST", "content-type")
    )
    assert answer.status_code == 204
    assert answer.headers["access-control-allow-origin"] == AGENT_APP
    assert answer.headers["access-control-allow-credentials"] == "true"
    assert "POST" in answer.headers["access-control-allow-methods"]
    allowed = answer.headers["access-control-allow-headers"].lower()
    assert {"authorization", "content-type"} <= set(allowed.replace(" ", "").split(","))
    assert "Origin" in answer.headers["vary"]

    login = await served.http.post(
        "/auth/login",
        json={"email": ANN, "password": "switchboard-demo"},
        headers={"Origin": AGENT_APP},
    )
    assert login.status_code == 200
    assert login.headers["access-control-allow-origin"] == AGENT_APP
    assert login.headers["access-control-allow-credentials"] == "true"
    assert login.headers["vary"] == "Origin"


async def test_every_method_the_front_ends_use_passes_the_preflight(served: Live) -> None:
    # The origin is listed with a trailing slash; browsers send it without one.
    for method in ("GET", "POST", "PUT", "DELETE"):
        answer = await served.http.options(
            "/admin/users/0006611b851d85a821181b94",
            headers=preflight("https://shop.example", method, "authorization,content-type"),
        )
        assert answer.status_code == 204
        assert method in answer.headers["access-control-allow-methods"]


async def test_lists_expose_the_next_page_header(served: Live) -> None:
    admin = await staff(served, ADMIN)
    page = await served.http.get(
        "/admin/users", params={"limit": 1}, headers={**admin.headers, "Origin": AGENT_APP}
    )
    assert "X-Next-Cursor" in page.headers
    assert page.headers["access-control-expose-headers"] == "X-Next-Cursor"


async def test_errors_carry_the_cors_headers_so_the_page_can_read_why(served: Live) -> None:
    refused = await served.http.get("/profile", headers={"Origin": AGENT_APP})
    assert_error(refused, 401, "unauthorized")
    assert refused.headers["access-control-allow-origin"] == AGENT_APP


async def test_other_origins_get_no_cors_headers(served: Live) -> None:
    answer = await served.http.options(
        "/auth/login", headers=preflight(EVIL, "POST", "content-type")
    )
    body = assert_error(answer, 403, "origin_not_allowed")
    assert "SWITCHBOARD_ALLOWED_ORIGINS" in body["message"]
    assert not any(name.startswith("access-control-") for name in answer.headers)
    served_anyway = await served.http.get("/dev/test", headers={"Origin": EVIL})
    assert served_anyway.status_code == 200
    assert not any(name.startswith("access-control-") for name in served_anyway.headers)


async def test_without_an_origin_there_are_no_cors_headers(served: Live) -> None:
    answer = await served.http.get("/dev/test")
    assert not any(name.startswith("access-control-") for name in answer.headers)


async def test_no_allowed_origins_means_no_browser_origin_is_served(live: Live) -> None:
    answer = await live.http.options("/auth/login", headers=preflight(AGENT_APP, "POST", ""))
    assert_error(answer, 403, "origin_not_allowed")


async def _get_paths(live: Live) -> list[tuple[str, str]]:
    """Every GET operation without path parameters, with a role allowed on it."""
    document: dict[str, Any] = (await live.http.get("/openapi.json")).json()
    return [
        (path, (item["get"].get("x-roles") or [""])[0])
        for path, item in document["paths"].items()
        if "get" in item and "{" not in path
    ]


async def test_a_trailing_slash_matches_every_route(live: Live) -> None:
    callers = {
        "admin": await staff(live, ADMIN),
        "agent": await staff(live, ANN),
        "customer": await customer(live),
    }
    paths = await _get_paths(live)
    assert ("/profile", "agent") in paths or any(p == "/profile" for p, _ in paths)
    for path, role in paths:
        headers = callers[role].headers if role in callers else {}
        plain = await live.http.get(path, headers=headers)
        slashed = await live.http.get(path + "/", headers=headers)
        assert slashed.status_code == plain.status_code, path
        assert slashed.status_code != 404, path
    # A path parameter too, and a write.
    agent = callers["agent"]
    status = await live.http.put("/profile/agent/available/", headers=agent.headers)
    assert status.status_code == 200, status.text
    assert status.json()["status"] == "available"
