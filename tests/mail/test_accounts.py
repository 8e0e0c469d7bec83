"""Accounts by email, end to end: a live Switchboard mailing through a real SMTP server.

Verification, forgotten and changed passwords, the password check and the report form, with
every code read from the mail the SMTP server received; then what an attacker would try.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import httpx
import pytest

from api import DEMO_PASSWORD
from store import CodePurpose, new_id, utcnow
from tests.api.support import ANN, UMA, bearer
from tests.conftest import Clock, Live
from tests.e2e.wsclient import connect
from tests.mail.smtp_server import Mailbox

NEW_PASSWORD = "a-new-password-1"
ZED = {"name": "Zed", "email": "zed@example.com", "password": "zed-password-1"}


def assert_error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error: dict[str, Any] = response.json()["error"]
    assert error["code"] == code
    assert error["message"]
    return error


async def register(live: Live, person: dict[str, str] = ZED) -> dict[str, str]:
    response = await live.http.post(
        "/auth/register", json={**person, "confirmedPassword": person["password"]}
    )
    assert response.status_code == 201, response.text
    return bearer(response.json()["token"])


async def reset_code(live: Live, mailbox: Mailbox, email: str, count: int = 1) -> str:
    response = await live.http.post("/password/forgot", json={"email": email})
    assert response.status_code == 200, response.text
    return (await mailbox.wait_to(email, count))[-1].code


async def test_register_then_verify_the_email_by_the_mailed_code(
    live: Live, mailbox: Mailbox
) -> None:
    zed = await register(live)
    profile = await live.http.get("/profile", headers=zed)
    assert profile.json()["emailVerifiedAt"] is None

    sent = await live.http.post("/email/send", headers=zed, json={})
    assert sent.status_code == 200, sent.text
    [mail] = await mailbox.wait_to(ZED["email"])
    first_line = mail.text.splitlines()[0]
    assert first_line.startswith(f"{mail.code} is your Switchboard code to verify")
    assert "expires at" in first_line
    assert mail.code.isdigit()
    assert len(mail.code) == 6
    assert mail.code in mail.html
    assert mail.message["From"] == live.services.settings.mail_from

    verified = await live.http.post("/email/verify", headers=zed, json={"otp": mail.code})
    assert verified.status_code == 200, verified.text
    assert verified.json()["emailVerifiedAt"] is not None
    assert (await live.http.get("/profile", headers=zed)).json()["emailVerifiedAt"] is not None
    # Verified once: no more codes, and the used one is spent.
    assert_error(
        await live.http.post("/email/send", headers=zed, json={}), 409, "email_already_verified"
    )
    # The store kept only the code's digest, and the sent mail's body is gone.
    [stored] = (await live.services.store.list_mail()).items
    assert stored.sent_at is not None
    assert mail.code not in stored.text + stored.html


async def test_forgot_and_reset_by_the_mailed_code(live: Live, mailbox: Mailbox) -> None:
    old_token = await live.login(ANN)
    async with connect(live, old_token) as socket:
        await socket.ping()
        code = await reset_code(live, mailbox, ANN)
        reset = await live.http.post(
            "/password/reset", json={"email": ANN, "otp": code, "newPassword": NEW_PASSWORD}
        )
        assert reset.status_code == 200, reset.text
        # Like signing out: the live connection closes with 4401.
        assert (await socket.closed()).code == 4401
    # The old token and the old password are refused; the new password works.
    assert_error(await live.http.get("/profile", headers=bearer(old_token)), 401, "unauthorized")
    refused = await live.http.post("/auth/login", json={"email": ANN, "password": DEMO_PASSWORD})
    assert refused.status_code == 401
    fresh = await live.login(ANN, NEW_PASSWORD)
    assert (await live.http.get("/profile", headers=bearer(fresh))).status_code == 200
    # The code worked once.
    again = await live.http.post(
        "/password/reset", json={"email": ANN, "otp": code, "newPassword": "another-one-22"}
    )
    assert_error(again, 400, "invalid_code")


async def test_update_revokes_every_other_token_keeps_the_callers_and_answers_a_fresh_one(
    live: Live,
) -> None:
    first_token, second_token = await live.login(ANN), await live.login(ANN)
    first, second = bearer(first_token), bearer(second_token)
    body = {"oldPassword": DEMO_PASSWORD, "newPassword": NEW_PASSWORD}
    mismatch = await live.http.post(
        "/password/update", headers=first, json={**body, "confirmPassword": "something-else"}
    )
    assert_error(mismatch, 400, "invalid_body")
    wrong_old = await live.http.post(
        "/password/update",
        headers=first,
        json={**body, "oldPassword": "not-it-at-all", "confirmPassword": NEW_PASSWORD},
    )
    assert_error(wrong_old, 400, "wrong_password")
    short = await live.http.post(
        "/password/update",
        headers=first,
        json={**body, "newPassword": "short", "confirmPassword": "short"},
    )
    assert_error(short, 400, "invalid_body")  # the rules of registration

    async with connect(live, first_token) as kept, connect(live, second_token) as other:
        await kept.ping()
        await other.ping()
        updated = await live.http.post(
            "/password/update", headers=first, json={**body, "confirmPassword": NEW_PASSWORD}
        )
        # Like signing out, for every connection but the caller's token's.
        other_closed = (await other.closed()).code
        await kept.ping()
    assert updated.status_code == 200, updated.text
    assert other_closed == 4401
    assert updated.json()["user"]["email"] == ANN
    # The caller's token keeps working (the original front ends keep using it); the others not.
    assert (await live.http.get("/profile", headers=first)).status_code == 200
    assert_error(await live.http.get("/profile", headers=second), 401, "unauthorized")
    fresh = bearer(updated.json()["token"])
    assert (await live.http.get("/profile", headers=fresh)).status_code == 200
    await live.login(ANN, NEW_PASSWORD)

    # A second change made with the fresh token: the first caller's token goes now.
    again = await live.http.post(
        "/password/update",
        headers=fresh,
        json={
            "oldPassword": NEW_PASSWORD,
            "newPassword": "a-third-one-33",
            "confirmPassword": "a-third-one-33",
        },
    )
    assert again.status_code == 200, again.text
    assert_error(await live.http.get("/profile", headers=first), 401, "unauthorized")
    assert (await live.http.get("/profile", headers=fresh)).status_code == 200


async def test_confirm_checks_the_password_of_the_signed_in_user(live: Live) -> None:
    ann = bearer(await live.login(ANN))
    right = await live.http.post("/password/confirm", headers=ann, json={"password": DEMO_PASSWORD})
    assert right.status_code == 200, right.text
    wrong = await live.http.post("/password/confirm", headers=ann, json={"password": "nope"})
    assert_error(wrong, 400, "wrong_password")
    anonymous = await live.http.post("/password/confirm", json={"password": DEMO_PASSWORD})
    assert_error(anonymous, 401, "unauthorized")


async def test_a_report_reaches_the_support_address_with_reply_to(
    live: Live, mailbox: Mailbox
) -> None:
    uma = bearer(await live.login(UMA))
    body = {
        "email": "uma.private@example.org",
        "subject": "Broken <b>tag</b>",
        "message": "Hi\n<x>",
    }
    response = await live.http.post("/email/report", headers=uma, json=body)
    assert response.status_code == 200, response.text
    support = live.services.settings.support_email
    [report] = await mailbox.wait_to(support)
    assert report.message["Reply-To"] == "uma.private@example.org"
    assert report.message["Subject"] == "[Report] Broken <b>tag</b>"
    assert UMA in report.text
    assert "Hi\n<x>" in report.text
    assert "&lt;x&gt;" in report.html
    assert "<x>" not in report.html


async def test_a_header_injection_in_the_subject_is_refused(live: Live, mailbox: Mailbox) -> None:
    uma = bearer(await live.login(UMA))
    for subject in ("Hello\r\nBcc: victim@example.com", "Hello\nBcc: x@example.com", "a\x00b"):
        body = {"email": "uma@example.org", "subject": subject, "message": "m"}
        response = await live.http.post("/email/report", headers=uma, json=body)
        assert_error(response, 400, "invalid_body")
    assert await live.services.store.due_mail(utcnow() + timedelta(days=1)) == []
    assert (await live.services.store.list_mail()).items == []


async def test_forgot_answers_alike_for_unknown_emails_and_mails_nothing(
    live: Live, mailbox: Mailbox
) -> None:
    known = await live.http.post("/password/forgot", json={"email": ANN})
    unknown = await live.http.post("/password/forgot", json={"email": "nobody@example.com"})
    customer = await live.http.post(
        "/password/forgot", json={"email": "nobody@customers.switchboard.invalid"}
    )
    for other in (unknown, customer):
        assert (other.status_code, other.content) == (known.status_code, known.content)
        assert dict(other.headers) | {"date": ""} == dict(known.headers) | {"date": ""}
    await mailbox.wait_to(ANN)
    stored = (await live.services.store.list_mail()).items
    assert [m.recipient for m in stored] == [ANN]
    # and a reset for the unknown address is refused exactly like a wrong code
    wrong = await live.http.post(
        "/password/reset", json={"email": ANN, "otp": "000000", "newPassword": NEW_PASSWORD}
    )
    nobody = await live.http.post(
        "/password/reset",
        json={"email": "nobody@example.com", "otp": "000000", "newPassword": NEW_PASSWORD},
    )
    assert (nobody.status_code, nobody.content) == (wrong.status_code, wrong.content)


async def test_six_wrong_tries_end_a_code(live: Live, mailbox: Mailbox) -> None:
    code = await reset_code(live, mailbox, ANN)
    wrong = f"{(int(code) + 1) % 1_000_000:06d}"
    body = {"email": ANN, "newPassword": NEW_PASSWORD}
    for _ in range(5):
        response = await live.http.post("/password/reset", json={**body, "otp": wrong})
        assert_error(response, 400, "invalid_code")
    # the sixth try, with the right code, is refused too: a new code is needed
    sixth = await live.http.post("/password/reset", json={**body, "otp": code})
    assert_error(sixth, 400, "invalid_code")
    new_code = await reset_code(live, mailbox, ANN, count=2)
    assert (await live.http.post("/password/reset", json={**body, "otp": new_code})).is_success


async def test_an_expired_code_and_an_earlier_code_are_refused(
    live: Live, mailbox: Mailbox
) -> None:
    first = await reset_code(live, mailbox, ANN)
    second = await reset_code(live, mailbox, ANN, count=2)
    body = {"email": ANN, "newPassword": NEW_PASSWORD}
    if first != second:  # a new code replaces the earlier one
        assert_error(
            await live.http.post("/password/reset", json={**body, "otp": first}),
            400,
            "invalid_code",
        )
    # A code whose ten minutes have passed (stored as issued, with its expiry moved back):
    found = live.services
    ann = await found.store.get_user_by_email(ANN)
    assert ann is not None
    code, stored = found.codes.new(ann.id, CodePurpose.RESET_PASSWORD)
    expired = dataclasses.replace(stored, expires_at=utcnow() - timedelta(seconds=1))
    [mail] = (await found.store.list_mail(limit=1)).items
    # A fresh id: an id's last hex digits are the process's random suffix, so one edited there
    # collided with the mail it was copied from in every process whose suffix ends in that digit.
    await found.store.issue_code(expired, dataclasses.replace(mail, id=new_id()))
    assert_error(
        await live.http.post("/password/reset", json={**body, "otp": code}), 400, "invalid_code"
    )
    await live.login(ANN)  # the password is unchanged


async def test_malformed_bodies_are_refused_with_details(live: Live) -> None:
    ann = bearer(await live.login(ANN))
    cases: list[tuple[str, dict[str, str] | None, object]] = [
        ("/password/forgot", None, {"email": "not-an-email"}),
        ("/password/forgot", None, {"email": "a@example.com", "extra": 1}),
        ("/password/forgot", None, ["a@example.com"]),
        ("/password/reset", None, {"email": ANN, "otp": "12345", "newPassword": NEW_PASSWORD}),
        ("/password/reset", None, {"email": ANN, "otp": "12345a", "newPassword": NEW_PASSWORD}),
        ("/password/reset", None, {"email": ANN, "otp": "123456", "newPassword": "short"}),
        ("/password/reset", None, {"email": ANN, "otp": 123456, "newPassword": NEW_PASSWORD}),
        ("/password/confirm", ann, {}),
        ("/email/report", ann, {"email": "a@example.com", "subject": "", "message": "m"}),
        ("/email/report", ann, {"email": "a@example.com", "subject": "s"}),
        ("/email/verify", ann, {"otp": "1234567"}),
    ]
    for path, headers, body in cases:
        response = await live.http.post(path, headers=headers, json=body)
        error = assert_error(response, 400, "invalid_body")
        assert error["details"], (path, body)
    not_json = await live.http.post(
        "/password/forgot", content=b"{", headers={"Content-Type": "application/json"}
    )
    assert not_json.status_code == 400
    assert_error(
        await live.http.post("/email/send", headers=ann, json={"email": UMA}), 403, "not_your_email"
    )


async def test_code_requests_are_throttled_per_address_and_client(
    live: Live, mailbox: Mailbox
) -> None:
    limit = live.services.settings.code_max_requests
    for _ in range(limit):
        assert (await live.http.post("/password/forgot", json={"email": ANN})).is_success
    await mailbox.wait_to(ANN, limit)
    throttled = await live.http.post("/password/forgot", json={"email": ANN})
    assert_error(throttled, 429, "too_many_attempts")
    # An unknown address is counted and throttled alike, so the 429 tells nothing either.
    for _ in range(limit):
        await live.http.post("/password/forgot", json={"email": "ghost@example.com"})
    ghost = await live.http.post("/password/forgot", json={"email": "ghost@example.com"})
    assert (ghost.status_code, ghost.content) == (throttled.status_code, throttled.content)
    assert ghost.headers["Retry-After"].isdigit()


@pytest.mark.parametrize("what", ["code requests", "code tries", "reports"])
async def test_a_throttled_code_request_says_exactly_when_to_come_back(
    live: Live, mailbox: Mailbox, what: str
) -> None:
    """Each cap answers 429 with Retry-After; a window after the latest entry the next one
    is accepted, a second sooner it is not."""
    clock = Clock()
    live.services.code_throttle.clock = clock
    settings = live.services.settings
    ann = bearer(await live.login(ANN))
    send: Callable[[], Awaitable[httpx.Response]]
    match what:
        case "code requests":
            cap, accepted = settings.code_max_requests, 200

            def send() -> Awaitable[httpx.Response]:
                return live.http.post("/password/forgot", json={"email": ANN})

        case "code tries":
            cap, accepted = settings.code_max_requests * settings.code_max_wrong_tries, 400
            body = {"email": "nobody@example.com", "otp": "000000", "newPassword": NEW_PASSWORD}

            def send() -> Awaitable[httpx.Response]:
                return live.http.post("/password/reset", json=body)

        case _:
            cap, accepted = settings.code_max_requests, 200
            report = {"email": ANN, "subject": "help", "message": "it broke"}

            def send() -> Awaitable[httpx.Response]:
                return live.http.post("/email/report", headers=ann, json=report)

    for _ in range(cap):
        assert (await send()).status_code == accepted
        clock.advance(60)  # the wait counts from the latest entry, not the first
    clock.advance(-60)
    window = settings.code_window_seconds
    throttled = await send()
    assert_error(throttled, 429, "too_many_attempts")
    assert throttled.headers["Retry-After"] == str(window)
    clock.advance(window - 1)
    again = await send()
    assert_error(again, 429, "too_many_attempts")
    assert again.headers["Retry-After"] == "1"
    clock.advance(1)
    assert (await send()).status_code == accepted


async def test_an_admin_who_changes_an_address_makes_it_unverified(
    live: Live, mailbox: Mailbox
) -> None:
    zed = await register(live)
    await live.http.post("/email/send", headers=zed, json={"email": ZED["email"]})
    [mail] = await mailbox.wait_to(ZED["email"])
    verified = await live.http.post("/email/verify", headers=zed, json={"otp": mail.code})
    assert verified.json()["emailVerifiedAt"] is not None
    admin = bearer(await live.login("admin@switchboard.example", admin=True))
    renamed = await live.http.put(
        f"/admin/users/{verified.json()['id']}", headers=admin, json={"name": "Zed Z."}
    )
    assert renamed.json()["emailVerifiedAt"] == verified.json()["emailVerifiedAt"]
    changed = await live.http.put(
        f"/admin/users/{verified.json()['id']}", headers=admin, json={"email": "zed2@example.com"}
    )
    assert changed.json()["emailVerifiedAt"] is None
