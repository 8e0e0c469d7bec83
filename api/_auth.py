"""Passwords, access tokens, shop (customer) tokens and the role guard of every route."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import trio
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from api._config import Settings
from store import Role, Store, User, new_id, utcnow

ALGORITHM = "HS256"  # one fixed algorithm: the token header never chooses it
ACCESS_TYP = "access"
CUSTOMER_TYP = "customer"
LEEWAY_SECONDS = 10
MAX_TOKEN_BYTES = 4096
GENERATION_CLAIM = "gen"


class Passwords:
    """argon2id hashing in a worker thread, so the event loop never stalls on it."""

    def __init__(self) -> None:
        self._hasher = PasswordHasher()
        # Verifying against this when the email is unknown makes both failures cost the same.
        self._decoy = self._hasher.hash(uuid.uuid4().hex)

    async def hash(self, password: str) -> str:
        return await trio.to_thread.run_sync(self._hasher.hash, password)

    async def verify(self, password_hash: str | None, password: str) -> bool:
        def check() -> bool:
            try:
                return self._hasher.verify(password_hash or self._decoy, password) and (
                    password_hash is not None
                )
            except (VerificationError, InvalidHashError):
                return False

        return await trio.to_thread.run_sync(check)


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the current user record (role read from the store, not the token)."""

    user: User
    jti: str | None
    expires_at: datetime

    @property
    def role(self) -> Role:
        return self.user.role


class Unauthenticated(Exception):
    """The credentials cannot be accepted; the message says why (safe to show)."""


class Tokens:
    def __init__(self, settings: Settings, store: Store) -> None:
        self._settings = settings
        self._store = store

    def issue(self, user: User) -> str:
        now = datetime.now(UTC)
        claims = {
            "sub": user.id,
            # The original backend's claim: its admin panel reads the user's id from `id`.
            "id": user.id,
            "role": user.role.value,
            "typ": ACCESS_TYP,
            "iat": now,
            "exp": now + timedelta(seconds=self._settings.token_ttl_seconds),
            "jti": uuid.uuid4().hex,
            # A password reset or change moves the user's generation on: older tokens stop.
            GENERATION_CLAIM: user.token_generation,
        }
        return jwt.encode(claims, self._settings.jwt_secret, algorithm=ALGORITHM)

    def mint_customer(self, external_id: str, name: str | None = None) -> str:
        """A shop token as the shop's own system would sign it (demos and tests)."""
        now = datetime.now(UTC)
        claims: dict[str, Any] = {
            "sub": external_id,
            "typ": CUSTOMER_TYP,
            "iat": now,
            "exp": now + timedelta(seconds=self._settings.token_ttl_seconds),
        }
        if name:
            claims["name"] = name
        return jwt.encode(claims, self._settings.customer_jwt_secret, algorithm=ALGORITHM)

    async def authenticate(self, token: str) -> Principal:
        if len(token) > MAX_TOKEN_BYTES:
            raise Unauthenticated("token too large")
        try:
            claims = self._decode(
                token, self._settings.jwt_secret, ["exp", "iat", "sub", "typ", "jti"]
            )
        except jwt.InvalidSignatureError:
            return await self._customer(token)
        except jwt.ExpiredSignatureError as error:
            raise Unauthenticated("token expired; sign in again") from error
        except jwt.InvalidTokenError as error:
            raise Unauthenticated(f"invalid token: {error}") from error
        if claims["typ"] != ACCESS_TYP:
            raise Unauthenticated("invalid token: wrong token type")
        if await self._store.is_token_revoked(claims["jti"]):
            raise Unauthenticated("token revoked; sign in again")
        user = await self._store.get_user(str(claims["sub"]))
        if user is None or user.role is Role.CUSTOMER:
            raise Unauthenticated("the account of this token no longer exists")
        if claims.get(GENERATION_CLAIM, 0) != user.token_generation:
            raise Unauthenticated(
                "the password was changed since this token was issued; sign in again"
            )
        return Principal(user, claims["jti"], datetime.fromtimestamp(claims["exp"], UTC))

    async def revoke(self, principal: Principal) -> None:
        if principal.jti is not None:
            await self._store.revoke_token(principal.jti, principal.expires_at)

    async def _customer(self, token: str) -> Principal:
        try:
            claims = self._decode(token, self._settings.customer_jwt_secret, ["exp", "iat", "sub"])
        except jwt.ExpiredSignatureError as error:
            raise Unauthenticated("token expired; sign in again") from error
        except jwt.InvalidTokenError as error:
            raise Unauthenticated(f"invalid token: {error}") from error
        if claims.get("typ", CUSTOMER_TYP) != CUSTOMER_TYP:
            raise Unauthenticated("invalid token: wrong token type")
        jti = claims.get("jti")
        if isinstance(jti, str) and await self._store.is_token_revoked(jti):
            raise Unauthenticated("token revoked; sign in again")
        external_id = str(claims["sub"])
        if not external_id or len(external_id) > 200:
            raise Unauthenticated("invalid token: bad subject")
        customer = await self._customer_record(external_id, claims.get("name"))
        return Principal(
            customer,
            jti if isinstance(jti, str) else None,
            datetime.fromtimestamp(claims["exp"], UTC),
        )

    async def _customer_record(self, external_id: str, name: object) -> User:
        existing = await self._store.get_customer_by_external_id(external_id)
        if existing is not None:
            return existing
        now = utcnow()
        customer = User(
            id=new_id(),
            # Customers live outside the staff email namespace: the shop owns their identity.
            email=f"{new_id()}@customers.switchboard.invalid",
            name=name if isinstance(name, str) and name else f"Customer {external_id}",
            role=Role.CUSTOMER,
            external_id=external_id,
            created_at=now,
            updated_at=now,
        )
        try:
            return await self._store.create_user(customer)
        except Exception:
            # Two first requests raced: the other one created it.
            existing = await self._store.get_customer_by_external_id(external_id)
            if existing is None:
                raise
            return existing

    @staticmethod
    def _decode(token: str, secret: str, required: list[str]) -> dict[str, Any]:
        claims: dict[str, Any] = jwt.decode(
            token,
            secret,
            algorithms=[ALGORITHM],
            options={"require": required},
            leeway=LEEWAY_SECONDS,
        )
        return claims
