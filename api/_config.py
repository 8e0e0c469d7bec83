"""Configuration: environment variables (prefix SWITCHBOARD_) and CLI flags, with safe defaults."""

from __future__ import annotations

import difflib
import ipaddress
import json
import math
import os
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict, SettingsError

from api._smtp import SmtpConfigError, SmtpTarget, smtp_target
from bus import BusError, check_bus_url
from telemetry import LogFormat, LogLevel

# Demo secrets let `make run` work with no set-up; production mode refuses them.
DEMO_JWT_SECRET = "switchboard-demo-secret-do-not-use-in-production"
DEMO_CUSTOMER_JWT_SECRET = "switchboard-demo-customer-secret-not-for-production"
MIN_SECRET_BYTES = 32
# A secret's strength estimated from its own characters (Shannon entropy per character times its
# length): 32 x "a" has 0 bits, "abab..." 1 bit a character; 32 random URL-safe characters about
# 150, 32 hex digits about 115.
MIN_SECRET_BITS = 96
MAKE_A_SECRET = "python -c 'import secrets; print(secrets.token_urlsafe(48))'"
# Where mail comes from and where reports go when nobody said: fine for `make run`, which keeps
# mail in the outbox; production with SMTP needs real ones.
DEMO_MAIL_FROM = "Switchboard <no-reply@switchboard.example>"
DEMO_SUPPORT_EMAIL = "support@switchboard.example"


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


