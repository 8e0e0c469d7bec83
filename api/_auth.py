"""Passwords, access tokens, shop (customer) tokens and the role guard of every route."""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import jwt
import trio
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from api._config import Settings
from api._shop_profile import ShopProfiles, ShopRefused
from store import AccountStore, Role, User, new_id, utcnow

ALGORITHM = "HS256"  # one fixed algorithm: the token header never chooses it
ACCESS_TYP = "access"
CUSTOMER_TYP = "customer"
LEEWAY_SECONDS = 10
MAX_TOKEN_BYTES = 4096
GENERATION_CLAIM = "gen"
T = TypeVar("T")
MAX_CLAIM_CHARS = 200
# A shop id of this form (a MongoDB ObjectId, as the original shop's) is the customer's record id,
# so every shape shows the customer under the id the shop and its widget know. Others get an id
# of ours: record ids are 24 hex digits everywhere (routes, cursors, rooms).
_RECORD_ID = re.compile(r"[0-9a-f]{24}")


def customer_id(external_id: str) -> str:
    """The record id of a new customer the shop knows as `external_id`: that id itself when it
    is an ObjectId, else a new one of ours."""
    return external_id if _RECORD_ID.fullmatch(external_id) else new_id()


class Busy(Exception):
    """Every password hasher is taken and the caller waited its deadline: retry shortly."""


# Callers waiting for a hasher, per hasher, beyond which a new one is refused at once.
WAITING_PER_HASHER = 32


_decoys: dict[tuple[int, int, int], str] = {}


def _decoy(hasher: PasswordHasher) -> str:
    """A hash of nothing anyone knows, made with `hasher`'s costs once per process: each is a
    core for about 0.13 s, and every test server opened its own."""
    costs = (hasher.time_cost, hasher.memory_cost, hasher.parallelism)
    if costs not in _decoys:
        _decoys[costs] = hasher.hash(uuid.uuid4().hex)
    return _decoys[costs]


class Passwords:
    """argon2id hashing in worker threads, so the event loop never stalls on it, at most
    `concurrency` at a time: each costs a core and 64 MiB, and 40 at once took 1.3 GiB."""

    def __init__(self, *, concurrency: int = 1, queue_seconds: float = 5.0) -> None:
        self._hasher = PasswordHasher()
        self._hashers = trio.CapacityLimiter(concurrency)
        self._queue_seconds = queue_seconds
        # Verifying against this when the email is unknown makes both failures cost the same.
        self._decoy = _decoy(self._hasher)

    async def hash(self, password: str) -> str:
        return await self._run(self._hasher.hash, password)

    async def verify(self, password_hash: str | None, password: str) -> bool:
        def check() -> bool:
            try:
                return self._hasher.verify(password_hash or self._decoy, password) and (
                    password_hash is not None
                )
            except (VerificationError, InvalidHashError):
                return False

        return await self._run(check)

    async def _run(self, work: Callable[..., T], *args: object) -> T:
        waiting = self._hashers.statistics().tasks_waiting
        if waiting >= WAITING_PER_HASHER * self._hashers.total_tokens:
            raise Busy(f"{waiting} password checks are waiting")
        # The deadline is for the wait alone: work once started is finished.
        with trio.move_on_after(self._queue_seconds) as queued:
            await self._hashers.acquire()
        if queued.cancelled_caught:
            raise Busy(f"no password hasher was free within {self._queue_seconds} s")
        try:
            return await trio.to_thread.run_sync(work, *args)
        finally:
            self._hashers.release()


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


# What a shop's own token can be made of: visible ASCII, as an HTTP header carries it.
_HEADER_SAFE = re.compile(r"[\x21-\x7e]+")


