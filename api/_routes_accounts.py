"""Accounts by email: verifying an address, the report form, and passwords forgotten, reset,
confirmed and changed. The original backend's paths and bodies.

Nothing here tells a caller whether an email has an account: `/password/forgot` answers the
same, after the same store work, for every address, and `/password/reset` refuses a wrong code
and an unknown address alike. Codes are throttled per address and per client, and each code
takes at most `code_max_wrong_tries` wrong tries.
"""

from __future__ import annotations

import trio
from quart import Blueprint, Response
from quart_schema import document_response, validate_request

from api._account_schemas import (
    ConfirmBody,
    ForgotBody,
    PasswordChangedOut,
    ReportBody,
    ResetBody,
    SendCodeBody,
    UpdatePasswordBody,
    VerifyEmailBody,
)
from api._client import current_client
from api._errors import ApiError
from api._guard import current_principal, requires
from api._mail import code_mail, report_mail
from api._respond import respond
from api._schemas import MessageOut, UserOut
from api._services import services
from api._signin_throttle import Throttled, too_many_sign_ins
from store import CodePurpose, Role, User, new_id, utcnow

accounts = Blueprint("accounts", __name__)

STAFF = (Role.USER, Role.AGENT, Role.ADMIN)

_FORGOT_ANSWER = (
    "if an account has this email, a code to reset its password is on its way; it works once,"
    " for {minutes} minutes"
)
_BAD_CODE = (
    "the code is wrong, used or expired (a code works once, for {minutes} minutes, and allows"
    " {tries} tries); ask for a new one"
)


def _minutes() -> int:
    return services().settings.code_ttl_seconds // 60


def _mail_leaves() -> None:
    """Production without an SMTP server cannot send mail: say so instead of keeping it."""
    found = services()
    if found.settings.production and not found.outbox.delivers:
        raise ApiError(
            503,
            "mail_unavailable",
            "this server sends no mail: its operator has not set SWITCHBOARD_SMTP_URL",
        )


def _request_keys(email: str) -> tuple[str, str]:
    return (f"code-request:email:{email.lower()}", f"code-request:addr:{current_client()}")


def _try_keys() -> tuple[str]:
    return (f"code-try:addr:{current_client()}",)


async def _issue(user: User | None, email: str, purpose: CodePurpose) -> None:
    """Count a code request for `email` and the client, and, if `user`, store a code and its
    mail. Both run at once: on SQLite one transaction either way, so an unknown address costs
    the same time as a known one."""
    found = services()
    keys = _request_keys(email)
    await found.code_throttle.check(keys, found.settings.code_max_requests, "code requests")
    code, stored = found.codes.new(user.id if user else new_id(), purpose)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(found.code_throttle.record, keys)
        if user is not None:
            mail = code_mail(user, purpose, code, stored.expires_at)
            nursery.start_soon(found.outbox.issue_code, stored, mail)


async def _use(user: User | None, purpose: CodePurpose, code: str) -> bool:
    """Whether `code` is the user's live code (then it is spent). Every try is counted per
    client; an unknown user's try costs the same store work as a wrong one."""
    found = services()
    settings = found.settings
    keys = _try_keys()
    await found.code_throttle.check(
        keys, settings.code_max_requests * settings.code_max_wrong_tries, "code tries"
    )
    user_id = user.id if user is not None else new_id()
    results: list[bool] = []

    async def use() -> None:
        results.append(
            await found.store.use_code(
                user_id,
                purpose,
                found.codes.digest(user_id, purpose, code),
                now=utcnow(),
                max_wrong_tries=settings.code_max_wrong_tries,
            )
        )

    async with trio.open_nursery() as nursery:
        nursery.start_soon(found.code_throttle.record, keys)
        nursery.start_soon(use)
    return user is not None and results == [True]


def _bad_code() -> ApiError:
    settings = services().settings
    return ApiError(
        400,
        "invalid_code",
        _BAD_CODE.format(minutes=_minutes(), tries=settings.code_max_wrong_tries),
    )


async def _check_password(user: User, password: str) -> None:
    """The sign-in throttle guards a signed-in password check too: a stolen token is no faster
    way to guess the password than the sign-in form."""
    found = services()

    async def verify() -> bool:
        return await found.passwords.verify(user.password_hash, password)

    try:
        right = await found.signins.check(user.email, current_client(), verify)
    except Throttled as throttled:
        raise too_many_sign_ins(throttled) from None
    if not right:
        raise ApiError(400, "wrong_password", "the password is not correct")


async def _new_password(
    user: User, password: str, reason: str, *, kept_token: str | None = None
) -> User:
    """Store the new password, which revokes every token of the user but `kept_token`, and
    close their live connections (4401) but those opened with it, as signing out does."""
    found = services()
    password_hash = await found.passwords.hash(password)
    changed = await found.store.set_password(user.id, password_hash, utcnow(), kept_token)
    found.system.sign_out(user.id, reason, keep_token=kept_token)
    return changed


# email