class ConfigError(Exception):
    """The configuration cannot be used; the message says what to change."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SWITCHBOARD_", extra="ignore")

    mode: Literal["development", "production"] = "development"
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    data_dir: Path = Path("data")
    store: str | None = Field(default=None, description="store URL; default sqlite under data_dir")
    jwt_secret: str = DEMO_JWT_SECRET
    customer_jwt_secret: str = DEMO_CUSTOMER_JWT_SECRET
    # A shop token living longer is refused; one without exp lasts this long from its iat.
    customer_token_max_lifetime_seconds: int = Field(default=7 * 24 * 3600, ge=60)
    # The other mode, for shops that cannot share a secret: the shop's profile endpoint says
    # whose a customer token is (api/_shop_profile.py); the customer secret is then unused.
    customer_profile_url: str | None = Field(default=None, pattern=r"^https?://[^\s/?#]+\S*$")
    customer_profile_timeout_seconds: float = Field(default=3.0, gt=0, le=10)
    customer_profile_cache_seconds: float = Field(default=30.0, ge=0, le=3600)
    token_ttl_seconds: int = Field(default=24 * 3600, ge=60)
    grace_period_seconds: float = Field(default=15.0, ge=0)
    max_body_bytes: int = Field(default=64 * 1024, ge=1024)
    # Password hashing (argon2id: a core and 64 MiB each): at most this many at once, default
    # the cores this process may use; a caller waits this long for a turn, then gets 503 busy.
    password_hash_concurrency: int = Field(default_factory=lambda: _cores(), ge=1)
    password_queue_seconds: float = Field(default=5.0, gt=0)
    # Registrations per client address: a burst of this many, refilled over the window.
    register_per_address: int = Field(default=10, ge=1)
    register_window_seconds: int = Field(default=3600, ge=1)
    # Sign-in throttling (README, "Sign-in throttling").
    login_free_failures: int = Field(default=3, ge=1)
    login_client_free_failures: int = Field(default=10, ge=1)
    login_account_free_failures: int = Field(default=20, ge=1)
    login_delay_seconds: float = Field(default=1.0, gt=0)
    login_max_delay_seconds: float = Field(default=15 * 60, gt=0)
    login_window_seconds: int = Field(default=3600, ge=1)
    # Addresses and networks whose X-Forwarded-For is believed (README, "Behind a reverse proxy").
    trusted_proxies: Annotated[list[str], NoDecode] = Field(default_factory=list)
    allowed_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # The console's pages (/console, /console/agent; /console/customer in development only).
    console: bool = True
    # The websocket's limits (README, "Websocket protocol").
    ws_max_frame_bytes: int = Field(default=64 * 1024, ge=1024)
    ws_max_frames_per_second: float = Field(default=20.0, gt=0)
    ws_frame_burst: int = Field(default=40, ge=1)
    ws_outbox_frames: int = Field(default=256, ge=1)
    ws_ping_interval_seconds: float = Field(default=20.0, gt=0)
    # A peer that answers no ping, or reads nothing, for this long is cut.
    ws_ping_timeout_seconds: float = Field(default=20.0, gt=0)
    # A close the server starts: how long the peer has to answer it before the cut.
    ws_close_timeout_seconds: float = Field(default=5.0, gt=0)
    # A Socket.IO session must complete an authenticated CONNECT this soon after its handshake;
    # one client address may have this many sessions still waiting for theirs.
    socketio_connect_seconds: float = Field(default=10.0, gt=0)
    socketio_pending_per_address: int = Field(default=20, ge=1)
    # Live connections (/ws and Socket.IO together) per user; a new one beyond is refused.
    max_connections_per_staff: int = Field(default=10, ge=1)
    max_connections_per_customer: int = Field(default=5, ge=1)
    # An HTTP connection with no request under way is closed after this long.
    http_keep_alive_seconds: float = Field(default=5.0, gt=0)
    # On SIGTERM: how long in-flight requests and closing connections have before they are cut.
    stop_timeout_seconds: float = Field(default=10.0, gt=0)
    # Operations (README, "Running in production").
    log_level: LogLevel = "info"
    log_format: LogFormat = "text"
    metrics_token: str | None = Field(default=None, min_length=16)
    # Accounts by email (README, "Accounts and email").
    smtp_url: str | None = Field(default=None, description="smtp://user:pass@host:587 or smtps://")
    smtp_ca_file: Path | None = None
    smtp_timeout_seconds: float = Field(default=20.0, gt=0)
    mail_from: str = DEMO_MAIL_FROM
    support_email: str = DEMO_SUPPORT_EMAIL
    mail_retry_seconds: float = Field(default=5.0, gt=0)
    mail_retry_max_seconds: float = Field(default=3600.0, gt=0)
    code_ttl_seconds: int = Field(default=600, ge=60)
    code_max_wrong_tries: int = Field(default=5, ge=1)
    code_max_requests: int = Field(default=5, ge=1)
    code_window_seconds: int = Field(default=3600, ge=1)
    forgot_answer_seconds: float = Field(default=0.3, ge=0)
    # Cluster mode (README, "Running several nodes"): set the bus to turn it on.
    bus_url: str | None = Field(default=None, description="redis://, valkey:// or rediss://")
    node_id: str | None = Field(default=None, min_length=1, max_length=100, pattern=r"^[\w.-]+$")
    lease_seconds: float = Field(default=5.0, ge=0.5, le=300)
    # Uploaded profile images (README, "Uploads"); the directory defaults to data_dir/uploads.
    uploads_dir: Path | None = None
    max_image_bytes: int = Field(default=2 * 1024 * 1024, ge=1024, le=64 * 1024 * 1024)

    @field_validator("metrics_token", "bus_url", "node_id", "customer_profile_url", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        # `SWITCHBOARD_METRICS_TOKEN=` (as compose passes an unset variable) means no token.
        return None if value == "" else value

    @field_validator("trusted_proxies", "allowed_origins", mode="before")
    @classmethod
    def _list(cls, value: object) -> object:
        # A JSON list, or the entries separated by commas: an operator writes either.
        if not isinstance(value, str):
            return value
        if value.lstrip().startswith("["):
            try:
                return json.loads(value)
            except json.JSONDecodeError:
                raise ValueError(
                    "it must be a JSON list of strings or the entries separated by commas"
                ) from None
        return [part.strip() for part in value.split(",") if part.strip()]

    @field_validator("trusted_proxies")
    @classmethod
    def _addresses(cls, value: list[str]) -> list[str]:
        for entry in value:
            try:
                ipaddress.ip_network(entry, strict=False)
            except ValueError:
                raise ValueError(f"{entry!r} is not an IP address or network") from None
        return value

    @field_validator("log_level", "log_format", mode="before")
    @classmethod
    def _lower_case(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value

    @property
    def store_url(self) -> str:
        if self.store:
            return self.store
        # sqlite:// and an absolute path: sqlite:///var/lib/switchboard/switchboard.db
        return f"sqlite://{(self.data_dir / 'switchboard.db').resolve()}"

    @property
    def uploads_path(self) -> Path:
        return self.uploads_dir or self.data_dir / "uploads"

    @property
    def smtp(self) -> SmtpTarget | None:
        """Where mail goes; None when mail stays in the outbox (development without SMTP)."""
        return smtp_target(self.smtp_url, self.smtp_ca_file, self.smtp_timeout_seconds)

    @property
    def production(self) -> bool:
        return self.mode == "production"

    def check(self) -> None:
        """Refuse, loudly, a configuration that is unsafe for its mode."""
        self._check_mail()
        self._check_cluster()
        if not self.production:
            return
        secrets = {"SWITCHBOARD_JWT_SECRET": self.jwt_secret}
        if self.customer_profile_url is None:
            secrets["SWITCHBOARD_CUSTOMER_JWT_SECRET"] = self.customer_jwt_secret
        elif not self.customer_profile_url.startswith("https://"):
            raise ConfigError(
                "SWITCHBOARD_CUSTOMER_PROFILE_URL must be https:// in production: customer "
                "tokens are sent to it"
            )
        if self.metrics_token is not None:
            secrets["SWITCHBOARD_METRICS_TOKEN"] = self.metrics_token
        for name, value in secrets.items():
            _check_secret(name, value)
        if self.customer_profile_url is not None:
            return
        if self.jwt_secret.strip() == self.customer_jwt_secret.strip():
            raise ConfigError(
                "SWITCHBOARD_JWT_SECRET and SWITCHBOARD_CUSTOMER_JWT_SECRET must differ, or a shop "
                "token could pass as a staff token"
            )

    def _check_cluster(self) -> None:
        if self.bus_url is None:
            return
        try:
            check_bus_url(self.bus_url)
        except BusError as error:
            raise ConfigError(f"SWITCHBOARD_BUS_URL: {error}") from error
        if not self.store_url.startswith(("mongodb://", "mongodb+srv://")):
            raise ConfigError(
                "cluster mode (SWITCHBOARD_BUS_URL) needs the nodes to share a MongoDB store: "
                f"set SWITCHBOARD_STORE=mongodb://..., not {self.store_url.partition(':')[0]}"
            )

    def _check_mail(self) -> None:
        try:
            _ = self.smtp
        except SmtpConfigError as error:
            raise ConfigError(str(error)) from error
        if self.production and self.smtp_url:
            for name, value, demo in (
                ("SWITCHBOARD_MAIL_FROM", self.mail_from, DEMO_MAIL_FROM),
                ("SWITCHBOARD_SUPPORT_EMAIL", self.support_email, DEMO_SUPPORT_EMAIL),
            ):
                if value == demo:
                    raise ConfigError(
                        f"{name} is the demo address {demo!r}; production mail needs yours"
                    )


def secret_bits(value: str) -> float:
    """An estimate of a secret's strength in bits: its characters' Shannon entropy (from their
    frequencies in the value) times its length. It sees repetition and a small alphabet, not
    words or sequences, so it refuses the weakest values, never proves a strong one."""
    return -sum(count * math.log2(count / len(value)) for count in Counter(value).values())


def _check_secret(name: str, value: str) -> None:
    """Production refuses the demo secret (also with whitespace around it), a short one and a
    repetitive one, saying how to make a good one."""
    value = value.strip()
    if value in (DEMO_JWT_SECRET, DEMO_CUSTOMER_JWT_SECRET):
        problem = "is a demo secret"
    elif len(value.encode()) < MIN_SECRET_BYTES:
        problem = (
            f"is {len(value.encode())} bytes; production mode needs at least {MIN_SECRET_BYTES}"
        )
    elif secret_bits(value) < MIN_SECRET_BITS:
        problem = (
            f"is too predictable (about {secret_bits(value):.0f} bits from its characters; "
            f"production mode needs {MIN_SECRET_BITS})"
        )
    else:
        return
    raise ConfigError(f"{name} {problem}; make one with `{MAKE_A_SECRET}`")


ENV_PREFIX = "SWITCHBOARD_"

# A valid value of each setting, for the error that refuses an invalid one.
EXAMPLES: Mapping[str, str] = {
    "mode": "production",
    "host": "0.0.0.0",
    "port": "8080",
    "data_dir": "/var/lib/switchboard",
    "store": "sqlite:///var/lib/switchboard/switchboard.db",
    "jwt_secret": "<48 random characters>",
    "customer_jwt_secret": "<48 random characters>",
    "customer_token_max_lifetime_seconds": "604800",
    "customer_profile_url": "https://shop.example.com/api/profile",
    "customer_profile_timeout_seconds": "3",
    "customer_profile_cache_seconds": "30",
    "token_ttl_seconds": "86400",
    "grace_period_seconds": "15",
    "max_body_bytes": "65536",
    "password_hash_concurrency": "2",
    "password_queue_seconds": "5",
    "register_per_address": "10",
    "register_window_seconds": "3600",
    "login_free_failures": "3",
    "login_client_free_failures": "10",
    "login_account_free_failures": "20",
    "login_delay_seconds": "1",
    "login_max_delay_seconds": "900",
    "login_window_seconds": "3600",
    "trusted_proxies": "10.0.0.7,10.1.0.0/16",
    "allowed_origins": "'[\"https://shop.example.com\"]'",
    "ws_max_frame_bytes": "65536",
    "ws_max_frames_per_second": "20",
    "ws_frame_burst": "40",
    "ws_outbox_frames": "256",
    "ws_ping_interval_seconds": "20",
    "ws_ping_timeout_seconds": "20",
    "ws_close_timeout_seconds": "5",
    "socketio_connect_seconds": "10",
    "socketio_pending_per_address": "20",
    "max_connections_per_staff": "10",
    "max_connections_per_customer": "5",
    "http_keep_alive_seconds": "5",
    "stop_timeout_seconds": "10",
    "console": "false",
    "log_level": "info",
    "log_format": "json",
    "metrics_token": "<32 random characters>",
    "smtp_url": "smtp://switchboard:PASSWORD@mail.example.com:587",
    "smtp_ca_file": "/etc/ssl/certs/mail-ca.pem",
    "smtp_timeout_seconds": "20",
    "mail_from": "'Support <support@example.com>'",
    "support_email": "support@example.com",
    "mail_retry_seconds": "5",
    "mail_retry_max_seconds": "3600",
    "code_ttl_seconds": "600",
    "code_max_wrong_tries": "5",
    "code_max_requests": "5",
    "code_window_seconds": "3600",
    "forgot_answer_seconds": "0.3",
    "bus_url": "redis://valkey:6379/0",
    "node_id": "switchboard-1",
    "lease_seconds": "5",
    "uploads_dir": "/var/lib/switchboard/uploads",
    "max_image_bytes": "2097152",
}


def load_settings(overrides: Mapping[str, Any] = {}, flags: Mapping[str, str] = {}) -> Settings:
    """The environment's settings with `overrides` (from command-line flags) on top, checked for
    the mode. An invalid value is a `ConfigError` of one line naming the variable, or the flag
    it came from (`flags` maps fields to flags), with a valid example."""
    try:
        settings = Settings(**overrides)
    except ValidationError as error:
        problem = error.errors(include_url=False)[0]
        field = str(problem["loc"][0]) if problem["loc"] else ""
        # Neither a secret nor a list (whose JSON may be long) is echoed back.
        value = None if _secret(field) or field in _LISTS else str(problem.get("input"))
        reason = problem["msg"].removeprefix("Value error, ")
        raise ConfigError(_invalid(field, value, reason, overrides, flags)) from None
    except SettingsError as error:
        # A list or object variable that is not JSON (pydantic-settings parses them first).
        field = next((name for name in Settings.model_fields if f'"{name}"' in str(error)), "")
        raise ConfigError(_invalid(field, None, "it must be JSON", overrides, flags)) from None
    settings.check()
    return settings


def _invalid(
    field: str,
    value: str | None,
    problem: str,
    overrides: Mapping[str, Any],
    flags: Mapping[str, str],
) -> str:
    example = EXAMPLES.get(field, "")
    if field in overrides and field in flags:
        flag = flags[field]
        given = f"{flag} {value}" if value is not None else flag
        return f"{given} is not valid: {problem}; for example {flag} {example}"
    variable = ENV_PREFIX + field.upper()
    given = f"{variable}={value}" if value is not None else variable
    return f"{given} is not valid: {problem}; for example {variable}={example}"


_LISTS = frozenset({"trusted_proxies", "allowed_origins"})


def _secret(field: str) -> bool:
    return "secret" in field or "token" in field


def misspelt_variables(
    environ: Mapping[str, str], also_known: frozenset[str] = frozenset()
) -> list[str]:
    """A warning for each SWITCHBOARD_* variable that is no setting but close to one (a typo
    would otherwise leave the default in force without a word)."""
    settings = [ENV_PREFIX + name.upper() for name in Settings.model_fields]
    warnings = []
    for name in sorted(environ):
        if not name.startswith(ENV_PREFIX) or name in settings or name in also_known:
            continue
        close = difflib.get_close_matches(name, settings, n=1, cutoff=0.8)
        if close:
            warnings.append(f"{name} is not a setting; did you mean {close[0]}?")
    return warnings
