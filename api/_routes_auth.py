"""Sign-up, sign-in, sign-out and profiles: the original backend's paths and shapes."""

from __future__ import annotations

import dataclasses

from quart import Blueprint, Response, request
from quart_schema import document_response, validate_request

from api._access import store_profile
from api._client import current_client
from api._errors import ApiError
from api._forms import takes_forms
from api._guard import bearer_token, current_principal, requires
from api._respond import respond
from api._schemas import AuthOut, LoginBody, MessageOut, ProfileUpdate, RegisterBody, UserOut
from api._services import services
from api._signin_throttle import Throttled, too_many_sign_ins
from api._uploads import forget_image
from api._ws import token_id
from store import DuplicateEmail, Role, User, new_id, utcnow
from telemetry import limit_hit

auth = Blueprint("auth", __name__)

STAFF_LOGIN_ROLES = frozenset({Role.USER, Role.AGENT})
SIGNED_IN = (Role.USER, Role.AGENT, Role.CUSTOMER)
_BAD_LOGIN = "invalid email or password"


@auth.post("/auth/register")
@validate_request(RegisterBody)
@document_response(AuthOut, 201)
async def register(data: RegisterBody) -> Response:
    found = services()
    address = current_client()
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
    client = current_client()
    user: User | None = None

    async def verify() -> bool:
        nonlocal user
        user = await found.store.get_user_by_email(data.email)
        password_hash = user.password_hash if user is not None else None
        return await found.passwords.verify(password_hash, data.password) and user is not None

    try:
        right = await found.signins.check(data.email, client, verify)
    except Throttled as throttled:
        limit_hit("signin_throttle", key=throttled.key, retry_after=round(throttled.retry_after))
        raise too_many_sign_ins(throttled) from None
    if not right or user is None:
        raise ApiError(401, "invalid_credentials", _BAD_LOGIN)
    if user.role not in roles:
        where = "/admin/auth/login" if user.role is Role.ADMIN else "/auth/login"
        raise ApiError(403, "wrong_login_endpoint", f"this account signs in at {where}")
    return respond(AuthOut(user=UserOut.of(user), token=found.tokens.issue(user)))


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
    updated = await store_profile(dataclasses.replace(user, **changes, updated_at=utcnow()))
    await forget_image(user.avatar, updated.avatar)
    return respond(UserOut.of(updated))


@auth.get("/profile")
@requires(*SIGNED_IN)
@document_response(UserOut)
async def profile() -> Response:
    return respond(UserOut.of(current_principal().user))


@auth.put("/profile")
@requires(*SIGNED_IN)
@takes_forms(ProfileUpdate)
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
@takes_forms(ProfileUpdate)
@validate_request(ProfileUpdate)
@document_response(UserOut)
async def update_admin_profile(data: ProfileUpdate) -> Response:
    return await _update_profile(data)