def _unverified_caller(email: str | None) -> User:
    """The signed-in user, whose address (`email`, if given, must be it) is not verified yet."""
    user = current_principal().user
    if email is not None and email != user.email:
        raise ApiError(
            403,
            "not_your_email",
            f"this is only for your account's own address ({user.email}); leave email out",
        )
    if user.email_verified_at is not None:
        raise ApiError(409, "email_already_verified", f"{user.email} is verified already")
    return user


@accounts.post("/email/send")
@requires(*STAFF)
@validate_request(SendCodeBody)
@document_response(MessageOut)
async def send_verification(data: SendCodeBody) -> Response:
    """Mail the signed-in user a code that verifies their email (POST /email/verify)."""
    user = _unverified_caller(data.email)
    _mail_leaves()
    await _issue(user, user.email, CodePurpose.VERIFY_EMAIL)
    return respond(
        MessageOut(
            message=f"a code is on its way to {user.email}; send it to /email/verify within"
            f" {_minutes()} minutes"
        )
    )


@accounts.post("/email/verify")
@requires(*STAFF)
@validate_request(VerifyEmailBody)
@document_response(UserOut)
async def verify_email(data: VerifyEmailBody) -> Response:
    """Verify the signed-in user's email with the mailed code; answers the profile."""
    user = _unverified_caller(data.email)
    if not await _use(user, CodePurpose.VERIFY_EMAIL, data.otp):
        raise _bad_code()
    verified = await services().store.mark_email_verified(user.id, user.email, utcnow())
    if verified is None:
        raise ApiError(409, "email_changed", "the account's email changed; ask for a new code")
    return respond(UserOut.of(verified))


@accounts.post("/email/report")
@requires(*STAFF)
@validate_request(ReportBody)
@document_response(MessageOut)
async def report(data: ReportBody) -> Response:
    """Mail a report to the support team; their answer goes to `email` (Reply-To)."""
    _mail_leaves()
    found = services()
    user = current_principal().user
    keys = (f"report:user:{user.id}",)
    await found.code_throttle.check(keys, found.settings.code_max_requests, "reports")
    support = found.settings.support_email
    mail = report_mail(support, user, data.email, data.subject, data.message)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(found.code_throttle.record, keys)
        nursery.start_soon(found.outbox.queue, mail)
    return respond(MessageOut(message="your report is on its way to the support team"))


# passwords


@accounts.post("/password/forgot")
@validate_request(ForgotBody)
@document_response(MessageOut)
async def forgot(data: ForgotBody) -> Response:
    """Mail a code to reset the password, if the email has an account. The answer is the same
    either way, and comes no sooner than `forgot_answer_seconds` after the request."""
    found = services()
    # What is left of the time after the work is waited out, so that the work for a known
    # address (a code and its mail to store) cannot be told from the time of the answer.
    answer_at = trio.current_time() + found.settings.forgot_answer_seconds
    _mail_leaves()
    user = await found.store.get_user_by_email(data.email)
    if user is not None and user.role is Role.CUSTOMER:
        user = None  # a shop's customers have no password here
    await _issue(user, data.email, CodePurpose.RESET_PASSWORD)
    await trio.sleep_until(answer_at)
    return respond(MessageOut(message=_FORGOT_ANSWER.format(minutes=_minutes())))


@accounts.post("/password/reset")
@validate_request(ResetBody)
@document_response(MessageOut)
async def reset(data: ResetBody) -> Response:
    """Set a new password with the mailed code. Every token of the account stops working and
    its live connections close (4401)."""
    user = await services().store.get_user_by_email(data.email)
    if user is not None and user.role is Role.CUSTOMER:
        user = None
    if not await _use(user, CodePurpose.RESET_PASSWORD, data.otp) or user is None:
        raise _bad_code()
    await _new_password(user, data.new_password, "the password was reset")
    return respond(MessageOut(message="password reset; sign in with the new one"))


@accounts.post("/password/confirm")
@requires(*STAFF)
@validate_request(ConfirmBody)
@document_response(MessageOut)
async def confirm(data: ConfirmBody) -> Response:
    """Check the signed-in user's password again, before a sensitive step."""
    await _check_password(current_principal().user, data.password)
    return respond(MessageOut(message="password confirmed"))


@accounts.post("/password/update")
@requires(*STAFF)
@validate_request(UpdatePasswordBody)
@document_response(PasswordChangedOut)
async def update(data: UpdatePasswordBody) -> Response:
    """Change the password. Every other token of the account stops working and its live
    connections close (4401); the caller's token and connections stay (the original front ends
    keep using it), and the answer also carries a fresh token."""
    principal = current_principal()
    user = principal.user
    await _check_password(user, data.old_password)
    changed = await _new_password(
        user, data.new_password, "the password was changed", kept_token=principal.jti
    )
    found = services()
    return respond(
        PasswordChangedOut(
            message="password changed; every other session is signed out",
            user=UserOut.of(changed),
            token=found.tokens.issue(changed),
        )
    )
