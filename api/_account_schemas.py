"""The wire shapes of accounts by email (verification, the report form, passwords)."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, model_validator

from api._codes import CODE_PATTERN
from api._schemas import Email, Password, UserOut, WireModel

Code = Annotated[
    str,
    Field(pattern=CODE_PATTERN, description="the 6-digit code from the mail", examples=["528966"]),
]
# A header line: no control characters at all, so nothing can end the header and add another
# (`\r\nBcc: ...`).
Subject = Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[^\x00-\x1f\x7f]+$")]
# 4,000 characters: even escaped as JSON (12 bytes for a character outside the BMP) the body
# stays under the default SWITCHBOARD_MAX_BODY_BYTES, so a valid report is never a 413.
ReportText = Annotated[str, Field(min_length=1, max_length=4_000)]
GivenPassword = Annotated[str, Field(min_length=1, max_length=256)]


class SendCodeBody(WireModel):
    """`email`, if given, must be the account's own address."""

    email: Email | None = None


class VerifyEmailBody(WireModel):
    otp: Code
    email: Email | None = None


class ReportBody(WireModel):
    email: Email = Field(description="where the support team should answer (Reply-To)")
    subject: Subject
    message: ReportText


class ForgotBody(WireModel):
    email: Email


class ResetBody(WireModel):
    email: Email
    otp: Code
    new_password: Password


class ConfirmBody(WireModel):
    password: GivenPassword


class UpdatePasswordBody(WireModel):
    old_password: GivenPassword
    new_password: Password
    confirm_password: str

    @model_validator(mode="after")
    def _passwords_match(self) -> UpdatePasswordBody:
        if self.new_password != self.confirm_password:
            raise ValueError("newPassword and confirmPassword differ")
        return self


class PasswordChangedOut(WireModel):
    """Every earlier token of the account is revoked; `token` is a fresh one for the caller."""

    message: str
    user: UserOut
    token: str
