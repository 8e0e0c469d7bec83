"""One-time codes: six digits from `secrets`, stored only as a keyed digest.

The digest is an HMAC under a key derived from the server's JWT secret, so the store alone (a
backup, a copied database) does not give the codes away: a million candidates are nothing to
hash, but not without the key. The purpose and the user are in the digest too, so a code is
good for one account and one purpose only.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import datetime, timedelta

from api._config import Settings
from store import CodePurpose, OneTimeCode, utcnow

DIGITS = 6
CODE_PATTERN = rf"^[0-9]{{{DIGITS}}}$"


class Codes:
    def __init__(self, settings: Settings) -> None:
        self._key = hmac.digest(
            settings.jwt_secret.encode(), b"switchboard one-time codes", hashlib.sha256
        )
        self._ttl = timedelta(seconds=settings.code_ttl_seconds)

    def digest(self, user_id: str, purpose: CodePurpose, code: str) -> str:
        message = f"{purpose.value}:{user_id}:{code}".encode()
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()

    def new(self, user_id: str, purpose: CodePurpose) -> tuple[str, OneTimeCode]:
        """A fresh code and what the store keeps of it."""
        code = f"{secrets.randbelow(10**DIGITS):0{DIGITS}d}"
        expires_at: datetime = utcnow() + self._ttl
        return code, OneTimeCode(user_id, purpose, self.digest(user_id, purpose, code), expires_at)
