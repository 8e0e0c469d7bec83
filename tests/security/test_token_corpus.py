"""A corpus of bad tokens, each refused on REST (401, the common error shape), on the
websocket handshake (refused before accept, 401) and by Socket.IO's CONNECT (a CONNECT_ERROR with
its reason).

Each case is built from a real, valid token of the live server (so a refusal is due to the one
thing the case breaks), and a control case checks the untouched token is accepted on both edges:
a corpus that refused everything would prove nothing.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import pytest
import trio
from trio_websocket import ConnectionRejected

from tests.conftest import TEST_CUSTOMER_SECRET, TEST_SECRET, Live
from tests.e2e.wsclient import connect
from tests.sio.test_protocol import Polling

AGENT = "ann@switchboard.example"
ATTACKER_KEY = "an-attacker-controlled-key-of-32-bytes!!"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _claims(token: str) -> dict[str, Any]:
    claims: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
    return claims


def _resign(token: str, key: str = TEST_SECRET, *, headers: dict[str, Any] | None = None,
            algorithm: str = "HS256", **changes: Any) -> str:  # fmt: skip
    claims = _claims(token) | changes
    for name in [name for name, value in claims.items() if value is None]:
        del claims[name]
    return jwt.encode(claims, key, algorithm=algorithm, headers=headers)


def _unsigned(token: str) -> str:
    header = _b64(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    payload = _b64(json.dumps(_claims(token)).encode())
    return f"{header}.{payload}."


def _tampered(token: str) -> str:
    header, _, signature = token.split(".")
    claims = _claims(token) | {"sub": "someone-else", "role": "admin"}
    return f"{header}.{_b64(json.dumps(claims).encode())}.{signature}"


def _now(seconds: float = 0) -> datetime:
    return datetime.now(UTC) + timedelta(seconds=seconds)


@dataclass(frozen=True)
class Case:
    name: str
    make: Callable[[Live, str], Awaitable[str]]  # from a valid agent token, the bad token


def case(name: str, change: Callable[[str], str]) -> Case:
    async def make(live: Live, token: str) -> str:
        return change(token)

    return Case(name, make)


async def _revoked(live: Live, token: str) -> str:
    response = await live.http.post("/auth/logout", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200, response.text
    return token


async def _deleted_user(live: Live, token: str) -> str:
    user = await live.services.store.get_user_by_email("bob@switchboard.example")
    assert user is not None
    bob = live.services.tokens.issue(user)
    assert await live.services.store.delete_user(user.id)
    return bob


async def _customer_wrong_typ(live: Live, token: str) -> str:
    customer = await live.customer_token("shop-customer-1")
    return _resign(customer, TEST_CUSTOMER_SECRET, typ="access")


async def _customer_no_exp_too_old(live: Live, token: str) -> str:
    # Without exp a shop token lasts the maximum lifetime (7 days here) from its iat.
    customer = await live.customer_token("shop-customer-1")
    return _resign(customer, TEST_CUSTOMER_SECRET, exp=None, iat=_now(-8 * 24 * 3600))


async def _customer_no_exp_no_iat(live: Live, token: str) -> str:
    customer = await live.customer_token("shop-customer-1")
    return _resign(customer, TEST_CUSTOMER_SECRET, exp=None, iat=None)


def _customer_claims(**changes: Any) -> Callable[[Live, str], Awaitable[str]]:
    async def make(live: Live, token: str) -> str:
        customer = await live.customer_token("shop-customer-1")
        return _resign(customer, TEST_CUSTOMER_SECRET, **changes)

    return make


_LATER = int(_now(3600).timestamp())


async def _customer_staff_secret(live: Live, token: str) -> str:
    customer = await live.customer_token("shop-customer-1")
    return _resign(customer, ATTACKER_KEY)


CORPUS = [
    case("alg none", _unsigned),
    case("HS512 with the right secret", lambda t: _resign(t, algorithm="HS512")),
    case("wrong secret", lambda t: _resign(t, ATTACKER_KEY)),
    case("signed with the customer secret", lambda t: _resign(t, TEST_CUSTOMER_SECRET)),
    case("missing exp", lambda t: _resign(t, exp=None)),
    case("missing iat", lambda t: _resign(t, iat=None)),
    case("missing sub", lambda t: _resign(t, sub=None)),
    case("missing typ", lambda t: _resign(t, typ=None)),
    case("missing jti", lambda t: _resign(t, jti=None)),
    case("expired beyond leeway", lambda t: _resign(t, exp=_now(-60), iat=_now(-3600))),
    case("not yet valid (nbf)", lambda t: _resign(t, nbf=_now(3600))),
    case("issued in the future", lambda t: _resign(t, iat=_now(3600), exp=_now(7200))),
    case("wrong typ", lambda t: _resign(t, typ="refresh")),
    case("tampered payload", _tampered),
    case("malformed base64", lambda t: t[:20] + "%%%" + t[23:]),
    case("two segments", lambda t: t.rsplit(".", 1)[0]),
    case("empty", lambda t: "e30"),
    case("oversize", lambda t: _resign(t, padding="x" * 5000)),
    case("kid pointing elsewhere", lambda t: _resign(t, ATTACKER_KEY, headers={"kid": "../../x"})),
    case(
        "jku to an attacker's key set",
        lambda t: _resign(t, ATTACKER_KEY, headers={"jku": "http://127.0.0.1:9/jwks.json"}),
    ),
    case(
        "x5u to an attacker's certificate",
        lambda t: _resign(t, ATTACKER_KEY, headers={"x5u": "http://127.0.0.1:9/cert.pem"}),
    ),
    Case("revoked (logged out)", _revoked),
    Case("deleted user", _deleted_user),
    Case("customer token with typ access", _customer_wrong_typ),
    Case(
        "customer token without exp, iat older than the maximum lifetime", _customer_no_exp_too_old
    ),
    Case("customer token without exp or iat", _customer_no_exp_no_iat),
    Case("customer token living longer than the maximum", _customer_claims(exp=_now(8 * 86400))),
    # Claims of the wrong type: PyJWT takes a numeric string for exp; none may reach a 500.
    case("exp as a numeric string", lambda t: _resign(t, exp=str(_LATER))),
    case("exp beyond year 9999", lambda t: _resign(t, exp=10**12)),
    case("iat as a string", lambda t: _resign(t, iat=str(int(_now().timestamp())))),
    case("iat true", lambda t: _resign(t, iat=True)),
    case("jti as a list", lambda t: _resign(t, jti=["a"])),
    case("gen as a string", lambda t: _resign(t, gen="0")),
    case("sub as an object", lambda t: _resign(t, sub={"id": "x"})),
    Case("customer exp as a numeric string", _customer_claims(exp=str(_LATER))),
    Case("customer exp beyond year 9999", _customer_claims(exp=10**12, iat=10**12 - 60)),
    Case("customer iat as a string", _customer_claims(iat="1")),
    Case("customer id (no sub) as a list", _customer_claims(sub=None, id=["x"])),
    Case("customer without sub or id", _customer_claims(sub=None)),
    Case("customer jti as a number", _customer_claims(jti=7)),
    Case("customer token with a foreign key", _customer_staff_secret),
]


async def _refused_on_both_edges(live: Live, token: str) -> None:
    response = await live.http.get("/profile", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401, response.text
    assert response.json()["error"]["code"] == "unauthorized"
    with pytest.raises(ConnectionRejected) as refused:
        async with connect(live, token):
            pass
    assert refused.value.status_code == 401
    session, _ = await Polling.open(live)
    await session.post("40" + json.dumps({"token": token}))
    answers = await session.until_prefix("44")
    refusal = next(answer for answer in answers if answer.startswith("44"))
    assert "message" in json.loads(refusal[2:]), refusal
    assert not any(answer.startswith("40") for answer in answers), answers


# The HS512 case is signed with the test secret, which PyJWT finds short for SHA-512.
@pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")
@pytest.mark.parametrize("bad", CORPUS, ids=[bad.name for bad in CORPUS])
async def test_bad_token_refused_on_rest_and_websocket(live: Live, bad: Case) -> None:
    with trio.fail_after(30):
        token = await bad.make(live, await live.login(AGENT))
        await _refused_on_both_edges(live, token)


def _original_shop_token() -> str:
    """As the original shop signs its customers' tokens: `id`, `iat`, no `sub`, no `exp`."""
    return jwt.encode(
        {"id": "65f1c0ffee0000000000beef", "email": "carla@shop.example", "iat": _now()},
        TEST_CUSTOMER_SECRET,
    )


async def test_the_untouched_tokens_are_accepted_on_all_edges(live: Live) -> None:
    with trio.fail_after(30):
        tokens = [await live.login(AGENT), await live.customer_token("shop-customer-1")]
        for token in [*tokens, _original_shop_token()]:
            response = await live.http.get("/profile", headers={"Authorization": f"Bearer {token}"})
            assert response.status_code == 200, response.text
            async with connect(live, token) as client:
                await client.ping()
            session, _ = await Polling.open(live)
            assert await session.connect(token)
            # Re-signing without a change keeps it valid: the corpus's refusals are its changes.
            assert _claims(_resign(token, TEST_SECRET)) == _claims(token)
