"""Shop (customer) tokens against a live server: signing out revokes them, with or without a
`jti`; the original shop's `{id, iat}` shape is accepted; lifetimes beyond the configured
maximum are refused, each with a message saying what to change."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jwt
import pytest

from tests.api.support import assert_error, bearer
from tests.conftest import TEST_CUSTOMER_SECRET, Live, make_settings, running_server

HOUR = 3600


def shop_token(**claims: Any) -> str:
    return jwt.encode(claims, TEST_CUSTOMER_SECRET)


def now(seconds: float = 0) -> datetime:
    return datetime.now(UTC) + timedelta(seconds=seconds)


@pytest.fixture
async def short(tmp_path: Path) -> AsyncIterator[Live]:
    """Shop tokens may live an hour at most."""
    settings = make_settings(tmp_path, customer_token_max_lifetime_seconds=HOUR)
    async with running_server(settings, seed=False) as live:
        yield live


async def test_signing_out_revokes_a_shop_token_without_jti_and_only_that_token(
    live: Live,
) -> None:
    token = shop_token(sub="shop-customer-9", iat=now(), exp=now(HOUR))
    other = shop_token(sub="shop-customer-9", iat=now(-1), exp=now(HOUR))
    assert (await live.http.get("/profile", headers=bearer(token))).status_code == 200
    out = await live.http.post("/auth/logout", headers=bearer(token))
    assert out.status_code == 200, out.text
    refused = await live.http.get("/profile", headers=bearer(token))
    assert "revoked" in assert_error(refused, 401, "unauthorized")["message"]
    assert (await live.http.get("/profile", headers=bearer(other))).status_code == 200


async def test_the_dev_customer_token_carries_a_jti_and_signs_out(live: Live) -> None:
    token = await live.customer_token("shop-customer-1")
    claims = jwt.decode(token, options={"verify_signature": False})
    assert isinstance(claims["jti"], str)
    assert claims["jti"]
    assert (await live.http.post("/auth/logout", headers=bearer(token))).status_code == 200
    assert_error(await live.http.get("/profile", headers=bearer(token)), 401, "unauthorized")
    again = await live.customer_token("shop-customer-1")
    assert (await live.http.get("/profile", headers=bearer(again))).status_code == 200


async def test_the_original_shops_token_shape_is_accepted(live: Live) -> None:
    shop_id = "65f1c0ffee0000000000beef"
    token = shop_token(id=shop_id, email="carla@shop.example", iat=now())
    response = await live.http.get("/profile", headers=bearer(token))
    assert response.status_code == 200, response.text
    customer = await live.services.store.get_customer_by_external_id(shop_id)
    assert customer is not None
    assert response.json()["id"] in (customer.id, shop_id)
    # Signed out, by its digest: it has no jti.
    assert (await live.http.post("/auth/logout", headers=bearer(token))).status_code == 200
    assert_error(await live.http.get("/profile", headers=bearer(token)), 401, "unauthorized")


async def test_a_token_without_exp_or_iat_is_told_what_to_add(live: Live) -> None:
    response = await live.http.get("/profile", headers=bearer(shop_token(sub="c-1")))
    message = assert_error(response, 401, "unauthorized")["message"]
    assert "add exp" in message
    assert "iat" in message


async def test_lifetimes_beyond_the_maximum_are_refused(short: Live) -> None:
    too_long = shop_token(sub="c-1", iat=now(), exp=now(2 * HOUR))
    message = assert_error(await short.http.get("/profile", headers=bearer(too_long)), 401)
    assert "SWITCHBOARD_CUSTOMER_TOKEN_MAX_LIFETIME_SECONDS" in message["message"]
    # Without iat the lifetime counts from now.
    no_iat = shop_token(sub="c-1", exp=now(2 * HOUR))
    assert_error(await short.http.get("/profile", headers=bearer(no_iat)), 401)
    within = shop_token(sub="c-1", iat=now(), exp=now(HOUR - 60))
    assert (await short.http.get("/profile", headers=bearer(within))).status_code == 200


async def test_without_exp_a_token_lasts_the_maximum_from_its_iat(short: Live) -> None:
    fresh = shop_token(sub="c-1", iat=now(-HOUR + 120))
    assert (await short.http.get("/profile", headers=bearer(fresh))).status_code == 200
    stale = shop_token(sub="c-1", iat=now(-HOUR - 120))
    message = assert_error(await short.http.get("/profile", headers=bearer(stale)), 401)
    assert "expired" in message["message"]
