"""Talking to a running Switchboard over HTTP, for the tools that do (inspect, loadsim).

Every failure an operator can meet becomes a `RemoteError` whose message is one line naming the
server: nothing listening, credentials refused, a token that is not an admin's, an error answer.
The one REST client of the tools: the chaos harness uses it too, riding out the restarts it
causes (`RideOut`) across the nodes it runs.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlsplit

import httpx
import trio

DEFAULT_URL = "http://127.0.0.1:8080"
# The demo admin that `switchboard seed` creates: what a development server accepts.
DEMO_ADMIN_EMAIL = "admin@switchboard.example"
DEMO_ADMIN_PASSWORD = "switchboard-demo"
NEXT_CURSOR = "X-Next-Cursor"
PAGE_LIMIT = 100
# httpx's own bound on each request; a server that takes longer is reported, not waited for.
HTTP_SECONDS = 30.0
# A server busy checking passwords refuses before doing anything (503 `busy`, Retry-After): a
# setup creating or signing in many accounts on a loaded machine waits and asks again.
BUSY_RETRIES = 10

T = TypeVar("T")
R = TypeVar("R")


class RemoteError(Exception):
    """The server cannot be used as asked; the message says why, in one line."""


class Unreachable(RemoteError):
    """No answer at all: nothing listening, a timeout, a dropped connection. Worth retrying."""


@dataclass(frozen=True, slots=True)
class Credentials:
    """An admin's token, or the email and password to get one."""

    token: str | None
    email: str
    password: str

    @classmethod
    def of(cls, args: argparse.Namespace) -> Credentials:
        return cls(token=args.token, email=args.email, password=args.password)


CLIENT_VARIABLES = frozenset(
    {
        "SWITCHBOARD_URL",
        "SWITCHBOARD_TOKEN",
        "SWITCHBOARD_ADMIN_EMAIL",
        "SWITCHBOARD_ADMIN_PASSWORD",
    }
)
"""The variables `add_server_flags` reads: the client side's, not the server's settings."""


def add_server_flags(parser: argparse.ArgumentParser) -> None:
    """--url and the admin credentials, each with its environment variable."""
    parser.add_argument(
        "--url",
        default=os.environ.get("SWITCHBOARD_URL", DEFAULT_URL),
        help=f"the server (env SWITCHBOARD_URL; default {DEFAULT_URL})",
    )
    parser.add_argument(
        "--token",
        default=os.environ.get("SWITCHBOARD_TOKEN"),
        help="an admin's access token (env SWITCHBOARD_TOKEN); else --email/--password sign in",
    )
    parser.add_argument(
        "--email",
        default=os.environ.get("SWITCHBOARD_ADMIN_EMAIL", DEMO_ADMIN_EMAIL),
        help="admin email (env SWITCHBOARD_ADMIN_EMAIL; default the demo admin)",
    )
    parser.add_argument(
        "--password",
        default=os.environ.get("SWITCHBOARD_ADMIN_PASSWORD", DEMO_ADMIN_PASSWORD),
        help="admin password (env SWITCHBOARD_ADMIN_PASSWORD; default the demo one)",
    )


def base_url(url: str) -> str:
    """The server's http(s) base URL, without a trailing slash; refuses anything else."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise RemoteError(f"{url!r} is not a server URL; expected e.g. {DEFAULT_URL}")
    return url.rstrip("/")


def is_loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _error_text(response: httpx.Response) -> str:
    """The message of the server's error body, or its status line when it sent none."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        return str(body["error"].get("message") or body["error"].get("code"))
    return f"{response.status_code} {response.reason_phrase}"


def _busy_for(response: httpx.Response) -> float | None:
    """How long to wait before asking again, when the server refused as busy (nothing done)."""
    if response.status_code != 503:
        return None
    try:
        code = response.json()["error"]["code"]
    except (ValueError, KeyError, TypeError):
        return None
    if code != "busy":
        return None
    try:
        return min(max(float(response.headers.get("Retry-After", "1")), 0.1), 5.0)
    except ValueError:
        return 1.0


@dataclass(frozen=True, slots=True)
class RideOut:
    """Asking again while a server restarts: no answer, or a 5xx one, is asked again up to
    `attempts` times, each request bounded by `seconds`, after a jittered exponential backoff
    from `first` to `cap` seconds, and on the next node when there are several."""

    attempts: int
    seconds: float
    first: float
    cap: float

    def backoff(self, attempt: int) -> float:
        return min(self.cap, self.first * 2.0**attempt) * random.uniform(0.5, 1.0)


