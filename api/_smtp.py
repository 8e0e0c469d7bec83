"""Handing one mail to an SMTP server: the URL's rules, TLS, and the blocking client.

`smtp://user:pass@host:587` upgrades with STARTTLS and refuses a server that does not offer it;
`smtps://host:465` speaks TLS from the first byte; `?tls=none` (smtp:// only) sends in the clear,
for a relay on the same machine or a test server. The server's certificate is checked against
the system's CAs, or the file `SWITCHBOARD_SMTP_CA_FILE` names.
"""

from __future__ import annotations

import smtplib
import ssl
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

_DEFAULT_PORTS = {"smtp": 587, "smtps": 465}
_TLS_MODES = ("starttls", "none")


class SmtpConfigError(Exception):
    """The SMTP URL cannot be used; the message says what to change."""


class SmtpRefused(Exception):
    """The server refused the mail for good (a 5xx answer): sending it again will not help."""


@dataclass(frozen=True, slots=True)
class SmtpTarget:
    host: str
    port: int
    implicit_tls: bool
    starttls: bool
    username: str | None
    password: str | None
    ca_file: Path | None
    timeout: float

    def describe(self) -> str:
        """For logs and errors: never the password."""
        scheme = "smtps" if self.implicit_tls else "smtp"
        user = f"{self.username}@" if self.username else ""
        return f"{scheme}://{user}{self.host}:{self.port}"


def smtp_target(url: str | None, ca_file: Path | None, timeout: float) -> SmtpTarget | None:
    if not url:
        return None
    parts = urlsplit(url)
    if parts.scheme not in _DEFAULT_PORTS:
        raise SmtpConfigError(
            "SWITCHBOARD_SMTP_URL must start with smtp:// (STARTTLS) or smtps:// (TLS), e.g."
            " smtp://user:password@mail.example.com:587"
        )
    if not parts.hostname:
        raise SmtpConfigError("SWITCHBOARD_SMTP_URL names no host, e.g. smtp://mail.example.com")
    try:
        port = parts.port or _DEFAULT_PORTS[parts.scheme]
    except ValueError as error:
        raise SmtpConfigError(f"SWITCHBOARD_SMTP_URL has a bad port: {error}") from None
    options = parse_qs(parts.query)
    unknown = set(options) - {"tls"}
    if unknown:
        raise SmtpConfigError(f"SWITCHBOARD_SMTP_URL: unknown option {sorted(unknown)[0]!r}")
    tls = options.get("tls", ["starttls"])[-1]
    if tls not in _TLS_MODES or (tls == "none" and parts.scheme == "smtps"):
        raise SmtpConfigError("SWITCHBOARD_SMTP_URL: tls= takes starttls or none (smtp:// only)")
    return SmtpTarget(
        host=parts.hostname,
        port=port,
        implicit_tls=parts.scheme == "smtps",
        starttls=parts.scheme == "smtp" and tls == "starttls",
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
        ca_file=ca_file,
        timeout=timeout,
    )


def _tls_context(target: SmtpTarget) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(target.ca_file) if target.ca_file else None)


def deliver(target: SmtpTarget, message: EmailMessage) -> None:
    """Send `message`; returns once the server accepted it (its 250 after the data).

    Blocking: run it in a worker thread. Raises SmtpRefused for a permanent refusal, and any
    other exception (OSError, smtplib.SMTPException) for what a later attempt may cure.
    """
    client: smtplib.SMTP
    if target.implicit_tls:
        client = smtplib.SMTP_SSL(
            target.host, target.port, timeout=target.timeout, context=_tls_context(target)
        )
    else:
        client = smtplib.SMTP(target.host, target.port, timeout=target.timeout)
    with client:
        client.ehlo()
        if target.starttls:
            if not client.has_extn("starttls"):
                raise smtplib.SMTPNotSupportedError(
                    f"{target.describe()} does not offer STARTTLS; use smtps:// or, for a relay"
                    " on this machine, ?tls=none"
                )
            client.starttls(context=_tls_context(target))
            client.ehlo()
        if target.username:
            client.login(target.username, target.password or "")
        try:
            client.send_message(message)
        except smtplib.SMTPRecipientsRefused as error:
            codes = [code for code, _ in error.recipients.values()]
            if all(500 <= code < 600 for code in codes):
                raise SmtpRefused(f"recipient refused: {error.recipients}") from error
            raise
        except smtplib.SMTPResponseException as error:
            if 500 <= error.smtp_code < 600:
                raise SmtpRefused(f"{error.smtp_code} {error.smtp_error!r}") from error
            raise
