"""`open_bus(url)`: the coordination engine, Valkey or Redis, through coredis.

coredis runs on anyio, so it runs on Trio as it is: its client keeps a task group of its own,
which `open_bus` enters and leaves in one task, as structured concurrency wants. Every call is
bounded by the client's own timeouts (`call_seconds`, derived by the caller from its lease TTL), so
a Valkey that stops answering is a `BusUnavailable`, never a hang.
"""

from __future__ import annotations

import math
import ssl
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from typing import Any, TypeAlias
from urllib.parse import parse_qs, urlsplit

import coredis
import trio
from coredis.exceptions import ConnectionError as CoredisConnectionError
from coredis.exceptions import RedisError
from coredis.retry import ConstantRetryPolicy, ExponentialBackoffRetryPolicy

from telemetry import redact_url

# The schemes a person may write, and the one coredis understands for each.
SCHEMES = {"redis": "redis", "valkey": "redis", "rediss": "rediss", "valkeys": "rediss"}
ACCEPTED_FORMS = "'redis://host:6379/0', 'valkey://host:6379/0' or 'rediss://host:6380/0' (TLS)"

_PREFIX = "switchboard:"


class BusError(Exception):
    """The bus cannot be used as configured; the message says what to change."""


class BusUnavailable(BusError):
    """Valkey/Redis cannot be reached right now; the caller may retry."""


@dataclass(frozen=True, slots=True)
class Published:
    channel: str
    data: bytes


@dataclass(frozen=True, slots=True)
class Resubscribed:
    """The subscription was lost and made again: whatever was published meanwhile is gone."""


Delivery: TypeAlias = Published | Resubscribed


def key(*parts: str) -> str:
    """A key or channel of Switchboard's, so one Valkey database can hold other data too."""
    return _PREFIX + ":".join(parts)


def check_bus_url(url: str) -> str:
    """The URL coredis takes for `url`, or a BusError naming the forms accepted. Over TLS the
    server's certificate must also name the URL's host unless the URL says
    `ssl_check_hostname=false`: coredis checks only who signed it by default."""
    scheme, separator, rest = url.partition("://")
    if separator != "://" or scheme not in SCHEMES or not rest.partition("/")[0]:
        raise BusError(f"unknown bus URL {redact_url(url)!r}; use {ACCEPTED_FORMS}")
    checked = f"{SCHEMES[scheme]}://{rest}"
    if SCHEMES[scheme] == "rediss" and "ssl_check_hostname" not in _query(url):
        checked += ("&" if "?" in rest else "?") + "ssl_check_hostname=true"
    return checked


def _query(url: str) -> dict[str, list[str]]:
    return parse_qs(urlsplit(url).query)


_NAME_THE_CA = "name the CA that signed it in the URL: ?ssl_ca_certs=/path/to/ca.pem"
# OpenSSL's X509_V_ERR_HOSTNAME_MISMATCH and X509_V_ERR_IP_ADDRESS_MISMATCH: a trusted
# certificate, for another server.
_TRUST_HINTS = dict.fromkeys((62, 64), "the URL must name the host as its certificate does")


def _untrusted(error: BaseException | None) -> ssl.SSLCertVerificationError | None:
    """The refused certificate behind a failed connection, if that is why it failed (coredis
    wraps it in the same connection error as a refused port)."""
    while error is not None:
        if isinstance(error, ssl.SSLCertVerificationError):
            return error
        error = error.__cause__ or error.__context__
    return None


