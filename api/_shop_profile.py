"""Customer tokens checked by the shop itself, for shops that cannot share a signing secret
(SWITCHBOARD_CUSTOMER_PROFILE_URL).

As the original backend did: `GET <url>` with the header `accesstoken: accesstoken_<token>`; a
200 whose `user` has an `_id` names the customer (their name is `name`, else `username`). 401 and
403 refuse the token. No answer within the timeout, a 5xx or any other answer means the shop
cannot say now: the caller gets 503, never a refusal it did not earn.

Answers, accepted and refused, are kept for SWITCHBOARD_CUSTOMER_PROFILE_CACHE_SECONDS by the
token's SHA-256 digest (never the token), at most CACHE_ENTRIES of them, so a page that opens a
socket and makes a few REST calls asks the shop once; checks of one token that arrive while the
shop is being asked about it wait for that answer (a 503 included) instead of asking again. At
most CONCURRENT_CALLS calls are in flight; a caller waiting longer than the timeout for one gets
503 too, so a flood of made-up tokens costs the shop a bounded number of requests at a time.
"""

from __future__ import annotations

import hashlib
import logging
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import trio

log = logging.getLogger("api.shop_profile")

HEADER = "accesstoken"
HEADER_PREFIX = "accesstoken_"  # the original shop's header value: the prefix, then the token
CACHE_ENTRIES = 10_000
CONCURRENT_CALLS = 20
MAX_ID_CHARS = 128  # a shop id longer than any real one is not an id
# The code of the 503 (REST, /ws handshake, Socket.IO connect_error) and when to retry.
CHECK_UNAVAILABLE = "customer_check_unavailable"
RETRY_AFTER_SECONDS = 5
UNAVAILABLE = "the shop cannot check customer tokens right now; retry shortly"


@dataclass(frozen=True, slots=True)
class ShopCustomer:
    """Whom the shop says the token belongs to."""

    external_id: str
    name: str | None


class ShopRefused(Exception):
    """The shop says the token is not (or no longer) one of its customers'."""


class CustomerCheckUnavailable(Exception):
    """The shop cannot say whose the token is right now; retry later (503)."""


@dataclass(frozen=True, slots=True)
class _Kept:
    answer: ShopCustomer | ShopRefused
    until: float


@dataclass(slots=True)
class _Asking:
    """A call to the shop in flight; those checking the same token meanwhile wait for it."""

    done: trio.Event
    answer: ShopCustomer | ShopRefused | CustomerCheckUnavailable | None = None


class ShopProfiles:
    def __init__(
        self,
        url: str,
        client: httpx.AsyncClient,
        *,
        timeout_seconds: float,
        cache_seconds: float,
        clock: Callable[[], float] = trio.current_time,
    ) -> None:
        self._url = url
        self._client = client
        self._timeout = timeout_seconds
        self._cache_seconds = cache_seconds
        self._clock = clock
        self._kept: OrderedDict[str, _Kept] = OrderedDict()
        self._asking: dict[str, _Asking] = {}
        self._calls = trio.CapacityLimiter(CONCURRENT_CALLS)

    async def customer(self, token: str) -> ShopCustomer:
        """The shop's customer behind `token`; raises ShopRefused or CustomerCheckUnavailable."""
        key = hashlib.sha256(token.encode()).hexdigest()
        kept = self._kept.get(key)
        answer = (
            kept.answer
            if kept is not None and kept.until > self._clock()
            else await self._asked(key, token)
        )
        match answer:
            case ShopCustomer():
                return answer
            case ShopRefused() | CustomerCheckUnavailable():
                raise type(answer)(str(answer))  # a fresh one: the kept one stays as it was
            case None:  # the one asking was cancelled (its client went away)
                raise CustomerCheckUnavailable(UNAVAILABLE)

    async def _asked(
        self, key: str, token: str
    ) -> ShopCustomer | ShopRefused | CustomerCheckUnavailable | None:
        """The shop's answer about a token, asked once however many check it at the same time."""
        asking = self._asking.get(key)
        if asking is not None:
            await asking.done.wait()  # bounded: the call it waits for has the timeout
            return asking.answer
        asking = self._asking[key] = _Asking(trio.Event())
        try:
            asking.answer = await self._ask(token)
        except CustomerCheckUnavailable as error:
            asking.answer = error  # not kept: the next check asks again
        else:
            self._keep(key, asking.answer)
        finally:
            del self._asking[key]
            asking.done.set()
        return asking.answer

    def _keep(self, key: str, answer: ShopCustomer | ShopRefused) -> None:
        self._kept[key] = _Kept(answer, self._clock() + self._cache_seconds)
        self._kept.move_to_end(key)
        while len(self._kept) > CACHE_ENTRIES:
            self._kept.popitem(last=False)

    async def _ask(self, token: str) -> ShopCustomer | ShopRefused:
        try:
            with trio.fail_after(self._timeout):
                async with self._calls:
                    response = await self._client.get(
                        self._url, headers={HEADER: HEADER_PREFIX + token}
                    )
        except (trio.TooSlowError, httpx.HTTPError) as error:
            log.warning("customer profile check failed: %s", type(error).__name__)
            raise CustomerCheckUnavailable(UNAVAILABLE) from error
        if response.status_code in (401, 403):
            return ShopRefused("the shop does not accept this token; sign in to the shop again")
        if response.status_code != 200:
            log.warning("customer profile check answered %d", response.status_code)
            raise CustomerCheckUnavailable(UNAVAILABLE)
        return _customer_of(response)


def _customer_of(response: httpx.Response) -> ShopCustomer | ShopRefused:
    """The original's reading of a 200: `user._id`, and `name` or `username`."""
    try:
        body: Any = response.json()
    except ValueError:
        body = None
    user = body.get("user") if isinstance(body, dict) else None
    shop_id = user.get("_id") if isinstance(user, dict) else None
    if isinstance(shop_id, int) and not isinstance(shop_id, bool):
        shop_id = str(shop_id)
    if not isinstance(shop_id, str) or not 0 < len(shop_id) <= MAX_ID_CHARS:
        return ShopRefused("the shop's profile answer names no customer for this token")
    assert isinstance(user, dict)
    name = next(
        (v for v in (user.get("name"), user.get("username")) if isinstance(v, str) and v), None
    )
    return ShopCustomer(shop_id, name)


@asynccontextmanager
async def open_shop_profiles(
    url: str | None, *, timeout_seconds: float, cache_seconds: float
) -> AsyncIterator[ShopProfiles | None]:
    """The shop's profile checker for as long as the block runs; None without a URL."""
    if url is None:
        yield None
        return
    limits = httpx.Limits(max_connections=CONCURRENT_CALLS)
    async with httpx.AsyncClient(limits=limits, follow_redirects=False) as client:
        yield ShopProfiles(
            url, client, timeout_seconds=timeout_seconds, cache_seconds=cache_seconds
        )
