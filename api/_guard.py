"""The role guard of every route: 401 without a good token, 403 for a role not allowed."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import ParamSpec, TypeVar

from quart import g, request

from api._auth import Principal, Unauthenticated
from api._errors import ApiError
from api._services import services
from api._shop_profile import CHECK_UNAVAILABLE, RETRY_AFTER_SECONDS, CustomerCheckUnavailable
from store import Role

P = ParamSpec("P")
T = TypeVar("T")


def bearer_token(header: str | None) -> str:
    if not header:
        raise ApiError(401, "unauthorized", "missing Authorization header (Bearer <token>)")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ApiError(401, "unauthorized", "the Authorization header must be 'Bearer <token>'")
    return token.strip()


def current_principal() -> Principal:
    principal: Principal = g.principal
    return principal


def requires(
    *roles: Role,
) -> Callable[[Callable[P, Awaitable[T]]], Callable[P, Awaitable[T]]]:
    """The explicit allowed-roles rule of a route: 401 without a good token, 403 for other roles."""
    allowed = frozenset(roles)

    def decorate(handler: Callable[P, Awaitable[T]]) -> Callable[P, Awaitable[T]]:
        @functools.wraps(handler)
        async def guarded(*args: P.args, **kwargs: P.kwargs) -> T:
            token = bearer_token(request.headers.get("Authorization"))
            try:
                principal = await services().tokens.authenticate(token)
            except Unauthenticated as error:
                raise ApiError(401, "unauthorized", str(error)) from error
            except CustomerCheckUnavailable as error:
                raise ApiError(
                    503, CHECK_UNAVAILABLE, str(error), retry_after=RETRY_AFTER_SECONDS
                ) from error
            if principal.role not in allowed:
                raise ApiError(
                    403,
                    "forbidden",
                    f"this endpoint is for {', '.join(sorted(r.value for r in allowed))}; "
                    f"you are signed in as {principal.role.value}",
                )
            g.principal = principal
            return await handler(*args, **kwargs)

        guarded.allowed_roles = allowed  # type: ignore[attr-defined]
        return guarded

    return decorate
