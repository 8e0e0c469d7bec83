"""A real SMTP server for the tests: aiosmtpd on a loopback port, in its own thread.

What it accepts lands in a `Mailbox`; a trio test waits for a mail there without sleeping (the
server's thread wakes it). The server can hold a mail before answering its data (`hold`), and
can speak STARTTLS or implicit TLS with a certificate from a test CA (trustme), with a login.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import trio
import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, Envelope, LoginPassword, Session

WAIT_SECONDS = 10.0
USER, PASSWORD = "switchboard", "smtp-secret"


@dataclass(frozen=True)
class Received:
    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage

    @property
    def text(self) -> str:
        part = self.message.get_body(("plain",))
        assert part is not None
        content: str = part.get_content()
        return content.replace("\r\n", "\n")

    @property
    def html(self) -> str:
        part = self.message.get_body(("html",))
        assert part is not None
        content: str = part.get_content()
        return content

    @property
    def code(self) -> str:
        """The one-time code: the first word of the first line."""
        return self.text.split()[0]


class Mailbox:
    """What the server accepted, in order; safe to read from trio while the server adds."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._received: list[Received] = []
        self._waiters: list[tuple[trio.lowlevel.TrioToken, trio.Event]] = []
        self.held = threading.Event()  # set while `hold` keeps a mail waiting
        self._release: asyncio.Event | None = None
        self._hold_next = False

    @property
    def received(self) -> list[Received]:
        with self._lock:
            return list(self._received)

    def clear(self) -> None:
        with self._lock:
            self._received.clear()

    def to(self, address: str) -> list[Received]:
        return [r for r in self.received if address in r.rcpt_tos]

    def hold(self) -> None:
        """Keep the next mail's data unanswered until `release` (or the client goes away)."""
        self._hold_next = True

    async def handle_DATA(self, server: Any, session: Session, envelope: Envelope) -> str:
        if self._hold_next:
            self._hold_next = False
            self._release = asyncio.Event()
            self.held.set()
            await self._release.wait()
            return "451 held and dropped by the test"
        assert isinstance(envelope.content, bytes)
        message = message_from_bytes(envelope.content, policy=policy.default)
        assert isinstance(message, EmailMessage)
        received = Received(str(envelope.mail_from), list(envelope.rcpt_tos), message)
        with self._lock:
            self._received.append(received)
            waiters = list(self._waiters)
        for token, event in waiters:
            with suppress(trio.RunFinishedError):
                token.run_sync_soon(event.set)
        return "250 OK accepted"

    async def wait_for(
        self, wanted: Callable[[Received], bool], count: int = 1, *, within: float = WAIT_SECONDS
    ) -> list[Received]:
        """Wait (at most `within` seconds) until `count` received mails match; the matches."""
        token = trio.lowlevel.current_trio_token()
        with trio.fail_after(within):
            while True:
                event = trio.Event()
                with self._lock:
                    found = [r for r in self._received if wanted(r)]
                    if len(found) >= count:
                        return found
                    self._waiters.append((token, event))
                try:
                    await event.wait()
                finally:
                    with self._lock:
                        self._waiters.remove((token, event))

    async def wait_to(
        self, address: str, count: int = 1, *, within: float = WAIT_SECONDS
    ) -> list[Received]:
        return await self.wait_for(lambda r: address in r.rcpt_tos, count, within=within)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def _authenticate(
    server: Any, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
) -> AuthResult:
    ok = isinstance(auth_data, LoginPassword) and (auth_data.login, auth_data.password) == (
        USER.encode(),
        PASSWORD.encode(),
    )
    return AuthResult(success=ok)


@dataclass
class SmtpServer:
    mailbox: Mailbox
    port: int
    url: str
    ca_file: Path | None


@contextmanager
def running_smtp(
    port: int | None = None,
    *,
    tls: str = "none",
    ca: trustme.CA | None = None,
    tmp: Path | None = None,
) -> Iterator[SmtpServer]:
    """An SMTP server on 127.0.0.1 until the block ends. `tls`: "none" (the URL says
    ?tls=none), "starttls" (required, with a login) or "implicit" (smtps://, with a login)."""
    mailbox = Mailbox()
    port = port or free_port()
    kwargs: dict[str, Any] = {}
    ca_file = None
    if tls != "none":
        assert ca is not None
        assert tmp is not None
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert("127.0.0.1").configure_cert(context)
        ca_file = tmp / "smtp-ca.pem"
        ca.cert_pem.write_to_path(str(ca_file))
        kwargs |= {"authenticator": _authenticate, "auth_required": True}
        if tls == "starttls":
            kwargs |= {"tls_context": context, "require_starttls": True}
        else:
            # aiosmtpd does not count implicit TLS as TLS for AUTH; the socket is TLS all along.
            kwargs |= {"ssl_context": context, "auth_require_tls": False}
    controller = Controller(mailbox, hostname="127.0.0.1", port=port, **kwargs)
    controller.start()
    try:
        credentials = f"{USER}:{PASSWORD}@" if tls != "none" else ""
        scheme, query = {
            "none": ("smtp", "?tls=none"),
            "starttls": ("smtp", ""),
            "implicit": ("smtps", ""),
        }[tls]
        yield SmtpServer(mailbox, port, f"{scheme}://{credentials}127.0.0.1:{port}{query}", ca_file)
    finally:
        if mailbox._release is not None:
            controller.loop.call_soon_threadsafe(mailbox._release.set)
        controller.stop()
