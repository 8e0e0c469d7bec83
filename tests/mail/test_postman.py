"""The original backend's Postman requests for accounts by email, as written, on a live server.

The six requests are copied below from `Customer-Support.postman_collection.json` (method, path,
raw body, whether they send `{{userToken}}`); when the collection is found beside the repository
(`../shared/seed/`), the copies are checked against it. Codes are read from the captured mail,
as a person would. "Send Email Verification" carries, in its header, a token the original
server signed; no other server can accept it, so it is sent with `{{userToken}}` like the rest.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Live
from tests.mail.smtp_server import Mailbox

ROOT = Path(__file__).resolve().parents[2]
COLLECTION = "seed/Customer-Support.postman_collection.json"

# name: (method, path after {{baseUrl}}, raw body, sends {{userToken}})
REQUESTS: dict[str, tuple[str, str, str, bool]] = {
    "Send Email Verification": (
        "POST", "email/send", '{\r\n    "email": "zyadgamal450@gmail.com"\r\n}', True,
    ),
    "Report To Admin": (
        "POST",
        "email/report",
        '{\r\n    "email": "ziad.gamal.tech@gmail.com",\r\n    "subject": "Test subject",\r\n'
        '    "message": "Test message"\r\n}',
        True,
    ),
    "Forgot Password": (
        "POST", "password/forgot", '{\r\n    "email": "zyadgamal450@gmail.com"\r\n}', False,
    ),
    "Reset Password": (
        "POST",
        "password/reset",
        '{\r\n    "email": "zyadgamal450@gmail.com",\r\n    "otp": "528966",\r\n'
        '    "newPassword": "123456789zZ"\r\n}',
        False,
    ),
    "Confirm Password": (
        "POST", "password/confirm", '{\r\n    "password": "12345678zZ"\r\n}', True,
    ),
    "Update Password": (
        "POST",
        "password/update",
        '{\r\n    "oldPassword": "123456789zZ",\r\n    "newPassword": "12345678zZ",\r\n'
        '    "confirmPassword": "12345678zZ"\r\n}',
        True,
    ),
}  # fmt: skip
EMAIL = "zyadgamal450@gmail.com"


def _collection_requests() -> dict[str, tuple[str, str, str, bool]] | None:
    for shared in (ROOT.parent / "shared", ROOT.parents[1] / "shared"):
        if (shared / COLLECTION).is_file():
            collection = json.loads((shared / COLLECTION).read_text())
            break
    else:
        return None
    found: dict[str, tuple[str, str, str, bool]] = {}

    def walk(items: list[dict[str, Any]]) -> None:
        for item in items:
            if "item" in item:
                walk(item["item"])
            elif item["name"] in REQUESTS:
                request = item["request"]
                bearer = (request.get("auth") or {}).get("bearer") or [{}]
                header = [
                    h["value"]
                    for h in request.get("header", [])
                    if h["key"].lower() == "authorization"
                ]
                found[item["name"]] = (
                    request["method"],
                    request["url"]["raw"].removeprefix("{{baseUrl}}"),
                    request["body"]["raw"],
                    bearer[0].get("value") == "{{userToken}}" or bool(header),
                )

    walk(collection["item"])
    return found


def test_the_copies_match_the_collection() -> None:
    found = _collection_requests()
    if found is None:
        pytest.skip("the Postman collection is not beside this checkout")
    assert found == REQUESTS


async def _send(live: Live, name: str, token: str | None = None, **replace: str) -> Any:
    method, path, raw, with_token = REQUESTS[name]
    body = json.loads(raw) | replace
    headers = {"Content-Type": "application/json"}
    if with_token:
        assert token is not None
        headers["Authorization"] = f"Bearer {token}"
    response = await live.http.request(
        method,
        f"{live.url}/{path}",
        content=json.dumps(body).replace("\n", "\r\n"),
        headers=headers,
    )
    assert response.status_code == 200, (name, response.text)
    return response.json()


async def _login(live: Live, password: str) -> str:
    response = await live.http.post("/auth/login", json={"email": EMAIL, "password": password})
    assert response.status_code == 200, response.text
    token: str = response.json()["token"]
    return token


async def test_the_six_requests_work_as_written(live: Live, mailbox: Mailbox) -> None:
    registered = await live.http.post(
        "/auth/register",
        json={
            "name": "Ziad",
            "email": EMAIL,
            "password": "first-1Aa",
            "confirmedPassword": "first-1Aa",
        },
    )
    assert registered.status_code == 201, registered.text

    await _send(live, "Forgot Password")
    [mail] = await mailbox.wait_to(EMAIL)
    await _send(live, "Reset Password", otp=mail.code)

    user_token = await _login(live, "123456789zZ")  # the collection's "Login", as a person would
    updated = await _send(live, "Update Password", user_token)
    assert updated["user"]["email"] == EMAIL

    user_token = await _login(live, "12345678zZ")
    assert (await _send(live, "Confirm Password", user_token))["message"]

    await _send(live, "Send Email Verification", user_token)
    [_, verification] = await mailbox.wait_to(EMAIL, 2)
    assert "verify your email" in verification.text.splitlines()[0]

    await _send(live, "Report To Admin", user_token)
    [report] = await mailbox.wait_to(live.services.settings.support_email)
    assert report.message["Reply-To"] == "ziad.gamal.tech@gmail.com"
    assert "Test message" in report.text