class Tokens:
    def __init__(
        self, settings: Settings, store: AccountStore, profiles: ShopProfiles | None = None
    ) -> None:
        self._settings = settings
        self._store = store
        # Set (SWITCHBOARD_CUSTOMER_PROFILE_URL): the shop vouches for customer tokens instead of
        # the customer secret.
        self._profiles = profiles

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
        """A shop token as the shop's own system would sign it (demos and tests), with a `jti`
        so that signing out revokes exactly this token."""
        now = datetime.now(UTC)
        lifetime = min(
            self._settings.token_ttl_seconds, self._settings.customer_token_max_lifetime_seconds
        )
        claims: dict[str, Any] = {
            "sub": external_id,
            "typ": CUSTOMER_TYP,
            "iat": now,
            "exp": now + timedelta(seconds=lifetime),
            "jti": uuid.uuid4().hex,
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
        except jwt.DecodeError as error:
            if self._profiles is not None:  # not a JWT: the shop's own kind of token
                return await self._vouched(self._profiles, token)
            raise Unauthenticated(f"invalid token: {error}") from error
        except jwt.InvalidTokenError as error:
            raise Unauthenticated(f"invalid token: {error}") from error
        staff = _staff_claims(claims)
        if staff.typ != ACCESS_TYP:
            raise Unauthenticated("invalid token: wrong token type")
        if await self._store.is_token_revoked(staff.jti):
            raise Unauthenticated("token revoked; sign in again")
        user = await self._store.get_user(staff.sub)
        if user is None or user.role is Role.CUSTOMER:
            raise Unauthenticated("the account of this token no longer exists")
        # The token that changed the password outlives the change (its holder stays signed in).
        if staff.generation != user.token_generation and staff.jti != user.kept_token_id:
            raise Unauthenticated(
                "the password was changed since this token was issued; sign in again"
            )
        return Principal(user, staff.jti, staff.expires_at)

    async def revoke(self, principal: Principal) -> None:
        if principal.jti is not None:
            await self._store.revoke_token(principal.jti, principal.expires_at)

    async def _customer(self, token: str) -> Principal:
        if self._profiles is not None:
            return await self._vouched(self._profiles, token)
        try:
            claims = self._decode(token, self._settings.customer_jwt_secret, [])
        except jwt.ExpiredSignatureError as error:
            raise Unauthenticated("token expired; sign in again") from error
        except jwt.InvalidTokenError as error:
            raise Unauthenticated(f"invalid token: {error}") from error
        shop = _shop_claims(
            claims, self._settings.customer_token_max_lifetime_seconds, datetime.now(UTC)
        )
        # Without a jti, the token's digest names it: signing out revokes this token alone.
        jti = shop.jti or token_digest(token)
        if await self._store.is_token_revoked(jti):
            raise Unauthenticated("token revoked; sign in again")
        customer = await self._customer_record(shop.external_id, shop.name)
        return Principal(customer, jti, shop.expires_at)

    async def _vouched(self, profiles: ShopProfiles, token: str) -> Principal:
        """A customer token the shop's profile endpoint vouches for. It names itself by its
        digest (signing out revokes it here); a connection opened with it lasts at most the
        longest shop-token lifetime."""
        if not _HEADER_SAFE.fullmatch(token):
            raise Unauthenticated("invalid token: a shop token is visible ASCII, without spaces")
        digest = token_digest(token)
        if await self._store.is_token_revoked(digest):
            raise Unauthenticated("token revoked; sign in again")
        try:
            shop = await profiles.customer(token)
        except ShopRefused as refused:
            raise Unauthenticated(str(refused)) from refused
        customer = await self._customer_record(shop.external_id, shop.name)
        lifetime = timedelta(seconds=self._settings.customer_token_max_lifetime_seconds)
        return Principal(customer, digest, datetime.now(UTC) + lifetime)

    async def _customer_record(self, external_id: str, name: object) -> User:
        existing = await self._store.get_customer_by_external_id(external_id)
        if existing is not None:
            return existing
        public_id = customer_id(external_id)
        if await self._store.get_user(public_id) is not None:
            raise Unauthenticated(
                f"invalid token: the shop id {external_id} is already the id of another account"
            )
        now = utcnow()
        customer = User(
            id=public_id,
            # Customers live outside the staff email namespace: the shop owns their identity.
            email=f"{new_id()}@customers.switchboard.invalid",
            name=name if isinstance(name, str) and name else f"Customer {external_id}",
            role=Role.CUSTOMER,
            external_id=external_id,
            created_at=now,
            updated_at=now,
        )
        return await self._store.find_or_create_customer(customer)

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


def token_digest(token: str) -> str:
    """What names a token without a `jti` (revocation, closing its connections)."""
    return hashlib.sha256(token.encode()).hexdigest()


# NumericDate (RFC 7519): seconds since the epoch; beyond year 9999 no date can hold it.
_LAST_INSTANT = 253402300799


def _instant(claims: dict[str, Any], name: str) -> datetime | None:
    """A NumericDate claim as a datetime, None when absent. PyJWT takes "1700000000" (a string)
    for a number; a claim of the wrong type is refused here, never met later as a crash."""
    value = claims.get(name)
    if value is None:
        return None
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not 0 <= value <= _LAST_INSTANT  # NaN fails this too
    ):
        raise Unauthenticated(
            f"invalid token: {name} must be a number of seconds since 1970 (RFC 7519 NumericDate)"
        )
    return datetime.fromtimestamp(value, UTC)


