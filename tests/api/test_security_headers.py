"""Security headers on HTTP answers: nosniff and no referrer on every one (JSON, errors, the
Socket.IO polling transport, pages, assets); JSON answers framed by nobody and running nothing;
the docs page's own policy; the console's strict one (with Trusted Types) as it was; CORS as it
was."""

from __future__ import annotations

from pathlib import Path

import httpx

from api._console import CONTENT_SECURITY_POLICY as CONSOLE_POLICY
from tests.api.support import bearer
from tests.conftest import Live, make_settings, running_server

ORIGIN = "https://shop.example.com"


def _directives(response: httpx.Response) -> dict[str, str]:
    policy = response.headers["Content-Security-Policy"]
    return {
        name: value.strip()
        for name, _, value in (part.strip().partition(" ") for part in policy.split(";"))
    }


def _common(response: httpx.Response) -> None:
    where = f"{response.request.method} {response.request.url.path}: {response.status_code}"
    assert response.headers["X-Content-Type-Options"] == "nosniff", where
    assert response.headers["Referrer-Policy"] == "no-referrer", where
    assert "frame-ancestors" in _directives(response), where


async def test_every_kind_of_answer_carries_the_headers(live: Live) -> None:
    admin = bearer(await live.login("admin@switchboard.example", admin=True))
    answers = [
        await live.http.get("/dev/test"),
        await live.http.get("/admin/queue", headers=admin),
        await live.http.get("/openapi.json"),
        await live.http.get("/healthz"),
        await live.http.get("/no/such/thing"),  # 404
        await live.http.get("/profile"),  # 401
        await live.http.post("/auth/login", json={"email": "x"}),  # 400
        await live.http.get("/socket.io/", params={"EIO": "4", "transport": "polling"}),
        await live.http.get("/docs"),
        await live.http.get("/docs/assets/swagger-ui-bundle.js"),
        await live.http.get("/console"),
        await live.http.get("/console/assets/common.js"),
        await live.http.get("/"),
    ]
    assert {answer.status_code for answer in answers} >= {200, 400, 401, 404}
    for answer in answers:
        _common(answer)
    json_answer = answers[1]
    assert _directives(json_answer) == {"default-src": "'none'", "frame-ancestors": "'none'"}


async def test_the_docs_page_has_its_own_policy_and_the_console_keeps_its_own(
    live: Live,
) -> None:
    docs = _directives(await live.http.get("/docs"))
    assert docs["frame-ancestors"] == "'none'"
    assert docs["script-src"] == "'self'"  # no inline script, no eval
    assert docs["default-src"] == "'none'"
    assert docs["form-action"] == "'none'"
    init = await live.http.get("/docs/assets/switchboard-docs.js")
    assert "persistAuthorization: false" in init.text
    for path in ("/console", "/console/agent", "/console/assets/admin.js", "/"):
        answer = await live.http.get(path)
        assert answer.headers["Content-Security-Policy"] == CONSOLE_POLICY, path
        assert "require-trusted-types-for 'script'" in CONSOLE_POLICY


async def test_cors_answers_are_unchanged(tmp_path: Path) -> None:
    async with running_server(make_settings(tmp_path, allowed_origins=[ORIGIN])) as live:
        preflight = await live.http.options(
            "/auth/login",
            headers={"Origin": ORIGIN, "Access-Control-Request-Method": "POST"},
        )
        assert preflight.status_code == 204
        assert preflight.headers["Access-Control-Allow-Origin"] == ORIGIN
        _common(preflight)
        polling = await live.http.get(
            "/socket.io/", params={"EIO": "4", "transport": "polling"}, headers={"Origin": ORIGIN}
        )
        assert polling.status_code == 200
        assert polling.headers["Access-Control-Allow-Origin"] == ORIGIN
        assert polling.headers["Access-Control-Allow-Credentials"] == "true"
        assert polling.text.startswith("0{")  # the Engine.IO open packet, as before
        _common(polling)
