"""Fixtures for the mail tests: one real SMTP server per session (aiosmtpd on loopback), and a
live Switchboard that sends to it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from tests.conftest import Live, make_settings, running_server
from tests.mail.smtp_server import Mailbox, SmtpServer, running_smtp


@pytest.fixture(scope="session")
def smtp_server() -> Iterator[SmtpServer]:
    with running_smtp() as server:
        yield server


@pytest.fixture
def mailbox(smtp_server: SmtpServer) -> Mailbox:
    smtp_server.mailbox.clear()
    return smtp_server.mailbox


@pytest.fixture
async def live(tmp_path: Path, smtp_server: SmtpServer, mailbox: Mailbox) -> AsyncIterator[Live]:
    settings = make_settings(
        tmp_path, smtp_url=smtp_server.url, mail_retry_seconds=0.05, forgot_answer_seconds=0.01
    )
    async with running_server(settings) as server:
        yield server