class Bus:
    """One connection pool to the bus; publish, subscribe, and the raw client for leases and
    membership (`bus._lease`, `bus._nodes`)."""

    def __init__(self, client: coredis.Redis[bytes], where: str, call_seconds: float) -> None:
        self.client = client
        self.where = where
        self.call_seconds = call_seconds

    @contextmanager
    def translated(self) -> Iterator[None]:
        """coredis's errors as the bus's: BusUnavailable for what a retry may cure."""
        try:
            yield
        except (CoredisConnectionError, TimeoutError, OSError) as exc:
            # Not BusUnavailable: retrying cannot make a certificate trusted.
            if (refused := _untrusted(exc)) is not None:
                why = (refused.verify_message or str(refused)).rstrip(".")
                raise BusError(
                    f"the bus at {self.where} presented a TLS certificate this node does not "
                    f"trust ({why}); {_TRUST_HINTS.get(refused.verify_code, _NAME_THE_CA)}"
                ) from exc
            raise BusUnavailable(
                f"lost the bus at {self.where}: {exc or type(exc).__name__}"
            ) from exc
        except RedisError as exc:
            raise BusError(f"the bus at {self.where} refused the operation: {exc}") from exc

    async def publish(self, channel: str, data: bytes) -> int:
        """Send `data` to the subscribers of `channel` now; returns how many got it (0: none is
        listening, so nothing was delivered)."""
        with self.translated():
            return await self.client.publish(channel, data)

    async def publish_all(self, publications: Sequence[tuple[str, bytes]]) -> None:
        """Send each (channel, data) in order, in one round trip to the server: a node's events
        go out as fast as they come, not one round trip each."""
        with self.translated():
            async with self.client.pipeline(transaction=False) as pipe:
                for channel, data in publications:
                    pipe.publish(channel, data)

    @asynccontextmanager
    async def subscribe(self, *channels: str) -> AsyncIterator[trio.MemoryReceiveChannel[Delivery]]:
        """What is published on `channels` from now on, in order per publisher. After a lost
        connection the subscription is made again by itself, and a `Resubscribed` tells the
        reader that what was published meanwhile is lost (it should read the state afresh)."""
        assert channels
        send, receive = trio.open_memory_channel[Delivery](math.inf)
        pubsub = self.client.pubsub(
            channels=list(channels),
            retry_policy=_resubscribe_policy(self.call_seconds),
            subscription_timeout=max(self.call_seconds, 1.0),
        )
        with self.translated():
            async with pubsub, trio.open_nursery() as nursery:
                nursery.start_soon(_forward, pubsub, channels[0], send)
                try:
                    yield receive
                finally:
                    nursery.cancel_scope.cancel()


async def _forward(pubsub: Any, first_channel: str, send: trio.MemorySendChannel[Delivery]) -> None:
    confirmations = 0
    async with send:
        while True:
            # Not `async for`: coredis ends that iteration while it is reconnecting.
            message = await pubsub.get_message()
            if message is None:
                continue
            kind = message["type"]
            if kind == "message":
                send.send_nowait(Published(_text(message["channel"]), _bytes(message["data"])))
            elif kind == "subscribe" and _text(message["channel"]) == first_channel:
                confirmations += 1
                if confirmations > 1:  # the client reconnected and subscribed again
                    send.send_nowait(Resubscribed())


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _bytes(value: object) -> bytes:
    return value if isinstance(value, bytes) else str(value).encode()


def _resubscribe_policy(call_seconds: float) -> Any:
    # coredis' default backs off to 16 s; a node must be back within about a lease's time.
    return ExponentialBackoffRetryPolicy(
        (CoredisConnectionError, TimeoutError),
        retries=None,
        base_delay=0.05,
        max_delay=max(call_seconds, 0.2),
        jitter=True,
    )


@asynccontextmanager
async def open_bus(url: str, *, call_seconds: float = 1.0) -> AsyncIterator[Bus]:
    """Connect to the bus `url` names and keep the connection pool for the block. An
    unreachable server is a BusUnavailable naming the URL without its password; each call
    waits at most `call_seconds` for the server (once more after a lost connection)."""
    where = redact_url(url)
    try:
        client: coredis.Redis[bytes] = coredis.Redis.from_url(
            check_bus_url(url),
            connect_timeout=call_seconds,
            stream_timeout=call_seconds,
            retry_policy=ConstantRetryPolicy(
                (CoredisConnectionError, TimeoutError), retries=1, delay=0.01
            ),
            # Valkey reports itself as Redis 7.2 for clients; the check would refuse nothing useful.
            verify_version=False,
        )
    except OSError as exc:
        # coredis reads the URL's TLS files here (ssl.SSLError is an OSError); the error names
        # no file, so the options are shown (redact_url drops them).
        files = " ".join(f"{k}={v[0]}" for k, v in _query(url).items() if k.startswith("ssl_"))
        raise BusError(
            f"cannot use the TLS files of the bus URL {where} ({files}): {exc.strerror or exc}"
        ) from None
    bus = Bus(client, where, call_seconds)
    try:
        async with client:
            try:
                with bus.translated():
                    await client.ping()
            except BusUnavailable as exc:
                reason = exc.__cause__ or exc
                raise BusUnavailable(f"cannot reach the bus at {where}: {reason}") from exc
            yield bus
    except BaseExceptionGroup as group:
        # coredis's task group wraps whatever ends the block; one error is shown as itself.
        if len(group.exceptions) == 1 and isinstance(group.exceptions[0], Exception):
            raise group.exceptions[0] from None
        raise
