"""The outbox: mail survives an SMTP outage and a killed process, is sent once, and stays in
the store (GET /dev/mail) when no SMTP server is configured. And SMTP over TLS, with a login."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import httpx
import pytest
import trio
import trustme

from api import ConfigError
from store import Mail, MailStore
from tests.api.support import ANN
from tests.conftest import Live, make_settings, running_server
from tests.mail.smtp_server import WAIT_SECONDS, free_port, running_smtp
from tools._sim_server import spawn_server

CLAIM_SECONDS = 15.0


async def outbox(store: MailStore) -> list[Mail]:
    return (await store.list_mail()).items


async def sent(live: Live, mail_id: str) -> Mail:
    """The mail once the sender noted the server's 250 (it does right after receiving it)."""
    with trio.fail_after(WAIT_SECONDS):
        while True:
            attempts = live.services.outbox.attempts
            [stored] = [m for m in await outbox(live.services.store) if m.id == mail_id]
            if stored.sent_at is not None:
                return stored
            await live.services.outbox.attempted(attempts)


async def test_mail_requested_while_smtp_is_down_arrives_once_it_is_back(tmp_path: Path) -> None:
    port = free_port()
    settings = make_settings(
        tmp_path, smtp_url=f"smtp://127.0.0.1:{port}?tls=none", mail_retry_seconds=0.05
    )
    async with running_server(settings) as live, trio.open_nursery() as nursery:
        # First an SMTP server that hangs up on every connection, then none at all.
        listeners = await trio.open_tcp_listeners(port, host="127.0.0.1")
        nursery.start_soon(trio.serve_listeners, lambda stream: stream.aclose(), listeners)
        forgot = await live.http.post("/password/forgot", json={"email": ANN})
        assert forgot.status_code == 200  # the request did not wait for the mail
        with trio.fail_after(WAIT_SECONDS):
            await live.services.outbox.attempted(0)
        nursery.cancel_scope.cancel()
        for listener in listeners:
            await listener.aclose()
        attempts = await live.services.outbox.attempted(live.services.outbox.attempts)
        [waiting] = await outbox(live.services.store)
        assert (waiting.sent_at, waiting.attempts) == (None, attempts)
        assert waiting.last_error

        with running_smtp(port) as smtp:
            [mail] = await smtp.mailbox.wait_to(ANN)
            assert mail.code.isdigit()
            delivered = await sent(live, waiting.id)
            assert (delivered.text, delivered.html) == ("", "")
            assert len(smtp.mailbox.received) == 1
        assert mail.message["Message-ID"] == f"<{waiting.id}@switchboard.example>"


async def test_a_mail_cut_off_by_a_killed_server_is_sent_after_restart_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with running_smtp() as smtp:
        monkeypatch.setenv("SWITCHBOARD_SMTP_URL", smtp.url)
        monkeypatch.setenv("SWITCHBOARD_MAIL_RETRY_SECONDS", "0.05")
        # The sender claims a mail for ten SMTP timeouts before sending it: 15 s here.
        monkeypatch.setenv("SWITCHBOARD_SMTP_TIMEOUT_SECONDS", str(CLAIM_SECONDS / 10))
        smtp.mailbox.hold()  # the first mail's data gets no answer...
        async with spawn_server(tmp_path) as first, httpx.AsyncClient(base_url=first.url) as http:
            forgot = await http.post("/password/forgot", json={"email": ANN})
            assert forgot.status_code == 200
            await trio.to_thread.run_sync(smtp.mailbox.held.wait, WAIT_SECONDS)
            os.kill(first.pid, signal.SIGKILL)  # ...and the server dies waiting for it
            killed_at = trio.current_time()
        assert smtp.mailbox.received == []
        async with spawn_server(tmp_path) as second, httpx.AsyncClient(base_url=second.url) as http:
            # Still claimed by the dead process: sent once the claim runs out.
            [mail] = await smtp.mailbox.wait_to(ANN, within=CLAIM_SECONDS + WAIT_SECONDS)
            assert trio.current_time() - killed_at > CLAIM_SECONDS / 2
            # A code that works: the one the first process stored.
            reset = await http.post(
                "/password/reset",
                json={"email": ANN, "otp": mail.code, "newPassword": "after-the-crash-1"},
            )
            assert reset.status_code == 200, reset.text
            # Sent once: the second process marked it sent, so no attempt repeats it.
            development = await http.get("/dev/mail")
            [stored] = development.json()
            assert stored["sentAt"] is not None
            assert stored["attempts"] == 0
        assert len(smtp.mailbox.received) == 1


