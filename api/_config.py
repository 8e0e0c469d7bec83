"""Configuration: environment variables (prefix SWITCHBOARD_) and CLI flags, with safe defaults."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

# Demo secrets let `make run` work with no set-up; production mode refuses them.
DEMO_JWT_SECRET = "switchboard-demo-secret-do-not-use-in-production"
DEMO_CUSTOMER_JWT_SECRET = "switchboard-demo-customer-secret-not-for-production"
MIN_SECRET_BYTES = 32


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
    token_ttl_seconds: int = Field(default=24 * 3600, ge=60)
    grace_period_seconds: float = Field(default=15.0, ge=0)
    max_body_bytes: int = Field(default=64 * 1024, ge=1024)
    login_max_failures: int = Field(default=5, ge=1)
    login_window_seconds: int = Field(default=15 * 60, ge=1)
    allowed_origins: list[str] = Field(default_factory=list)
    # The console's pages (/console, /console/agent; /console/customer in development only).
    console: bool = True
    # The websocket's limits (README, "Websocket protocol").
    ws_max_frame_bytes: int = Field(default=64 * 1024, ge=1024)
    ws_max_frames_per_second: float = Field(default=20.0, gt=0)
    ws_frame_burst: int = Field(default=40, ge=1)
    ws_outbox_frames: int = Field(default=256, ge=1)
    ws_ping_interval_seconds: float = Field(default=20.0, gt=0)

    @property
    def store_url(self) -> str:
        if self.store:
            return self.store
        return f"sqlite:///{(self.data_dir / 'switchboard.db').resolve()}"

    @property
    def production(self) -> bool:
        return self.mode == "production"

    def check(self) -> None:
        """Refuse, loudly, a configuration that is unsafe for its mode."""
        if not self.production:
            return
        for name, value, demo in (
            ("SWITCHBOARD_JWT_SECRET", self.jwt_secret, DEMO_JWT_SECRET),
            ("SWITCHBOARD_CUSTOMER_JWT_SECRET", self.customer_jwt_secret, DEMO_CUSTOMER_JWT_SECRET),
        ):
            if value == demo:
                raise ConfigError(
                    f"{name} is the demo secret; production mode needs your own "
                    f"(e.g. `python -c 'import secrets; print(secrets.token_urlsafe(48))'`)"
                )
            if len(value.encode()) < MIN_SECRET_BYTES:
                raise ConfigError(
                    f"{name} is {len(value.encode())} bytes; production mode needs at least "
                    f"{MIN_SECRET_BYTES}"
                )
        if self.jwt_secret == self.customer_jwt_secret:
            raise ConfigError(
                "SWITCHBOARD_JWT_SECRET and SWITCHBOARD_CUSTOMER_JWT_SECRET must differ, or a shop "
                "token could pass as a staff token"
            )
