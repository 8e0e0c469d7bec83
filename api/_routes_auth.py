"""Sign-up, sign-in, sign-out and profiles: the original backend's paths and shapes."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta

import trio
from quart import Blueprint, Response, request
from quart_schema import document_response, validate_request

from api._errors import ASK_SECONDS, ApiError
from api._guard import bearer_token, current_principal, requires
from api._respond import respond
from api._schemas import AuthOut, LoginBody, MessageOut, ProfileUpdate, RegisterBody, UserOut
from api._services import services
from api._signin_gate import SignInGate, Ticket
from api._ws import token_id
from store import DuplicateEmail, Role, User, new_id, utcnow
from telemetry import limit_hit

auth = Blueprint("auth", __name__)

STAFF_LOGIN_ROLES = frozenset({Role.USER, Role.AGENT})
SIGNED_IN = (Role.USER, Role.AGENT, Role.CUSTOMER)
_BAD_LOGIN = "invalid email or password"
# Sign-ins being checked now: parallel guesses get no more password checks than the limit.
_gate = SignInGate()
_GATE_ROUNDS = 100


@auth.post("/auth/register")
@validate_request(RegisterBody)
@document_response(AuthOut, 201)
async def register(data: RegisterBody) -> Response:
    found = services()
    address = request.remote_addr or "unknown"
    wait = found.throttles.registrations.take(address)
    if wait:
        limit_hit("register_throttle", client=address)
        raise ApiError(
            429,
            "too_many_registrations",
            "too many accounts registered from this address; retry later",
            retry_after=wait,
        )
    now = utcnow()
    user = User(
        id=new_id(),
        email=data.email,
        name=data.name,
        role=Role.USER,
        password_hash=await found.passwords.hash(data.password),
        created_at=now,
        updated_at=now,
    )
    try:
        user = await found.store.create_user(user)
    except DuplicateEmail as error:
        raise ApiError(
            409, "email_taken", "an account with this email exists; sign in instead"
        ) from error
    return respond(AuthOut(user=UserOut.of(user), token=found.tokens.issue(user)), 201)


async def _login(data: LoginBody, roles: frozenset[Role]) -> Response:
    found = services()
    settings = found.settings
    now = utcnow()
    since = now - timedelta(seconds=settings.login_window_seconds)
    keys = (f"email:{data.email}", f"addr:{request.remote_addr or 'unknown'}")
    ticket = await _admitted(keys, since)
    try:
        user = await found.store.get_user_by_email(data.email)
        password_hash = user.password_hash if user is not None else None
        if not await found.passwords.verify(password_hash, data.password) or user is None:
            for key in keys:
                await found.store.add_login_failure(key, now)
            raise ApiError(401, "invalid_credentials", _BAD_LOGIN)
    finally:
        _gate.give_back(ticket, finished=True)
    await found.store.clear_login_failures(keys[0])
    if user.role not in roles:
        where = "/admin/auth/login" if user.role is Role.ADMIN else "/auth/login"
        raise ApiError(403, "wrong_login_endpoint", f"this account signs in at {where}")
    return respond(AuthOut(user=UserOut.of(user), token=found.tokens.issue(user)))


async def _admitted(keys: tuple[str, ...], since: datetime) -> Ticket:
    """A ticket to check the password, once the failures stored for `keys` plus the sign-ins
    ahead (which may all fail) are under the limit; 429 when the stored ones reach it."""
    found = services()
    limit = found.settings.login_max_failures
    for _ in range(_GATE_ROUNDS):
        ticket = _gate.take(keys)
        try:
            failures = {key: await found.store.count_login_failures(key, since) for key in keys}
        except BaseException:
            _gate.give_back(ticket, finished=True)
            raise
        if any(count >= limit for count in failures.values()):
            _gate.give_back(ticket, finished=True)
            break
        if all(failures[key] + ticket.ahead[key] < limit for key in keys):
            return ticket
        _gate.give_back(ticket, finished=False)
        with trio.move_on_after(ASK_SECONDS):
            await ticket.changed.wait()
    minutes = found.settings.login_window_seconds // 60
    limit_hit("signin_throttle", keys=", ".join(keys))
    raise ApiError(
        429, "too_many_attempts", f"too many failed sign-ins; try again in {minutes} minutes"
    )


@auth.post("/auth/login")
@validate_request(LoginBody)
@document_response(AuthOut)
async def login(data: LoginBody) -> Response:
    return await _login(data, STAFF_LOGIN_ROLES)


@auth.post("/admin/auth/login")
@validate_request(LoginBody)
@document_response(AuthOut)
async def admin_login(data: LoginBody) -> Response:
    return await _login(data, frozenset({Role.ADMIN}))


async def _logout() -> Response:
    found, principal = services(), current_principal()
    await found.tokens.revoke(principal)
    # The websockets opened with this token close too (4401); the user's others stay open.
    token = bearer_token(request.headers.get("Authorization"))
    found.system.close_token(token_id(principal, token), "signed out")
    return respond(MessageOut(message="signed out; this token no longer works"))


@auth.post("/auth/logout")
@requires(*SIGNED_IN)
@document_response(MessageOut)
async def logout() -> Response:
    return await _logout()


@auth.post("/admin/auth/logout")
@requires(Role.ADMIN)
@document_response(MessageOut)
async def admin_logout() -> Response:
    return await _logout()


async def _update_profile(data: ProfileUpdate) -> Response:
    user = current_principal().user
    changes = data.model_dump(exclude_unset=True)
    updated = await services().store.update_user(
        dataclasses.replace(user, **changes, updated_at=utcnow())
    )
    return respond(UserOut.of(updated))


@auth.get("/profile")
@requires(*SIGNED_IN)
@document_response(UserOut)
async def profile() -> Response:
    return respond(UserOut.of(current_principal().user))


@auth.put("/profile")
@requires(*SIGNED_IN)
@validate_request(ProfileUpdate)
@document_response(UserOut)
async def update_profile(data: ProfileUpdate) -> Response:
    return await _update_profile(data)


@auth.get("/admin/profile")
@requires(Role.ADMIN)
@document_response(UserOut)
async def admin_profile() -> Response:
    return respond(UserOut.of(current_principal().user))


@auth.put("/admin/profile")
@requires(Role.ADMIN)
@validate_request(ProfileUpdate)
@document_response(UserOut)
async def update_admin_profile(data: ProfileUpdate) -> Response:
    return await _update_profile(data)
