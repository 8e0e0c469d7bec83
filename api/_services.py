"""What the handlers reach: the store, the actor system, tokens, passwords, settings."""

from __future__ import annotations

from dataclasses import dataclass

from quart import current_app

from actors import System
from api._auth import Passwords, Tokens
from api._blobs import BlobStore
from api._code_throttle import CodeThrottle
from api._codes import Codes
from api._config import Settings
from api._mail import Outbox
from api._rates import Throttles
from api._signin_throttle import SignInThrottle
from store import EdgeStore


@dataclass(frozen=True, slots=True)
class Services:
    settings: Settings
    store: EdgeStore
    system: System
    tokens: Tokens
    passwords: Passwords
    outbox: Outbox
    codes: Codes
    throttles: Throttles
    signins: SignInThrottle
    code_throttle: CodeThrottle  # code requests, code tries, reports
    blobs: BlobStore


EXTENSION_KEY = "switchboard"


def services() -> Services:
    found: Services = current_app.extensions[EXTENSION_KEY]
    return found