class Server:
    """An HTTP client bound to one server (or the nodes of one cluster, `failover`); answers
    are JSON or a RemoteError. With `ride_out`, a server that is down or failing is asked again
    instead of reported at once."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        url: str,
        *,
        failover: Sequence[httpx.AsyncClient] = (),
        ride_out: RideOut | None = None,
    ) -> None:
        self._nodes = (http, *failover)
        self._turn = 0
        self.url = url
        self.ride_out = ride_out

    @property
    def http(self) -> httpx.AsyncClient:
        """The node asked now; the next one after a failure."""
        return self._nodes[self._turn % len(self._nodes)]

    async def send(
        self,
        method: str,
        path: str,
        *,
        token: str | None = None,
        attempts: int | None = None,
        **kwargs: Any,
    ) -> httpx.Response:
        """The server's answer, whatever its status; a RemoteError if there is none. `token`
        signs this request alone; `attempts` bounds the ride-out of this request."""
        if token is not None:
            kwargs["headers"] = {**kwargs.get("headers", {}), "Authorization": f"Bearer {token}"}
        policy = self.ride_out
        if policy is None:
            return await self._send_once(method, path, **kwargs)
        tries = attempts or policy.attempts
        for attempt in range(tries):
            try:
                with trio.fail_after(policy.seconds):
                    response = await self._send_once(method, path, **kwargs)
                if response.status_code < 500:
                    return response
            except (Unreachable, trio.TooSlowError):
                pass
            self._turn += 1
            await trio.sleep(policy.backoff(attempt))
        raise Unreachable(f"{method} {path}: no answer from {self.url} after {tries} attempts")

    async def _send_once(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            return await self.http.request(method, path, **kwargs)
        except httpx.ConnectError as error:
            raise Unreachable(f"cannot reach Switchboard at {self.url}: {_why(error)}") from None
        except httpx.TimeoutException:
            raise Unreachable(f"Switchboard at {self.url} did not answer in time") from None
        except httpx.TransportError as error:
            raise Unreachable(f"lost the connection to {self.url}: {error}") from None

    async def call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """A successful answer, else a RemoteError saying what the server refused."""
        response = await self.send(method, path, **kwargs)
        for _ in range(BUSY_RETRIES):
            delay = _busy_for(response)
            if delay is None:
                break
            await trio.sleep(delay)
            response = await self.send(method, path, **kwargs)
        self._check(method, path, response)
        return response

    def _check(self, method: str, path: str, response: httpx.Response) -> None:
        match response.status_code:
            case 401:
                raise RemoteError(
                    f"{self.url} refused the token: {_error_text(response)}; "
                    "sign in again (--email/--password) or give a fresh --token"
                )
            case 403:
                raise RemoteError(f"{self.url} refused: {_error_text(response)}")
            case status if status >= 400:
                raise RemoteError(f"{method} {path} failed: {_error_text(response)}")

    async def json(self, path: str, **params: Any) -> Any:
        return (await self.call("GET", path, params=params)).json()

    async def json_or_none(self, path: str) -> Any:
        """The JSON at `path`, or None if the server has no such thing (404)."""
        response = await self.send("GET", path)
        if response.status_code == 404:
            return None
        self._check("GET", path, response)
        return response.json()

    async def every(self, path: str, **params: Any) -> list[Any]:
        """Every item of a paged list, following X-Next-Cursor to the end."""
        items: list[Any] = []
        cursor: str | None = None
        while True:
            query = {**params, "limit": PAGE_LIMIT} | ({"cursor": cursor} if cursor else {})
            response = await self.call("GET", path, params=query)
            items.extend(response.json())
            cursor = response.headers.get(NEXT_CURSOR)
            if cursor is None:
                return items


def _why(error: httpx.ConnectError) -> str:
    text = str(error)
    # httpx on trio reports a refused connection as every connection attempt having failed.
    refused = any(words in text.lower() for words in ("refused", "attempts to connect"))
    return "connection refused (is the server running?)" if refused else text


async def sign_in(server: Server, credentials: Credentials) -> str:
    """An admin token: the one given, or a fresh sign-in at /admin/auth/login."""
    if credentials.token:
        return credentials.token
    email = credentials.email
    response = await server.send(
        "POST", "/admin/auth/login", json={"email": email, "password": credentials.password}
    )
    match response.status_code:
        case 200:
            token: str = response.json()["token"]
            return token
        case 401:
            raise RemoteError(f"{server.url} refused the sign-in: wrong email or password")
        case 403:
            raise RemoteError(f"{server.url}: {email} is not an admin ({_error_text(response)})")
        case _:
            raise RemoteError(f"cannot sign in at {server.url}: {_error_text(response)}")


@asynccontextmanager
async def admin_server(url: str, credentials: Credentials) -> AsyncIterator[Server]:
    """A client of `url` carrying an admin's token (a token given is checked by its first use)."""
    url = base_url(url)
    async with httpx.AsyncClient(base_url=url, timeout=HTTP_SECONDS) as http:
        server = Server(http, url)
        http.headers["Authorization"] = f"Bearer {await sign_in(server, credentials)}"
        yield server


async def metrics_text(http: httpx.AsyncClient) -> str | None:
    """The server's Prometheus exposition at /metrics, or None when it cannot be read (no
    answer, or not 200): loadsim's stalls and bench ws's collector counts then go without it."""
    try:
        response = await http.get("/metrics")
    except httpx.HTTPError:
        return None
    return response.text if response.status_code == 200 else None


async def each(items: Sequence[T], call: Callable[[T], Awaitable[R]], at_once: int) -> list[R]:
    """`call` on every item, `at_once` at a time; the answers in the items' order. A failure is
    raised as itself (not inside the nursery's exception group), so callers catch RemoteError."""
    answers: dict[int, R] = {}
    limiter = trio.CapacityLimiter(at_once)

    async def one(index: int, item: T) -> None:
        async with limiter:
            answers[index] = await call(item)

    try:
        async with trio.open_nursery() as nursery:
            for index, item in enumerate(items):
                nursery.start_soon(one, index, item)
    except BaseExceptionGroup as group:
        raise first_error(group) from None
    return [answers[index] for index in range(len(items))]


def first_error(error: BaseException) -> BaseException:
    """The first error inside (nested) exception groups."""
    while isinstance(error, BaseExceptionGroup):
        error = error.exceptions[0]
    return error
