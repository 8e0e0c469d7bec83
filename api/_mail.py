"""Mail: the templates, and the outbox's sender.

Nothing sends mail during a request. A request writes the mail to the store's outbox (a code
and its mail in one step), and one sender task hands the outbox to the SMTP server: oldest
first, marking each sent only after the server's 250, retrying what failed with a growing delay.
A crash or an SMTP outage therefore loses nothing, and a mail is sent again only if the process
died between the server's 250 and the store's note of it (the Message-ID, made from the mail's
id, is the same both times, so a receiving system can tell).

Every node of a cluster runs a sender on the one outbox. A sender claims each due mail in the
store before sending it (`claim_mail` moves its next attempt past the longest a delivery can
take), so two senders that read the same due mail do not both send it; one that dies holding a
claim leaves the mail to whichever sender finds it due when the claim runs out.

With no SMTP server configured (development), mail stays in the outbox: `GET /dev/mail` shows
it, and the server log says where each went, without its contents (a code is never logged).
"""

from __future__ import annotations

import html
import logging
import math
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime, parseaddr

import trio

from api._config import Settings
from api._smtp import SmtpRefused, SmtpTarget, deliver
from store import CodePurpose, EdgeStore, Mail, OneTimeCode, StoreError, User, new_id, utcnow

log = logging.getLogger("api.mail")

GIVEN_UP = datetime(9999, 12, 31, tzinfo=UTC)
"""The next attempt of a mail the server refused for good: never."""

_BATCH = 20

_CLAIM_TIMEOUTS = 10
"""A claim lasts this many SMTP timeouts: smtplib waits up to one per step of a delivery
(connect, EHLO, STARTTLS, EHLO, AUTH, MAIL, RCPT, DATA, the data), so no delivery outlives it."""

_CODE_WHAT = {
    CodePurpose.VERIFY_EMAIL: ("verify your email address", "Verify your email address"),
    CodePurpose.RESET_PASSWORD: ("reset your password", "Reset your password"),
}
_CODE_WHY = {
    CodePurpose.VERIFY_EMAIL: "You (or someone signed in as you) asked to verify this address.",
    CodePurpose.RESET_PASSWORD: (
        "Someone asked to reset the password of the Switchboard account with this address."
        " If it was not you, ignore this mail: your password stays as it is."
    ),
}


def _mail(recipient: str, subject: str, text: str, body_html: str, **fields: object) -> Mail:
    now = utcnow()
    return Mail(
        id=new_id(),
        recipient=recipient,
        subject=subject,
        text=text,
        html=body_html,
        created_at=now,
        next_attempt_at=now,
        **fields,  # type: ignore[arg-type]
    )


def _page(title: str, paragraphs: list[str]) -> str:
    body = "".join(f"<p>{p}</p>" for p in paragraphs)
    return (
        f'<!doctype html><html><body><h1 style="font-size:1.2em">{title}</h1>{body}</body></html>'
    )


def code_mail(user: User, purpose: CodePurpose, code: str, expires_at: datetime) -> Mail:
    """The code and its expiry on the first line, then why it came."""
    what, title = _CODE_WHAT[purpose]
    until = expires_at.astimezone(UTC).strftime("%H:%M UTC on %d %b %Y")
    first = f"{code} is your Switchboard code to {what}; it expires at {until}."
    why = _CODE_WHY[purpose]
    text = (
        f"{first}\n\n{why}\nThe code works once. Never share it: Switchboard never asks for it.\n"
    )
    body = _page(
        html.escape(title),
        [
            f'<b style="font-size:1.4em;letter-spacing:0.2em">{code}</b> is your code to'
            f" {html.escape(what)}; it expires at {html.escape(until)}.",
            html.escape(why),
            "The code works once. Never share it: Switchboard never asks for it.",
        ],
    )
    return _mail(user.email, f"{code} is your code to {what}", text, body)


def report_mail(support: str, reporter: User, contact: str, subject: str, message: str) -> Mail:
    """A report to the support team; answering it reaches `contact` (Reply-To)."""
    who = f"{reporter.name} <{reporter.email}> ({reporter.role.value}, id {reporter.id})"
    text = f"Report: {subject}\nFrom: {who}\nReply to: {contact}\n\n{message}\n"
    paragraphs = [
        f"From {html.escape(who)}; reply to {html.escape(contact)}",
        html.escape(message).replace("\n", "<br>"),
    ]
    return _mail(
        support,
        f"[Report] {subject}",
        text,
        _page(f"Report: {html.escape(subject)}", paragraphs),
        reply_to=contact,
    )