async def test_without_smtp_mail_stays_in_the_outbox_for_dev_mail(tmp_path: Path) -> None:
    async with running_server(make_settings(tmp_path)) as live:
        forgot = await live.http.post("/password/forgot", json={"email": ANN})
        assert forgot.status_code == 200
        listed = await live.http.get("/dev/mail")
        assert listed.status_code == 200
        [mail] = listed.json()
        assert (mail["to"], mail["sentAt"], mail["attempts"]) == (ANN, None, 0)
        code = mail["text"].split()[0]
        reset = await live.http.post(
            "/password/reset", json={"email": ANN, "otp": code, "newPassword": "from-dev-mail-1"}
        )
        assert reset.status_code == 200, reset.text


async def test_production_without_smtp_refuses_the_mail_routes(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, mode="production")
    async with running_server(settings) as live:
        forgot = await live.http.post("/password/forgot", json={"email": ANN})
        assert forgot.status_code == 503
        assert forgot.json()["error"]["code"] == "mail_unavailable"
        assert "SWITCHBOARD_SMTP_URL" in forgot.json()["error"]["message"]
        assert (await live.http.get("/dev/mail")).status_code == 404
        assert await outbox(live.services.store) == []


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
@pytest.mark.parametrize("tls", ["starttls", "implicit"])
async def test_smtp_over_tls_with_a_login(tmp_path: Path, tls: str) -> None:
    with running_smtp(tls=tls, ca=trustme.CA(), tmp=tmp_path) as smtp:
        settings = make_settings(tmp_path, smtp_url=smtp.url, smtp_ca_file=smtp.ca_file)
        async with running_server(settings) as live:
            assert (await live.http.post("/password/forgot", json={"email": ANN})).is_success
            [mail] = await smtp.mailbox.wait_to(ANN)
            assert mail.code.isdigit()


async def test_starttls_is_required_unless_the_url_says_otherwise(tmp_path: Path) -> None:
    with running_smtp() as smtp:  # a server that offers no STARTTLS
        settings = make_settings(
            tmp_path, smtp_url=f"smtp://127.0.0.1:{smtp.port}", mail_retry_seconds=0.05
        )
        async with running_server(settings) as live:
            assert (await live.http.post("/password/forgot", json={"email": ANN})).is_success
            with trio.fail_after(WAIT_SECONDS):
                await live.services.outbox.attempted(0)
            [waiting] = await outbox(live.services.store)
            assert waiting.last_error is not None
            assert "STARTTLS" in waiting.last_error
            assert smtp.mailbox.received == []


@pytest.mark.parametrize(
    ("overrides", "said"),
    [
        ({"smtp_url": "http://mail.example.com"}, "must start with smtp://"),
        ({"smtp_url": "smtp://"}, "names no host"),
        ({"smtp_url": "smtps://mail.example.com?tls=none"}, "tls= takes starttls or none"),
        ({"smtp_url": "smtp://mail.example.com?bcc=x"}, "unknown option 'bcc'"),
        (
            {"smtp_url": "smtp://mail.example.com", "mode": "production"},
            "SWITCHBOARD_MAIL_FROM is the demo address",
        ),
    ],
)
def test_an_unusable_mail_setting_is_refused_at_start(
    tmp_path: Path, overrides: dict[str, str], said: str
) -> None:
    settings = make_settings(tmp_path, **overrides)
    with pytest.raises(ConfigError, match=said):
        settings.check()