def _text(claims: dict[str, Any], name: str, *, required: bool) -> str | None:
    value = claims.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value or len(value) > MAX_CLAIM_CHARS:
        raise Unauthenticated(
            f"invalid token: {name} must be a string of 1 to {MAX_CLAIM_CHARS} characters"
        )
    return value


@dataclass(frozen=True, slots=True)
class _StaffClaims:
    sub: str
    typ: str
    jti: str
    generation: int
    expires_at: datetime


def _staff_claims(claims: dict[str, Any]) -> _StaffClaims:
    expires_at = _instant(claims, "exp")
    _instant(claims, "iat")
    generation = claims.get(GENERATION_CLAIM, 0)
    if isinstance(generation, bool) or not isinstance(generation, int):
        raise Unauthenticated(f"invalid token: {GENERATION_CLAIM} must be an integer")
    assert expires_at is not None  # required by the decoder
    return _StaffClaims(
        sub=str(_text(claims, "sub", required=True)),
        typ=str(_text(claims, "typ", required=True)),
        jti=str(_text(claims, "jti", required=True)),
        generation=generation,
        expires_at=expires_at,
    )


@dataclass(frozen=True, slots=True)
class _ShopClaims:
    external_id: str
    jti: str | None
    name: str | None
    expires_at: datetime


def _shop_claims(claims: dict[str, Any], max_lifetime: int, now: datetime) -> _ShopClaims:
    """A shop's customer token: `sub`, or the original shop's `id`; `exp`, or only `iat` and
    then it lasts `max_lifetime`; never longer than `max_lifetime` from `iat` (or from now)."""
    if claims.get("typ", CUSTOMER_TYP) != CUSTOMER_TYP:
        raise Unauthenticated("invalid token: wrong token type")
    if "sub" in claims:
        external_id = str(_text(claims, "sub", required=True))
    else:
        # The original shop signs {id, ...}: a MongoDB ObjectId, or a number elsewhere.
        subject = claims.get("id")
        if isinstance(subject, int) and not isinstance(subject, bool):
            subject = str(subject)
        if not isinstance(subject, str) or not subject or len(subject) > MAX_CLAIM_CHARS:
            raise Unauthenticated(
                "invalid token: the shop token names no customer; add sub (or id): the "
                "customer's id in the shop"
            )
        external_id = subject
    name = claims.get("name")
    expires_at, issued_at = _instant(claims, "exp"), _instant(claims, "iat")
    longest = timedelta(seconds=max_lifetime)
    if expires_at is None:
        if issued_at is None:
            raise Unauthenticated(
                f"invalid token: the shop token has no exp; add exp (at most {max_lifetime} s "
                f"after iat), or iat (then it is accepted for {max_lifetime} s)"
            )
        expires_at = issued_at + longest
        if now > expires_at + timedelta(seconds=LEEWAY_SECONDS):
            raise Unauthenticated(
                f"token expired: a shop token without exp is accepted for {max_lifetime} s "
                "after its iat; sign in again"
            )
    elif expires_at - (issued_at or now) > longest:
        raise Unauthenticated(
            f"invalid token: the shop token lives longer than {max_lifetime} s; sign shop tokens "
            "with an exp closer to their iat (SWITCHBOARD_CUSTOMER_TOKEN_MAX_LIFETIME_SECONDS)"
        )
    return _ShopClaims(
        external_id=external_id,
        jti=_text(claims, "jti", required=False),
        name=name if isinstance(name, str) and name else None,
        expires_at=expires_at,
    )