def as_message(mail: Mail, sender: str) -> EmailMessage:
    """The outbox record as an RFC 5322 message: plain text with an HTML alternative."""
    message = EmailMessage()
    message["From"] = sender
    message["To"] = mail.recipient
    if mail.reply_to:
        message["Reply-To"] = mail.reply_to
    message["Subject"] = mail.subject
    message["Date"] = format_datetime(mail.created_at)
    # Stable across attempts: a resend after a crash carries the same id.
    domain = parseaddr(sender)[1].rpartition("@")[2] or "switchboard.invalid"
    message["Message-ID"] = f"<{mail.id}@{domain}>"
    message.set_content(mail.text)
    message.add_alternative(mail.html, subtype="html")
    return message


def backoff(settings: Settings, attempts: int) -> float:
    """Seconds before attempt `attempts + 1`: doubling from the base, capped."""
    base, cap = settings.mail_retry_seconds, settings.mail_retry_max_seconds
    return min(cap, base * math.pow(2, min(attempts, 40)))


class Outbox:
    """Mail waiting for the SMTP server, and the one task that sends it."""

    def __init__(self, store: EdgeStore, settings: Settings) -> None:
        self._store = store
        self._settings = settings
        self._target: SmtpTarget | None = settings.smtp
        self._wake = trio.Event()
        self.attempts = 0
        """Delivery attempts finished (sent, refused or failed) since start."""
        self._attempted = trio.Event()

    @property
    def delivers(self) -> bool:
        """Whether mail leaves this server (an SMTP server is configured)."""
        return self._target is not None

    async def attempted(self, beyond: int) -> int:
        """Wait until more than `beyond` delivery attempts have finished; their count."""
        while self.attempts <= beyond:
            await self._attempted.wait()
        return self.attempts

    async def issue_code(self, code: OneTimeCode, mail: Mail) -> None:
        await self._store.issue_code(code, mail)
        self._queued(mail)

    async def queue(self, mail: Mail) -> None:
        await self._store.queue_mail(mail)
        self._queued(mail)

    def _queued(self, mail: Mail) -> None:
        if self._target is None:
            log.warning(
                "no SMTP server configured: mail %s to %s kept in the outbox (GET /dev/mail)",
                mail.id,
                mail.recipient,
            )
        self._wake.set()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Send what is due, then sleep until the next retry or new mail; until cancelled."""
        task_status.started()
        if self._target is None:
            return
        failures = 0
        while True:
            # A fresh event before looking: mail queued from here on wakes the next sleep.
            self._wake = trio.Event()
            try:
                due = await self._store.due_mail(utcnow(), limit=_BATCH)
                for mail in due:
                    await self._claimed_send(self._target, mail)
                if len(due) == _BATCH:
                    continue
                horizon = utcnow() + timedelta(seconds=self._settings.mail_retry_max_seconds)
                upcoming = await self._store.due_mail(horizon, limit=1)
                failures = 0
            except StoreError as error:
                # The store is away: try again later; nothing is lost, it is all still there.
                failures += 1
                log.warning("the outbox cannot be read: %s", error)
                await trio.sleep(backoff(self._settings, failures))
                continue
            except Exception:
                # A bug: said loudly, and retried later; the server goes on serving.
                failures += 1
                log.exception("the mail sender failed; it starts again shortly")
                await trio.sleep(backoff(self._settings, failures))
                continue
            wait = self._settings.mail_retry_max_seconds
            if upcoming:
                wait = (upcoming[0].next_attempt_at - utcnow()).total_seconds()
            with trio.move_on_after(max(0.0, wait)):
                await self._wake.wait()

    async def _claimed_send(self, target: SmtpTarget, mail: Mail) -> None:
        """Send `mail` unless another sender claimed it since it was read as due."""
        until = utcnow() + timedelta(seconds=_CLAIM_TIMEOUTS * target.timeout)
        if await self._store.claim_mail(mail.id, mail.next_attempt_at, until):
            await self._send(target, mail)

    async def _send(self, target: SmtpTarget, mail: Mail) -> None:
        try:
            await self._attempt(target, mail)
        finally:
            self.attempts += 1
            self._attempted.set()
            self._attempted = trio.Event()

    async def _attempt(self, target: SmtpTarget, mail: Mail) -> None:
        message = as_message(mail, self._settings.mail_from)
        try:
            await trio.to_thread.run_sync(deliver, target, message)
        except SmtpRefused as error:
            log.error(
                "%s refused mail %s to %s for good: %s",
                target.describe(),
                mail.id,
                mail.recipient,
                error,
            )
            await self._store.mail_failed(mail.id, str(error)[:500], GIVEN_UP)
            return
        except Exception as error:  # an outage, a timeout, a 4xx: all worth another attempt
            delay = backoff(self._settings, mail.attempts)
            log.warning(
                "mail %s to %s not sent (attempt %d, next in %.0f s): %s",
                mail.id,
                mail.recipient,
                mail.attempts + 1,
                delay,
                error,
            )
            await self._store.mail_failed(
                mail.id,
                f"{type(error).__name__}: {error}"[:500],
                utcnow() + timedelta(seconds=delay),
            )
            return
        await self._store.mail_sent(mail.id, utcnow())
