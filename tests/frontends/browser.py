"""A front end's requests as its browser makes them: from its origin, with the CORS preflight a
browser sends first whenever the request is not a simple one (an Authorization header, a JSON
body, PUT or DELETE), and the answer readable only if it names that origin.

Also what the front ends are given by the shop: a token in the original shop's shape, `{id, iat}`
signed with the shared secret, the id a MongoDB ObjectId."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import jwt

from tests.conftest import TEST_CUSTOMER_SECRET, Live
from tests.sio.node import NodeClients

# Where each front end is served in development (its dev server's port, from its own config).
ORIGINS = {
    "agent-dashboard": "http://localhost:8080",  # customer-support-agent-react, vite.config.ts
    "admin-panel": "http://localhost:4200",  # customer-support-admin-angular, `ng serve`
    "widget": "http://localhost:4201",  # ecommerce-chat-angular, `npm run dev`
    "shop": "http://localhost:5173",  # ecommerce-react, `vite`
}
ORIGINAL_PASSWORD = "123456zZ"  # the Node seeder's accounts, seeded by Switchboard too
# Headers a browser sends without asking (CORS-safelisted); any other needs a preflight.
_SIMPLE_METHODS = {"GET", "HEAD", "POST"}
_SIMPLE_HEADERS = {"accept", "accept-language", "content-language"}


class Browser:
    """Requests from one origin, the browser's way."""

    def __init__(self, live: Live, front_end: str) -> None:
        self.live = live
        self.origin = ORIGINS[front_end]

    async def request(
        self, method: str, path: str, *, token: str | None = None, body: Any = None
    ) -> httpx.Response:
        """The request (preflighted when a browser would), its answer, checked readable."""
        headers: dict[str, str] = {}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        if body is not None:
            headers["Content-Type"] = "application/json"
        unsafe = sorted(h.lower() for h in headers if h.lower() not in _SIMPLE_HEADERS)
        if method not in _SIMPLE_METHODS or unsafe:
            await self.preflight(method, path, unsafe)
        answer = await self.live.http.request(
            method,
            path,
            headers={"Origin": self.origin, **headers},
            content=None if body is None else json.dumps(body),
        )
        # Without this the browser hands the page a network error, whatever the status.
        assert answer.headers.get("access-control-allow-origin") == self.origin, (
            method,
            path,
            answer.status_code,
            dict(answer.headers),
        )
        return answer

    async def preflight(self, method: str, path: str, headers: list[str]) -> None:
        asked = {"Origin": self.origin, "Access-Control-Request-Method": method}
        if headers:
            asked["Access-Control-Request-Headers"] = ",".join(headers)
        answer = await self.live.http.options(path, headers=asked)
        where = f"preflight of {method} {path} from {self.origin}: {answer.status_code}"
        assert 200 <= answer.status_code < 300, where
        assert answer.headers.get("access-control-allow-origin") == self.origin, where
        allowed_methods = _listed(answer.headers.get("access-control-allow-methods", ""))
        assert method.lower() in allowed_methods, (where, allowed_methods)
        allowed_headers = _listed(answer.headers.get("access-control-allow-headers", ""))
        assert set(headers) <= allowed_headers, (where, allowed_headers)

    async def json(
        self,
        method: str,
        path: str,
        *,
        token: str | None = None,
        body: Any = None,
        status: int = 200,
    ) -> Any:
        answer = await self.request(method, path, token=token, body=body)
        assert answer.status_code == status, (method, path, answer.status_code, answer.text)
        return answer.json()

    async def connect(self, node: NodeClients, name: str, **opts: Any) -> None:
        """A stock Socket.IO client from this origin (sent on polling and websocket alike).
        Reconnection stays off, whatever the front end asks: a test sees only the connections
        it made."""
        extra = {**opts.pop("extraHeaders", {}), "Origin": self.origin}
        opts = {k: v for k, v in opts.items() if not k.startswith("reconnection")}
        await node.connect(name, extraHeaders=extra, **opts)


async def shop_opens_chat(live: Live, token: str, title: str, description: str) -> str:
    """The shop's chat button (ChatIcon.jsx) for a customer with no open chat: the new chat's id."""
    body = {"title": title, "description": description}
    chat = await Browser(live, "shop").json(
        "POST", "/chats/customer", token=token, body=body, status=201
    )
    chat_id: str = chat["id"]
    return chat_id


def _listed(header: str) -> set[str]:
    return {item.strip().lower() for item in header.split(",") if item.strip()}


def shop_token(shop_id: str) -> str:
    """A token as the original shop signs it: `{id, iat}`, no `exp`, no `sub`."""
    return jwt.encode({"id": shop_id, "iat": int(time.time())}, TEST_CUSTOMER_SECRET, "HS256")


def object_id(n: int) -> str:
    """A MongoDB ObjectId-like shop id (a seconds timestamp first, as real ones)."""
    return f"65f1c2a9e4b0a1b2c3d4{n:04x}"


async def no_errors(node: NodeClients, name: str, user_id: str) -> None:
    """No `error` event reached the socket for what it emitted so far: the server handles a
    socket's packets in order, so once an acknowledged round trip is back (joining one's own
    room, which every front end does), any error for an earlier emit has arrived before it."""
    assert await node.call(name, "joinNotification", user_id) == {"room": user_id}
    assert node.seen(name, "error") == [], node.seen(name, "error")
