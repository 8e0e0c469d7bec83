"""The console as served: `/` links what is enabled (and only that in production), every page and
asset carries the strict CSP, only the known assets are served, the files themselves hold no
inline script or style and name no other server, and the page's own origin may open /ws."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from trio_websocket import HandshakeError, open_websocket_url

from api._console import ASSETS, CONSOLE_DIR, PAGES
from tests.conftest import Live, make_settings, running_server
from tests.e2e.wsclient import ws_url

CSP = re.compile(
    r"default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    r"connect-src 'self'; form-action 'none'; base-uri 'none'; frame-ancestors 'none'; "
    r"require-trusted-types-for 'script'; trusted-types 'none'"
)
PATHS = ["/", "/console", "/console/agent", "/console/customer"]


def _links(html: str) -> set[str]:
    return set(re.findall(r'<a href="([^"]+)"', html))


async def test_the_index_links_everything_in_development(live: Live) -> None:
    response = await live.http.get("/")
    assert response.status_code == 200
    assert _links(response.text) == {"/console", "/console/agent", "/console/customer", "/docs"}
    assert "admin@switchboard.example" in response.text  # the demo logins
    for path in PATHS + [f"/console/assets/{name}" for name in sorted(ASSETS)]:
        answer = await live.http.get(path)
        assert answer.status_code == 200, path
        assert CSP.fullmatch(answer.headers["Content-Security-Policy"]), path
        assert answer.headers["X-Content-Type-Options"] == "nosniff"
        assert answer.headers["X-Frame-Options"] == "DENY"
    script = await live.http.get("/console/assets/admin.js")
    assert script.headers["Content-Type"].startswith("text/javascript")


async def test_production_links_only_what_is_enabled(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, mode="production")
    async with running_server(settings) as live:
        index = await live.http.get("/")
        assert _links(index.text) == {"/console", "/console/agent", "/docs"}
        assert "switchboard-demo" not in index.text
        assert (await live.http.get("/console/customer")).status_code == 404
        assert (await live.http.get("/console")).status_code == 200


async def test_a_server_without_the_console_neither_serves_nor_links_it(tmp_path: Path) -> None:
    async with running_server(make_settings(tmp_path, console=False)) as live:
        index = await live.http.get("/")
        assert _links(index.text) == {"/docs"}
        for path in [*PATHS[1:], "/console/assets/admin.js"]:
            answer = await live.http.get(path)
            assert answer.status_code == 404, path
            assert answer.json()["error"]["code"] == "not_found"


@pytest.mark.parametrize(
    "name", ["server.py", "..%2F_console.py", "%2E%2E%2F_app.py", "admin.html", "ADMIN.JS"]
)
async def test_only_the_known_assets_are_served(live: Live, name: str) -> None:
    response = await live.http.get(f"/console/assets/{name}")
    assert response.status_code == 404


def test_the_files_hold_no_inline_code_and_name_no_other_server() -> None:
    files = sorted({*PAGES.values(), *ASSETS})
    assert sorted(path.name for path in CONSOLE_DIR.iterdir()) == files, "every file is served"
    for name in files:
        text = (CONSOLE_DIR / name).read_text()
        assert not re.search(r"https?://(?!www\.w3\.org/2000/svg)", text), name
        assert not re.search(r"innerHTML|outerHTML|insertAdjacentHTML|document\.write", text), name
        if name.endswith(".html"):
            assert not re.search(r"<script(?![^>]*\bsrc=)", text), f"inline script in {name}"
            assert not re.search(r"\sstyle=|<style", text), f"inline style in {name}"
            assert not re.search(r"\son[a-z]+=", text), f"inline handler in {name}"


async def test_the_console_origin_may_open_the_websocket(live: Live) -> None:
    token = await live.login("ann@switchboard.example")
    host = live.url.removeprefix("http://")
    headers = [(b"Authorization", f"Bearer {token}".encode())]
    async with open_websocket_url(
        ws_url(live), extra_headers=[*headers, (b"Origin", f"http://{host}".encode())]
    ) as conn:
        await conn.send_message('{"type": "ping"}')
        assert await conn.get_message() == '{"type":"pong"}'
    with pytest.raises(HandshakeError) as refused:
        async with open_websocket_url(
            ws_url(live), extra_headers=[*headers, (b"Origin", b"http://evil.example")]
        ):
            pass
    assert refused.value.status_code == 403  # type: ignore[attr-defined]
