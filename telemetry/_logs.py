"""Structured logs on the standard library's `logging`: one line per record, text or JSON.

A structured record is made with `event(logger, "http.request", method=..., status=...)`: its
message is the event's name and its fields ride on the record as `fields`. Records made the
usual way (`log.warning("... %s", x)`) come out too, with their message as it was.

Nothing secret is written: fields named like a secret are replaced whatever their value, and
anything shaped like a bearer token or a JWT is cut out of messages, field values and
tracebacks alike. That is the safety net; the call sites' rule is to never pass a token, a
password, a one-time code or a message's content in the first place.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from functools import cache
from typing import Any, Literal, TextIO

LogFormat = Literal["text", "json"]
LogLevel = Literal["debug", "info", "warning", "error"]

FIELDS = "fields"
"""The attribute of a log record that holds a structured event's fields."""

# Our own loggers follow SWITCHBOARD_LOG_LEVEL; everybody else's stay at warning, so a debug
# level shows Switchboard's detail without every library's.
OWN_LOGGERS = (
    "router",
    "actors",
    "store",
    "bus",
    "cluster",
    "api",
    "tools",
    "telemetry",
    "hypercorn.error",
)

REDACTED = "[redacted]"
_SECRET_WORDS = ("password", "token", "secret", "otp", "authorization", "cookie")
_SECRET_NAMES = frozenset({"content", "body"})
_SECRET_VALUE = re.compile(
    # A JWT (three base64url parts, the first one a JSON header), or what follows "Bearer ".
    r"eyJ[\w-]{4,}\.[\w-]{4,}\.[\w-]*|(?i:bearer)\s+[\w.~+/=-]{8,}"
)


@cache  # field names are few: decided once each
def secret_field(name: str) -> bool:
    lowered = name.lower()
    return lowered in _SECRET_NAMES or any(word in lowered for word in _SECRET_WORDS)


# The password of a URL's user (mongodb://switchboard:PASSWORD@db.example.net/switchboard).
_URL_PASSWORD = re.compile(r"(://[^:/@\s]+):[^@/\s]+@")


def redact_url(url: str) -> str:
    """`url` fit for messages and logs: the user name kept, the password and options dropped
    (options may carry secrets too, e.g. MongoDB's authMechanismProperties). The store and the
    bus name their servers with it."""
    scheme, separator, rest = url.partition("://")
    authority, slash, path = rest.partition("/")
    userinfo, at, hosts = authority.rpartition("@")
    user = userinfo.partition(":")[0]
    shown = f"{user}@{hosts}" if at and user else hosts
    return f"{scheme}{separator}{shown}{slash}{path.partition('?')[0]}"


# Cheap to search for, and found in every text either pattern above could match.
_MAYBE_SECRET = re.compile(r"eyJ|(?i:bearer)|://")


def scrub(text: str) -> str:
    """The text with anything that looks like a token, and URLs' passwords, cut out."""
    if _MAYBE_SECRET.search(text) is None:
        return text
    return _URL_PASSWORD.sub(rf"\1:{REDACTED}@", _SECRET_VALUE.sub(REDACTED, text))


def _clean(name: str, value: object) -> object:
    if secret_field(name):
        return REDACTED
    if isinstance(value, str):
        return scrub(value)
    if value is None or isinstance(value, bool | int | float):
        return value
    return scrub(str(value))


def event(
    logger: logging.Logger, name: str, /, *, level: int = logging.INFO, **fields: Any
) -> None:
    """Log the event `name` with its fields (skipped cheaply when the level is off)."""
    if logger.isEnabledFor(level):
        logger.log(level, name, extra={FIELDS: fields}, stacklevel=2)


def fields_of(record: logging.LogRecord) -> dict[str, object]:
    """The record's fields, secrets replaced."""
    raw: Mapping[str, object] = getattr(record, FIELDS, None) or {}
    return {name: _clean(name, value) for name, value in raw.items()}


def _timestamp(record: logging.LogRecord) -> str:
    moment = datetime.fromtimestamp(record.created, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


_NEEDS_QUOTES = re.compile(r'[\s"=]')


def _text_value(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:.3f}".rstrip("0").rstrip(".") if value else "0"
    text = str(value)
    if not text or _NEEDS_QUOTES.search(text):
        return json.dumps(text, ensure_ascii=False)
    return text


class TextFormatter(logging.Formatter):
    """`2026-05-01T12:00:00.123Z INFO  api.http http.request method=GET status=200 ...`"""

    def format(self, record: logging.LogRecord) -> str:
        message = scrub(record.getMessage())
        parts = [_timestamp(record), f"{record.levelname:<5}", record.name, message]
        parts += [f"{name}={_text_value(value)}" for name, value in fields_of(record).items()]
        line = " ".join(parts)
        if record.exc_info:
            line += "\n" + scrub(self.formatException(record.exc_info))
        return line


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, event or message, the fields, the error."""

    def format(self, record: logging.LogRecord) -> str:
        document: dict[str, object] = {
            "time": _timestamp(record),
            "level": record.levelname.lower(),
            "logger": record.name,
        }
        message = scrub(record.getMessage())
        if hasattr(record, FIELDS):
            document["event"] = message
            document.update(fields_of(record))
        else:
            document["message"] = message
        if record.exc_info:
            document["error"] = scrub(self.formatException(record.exc_info))
        return json.dumps(document, ensure_ascii=False, default=str)


class _OwnHandler(logging.StreamHandler[TextIO]):
    """The handler `configure_logging` installs, so a second call replaces it."""


def configure_logging(
    level: LogLevel = "info", log_format: LogFormat = "text", stream: TextIO | None = None
) -> logging.Handler:
    """Send every record to `stream` (stderr), one line each, in the chosen format; returns
    the handler (it replaces the one a previous call installed)."""
    handler = _OwnHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _OwnHandler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.WARNING)
    for name in OWN_LOGGERS:
        logging.getLogger(name).setLevel(level.upper())
    return handler
