"""Development helpers, as the original had: health, seeding, and shop-token minting for demos.

Only /dev/test is served in production mode; the others answer 404 there.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import RootModel
from quart import Blueprint, Response
from quart_schema import document_response, validate_querystring, validate_request

from api._errors import ApiError
from api._pages import PageHeaders, PageQuery, page_response
from api._respond import respond
from api._schemas import CustomerTokenBody, MessageOut, TokenOut, WireModel
from api._seed import seed_demo_data
from api._services import services
from store import Mail

dev = Blueprint("dev", __name__)


def _development_only() -> None:
    if services().settings.production:
        raise ApiError(404, "not_found", "no such endpoint in production mode")


@dev.get("/dev/test")
@document_response(MessageOut)
async def health() -> Response:
    return respond(MessageOut(message="switchboard is running"))


@dev.get("/dev/seed")
@document_response(MessageOut)
async def seed() -> Response:
    _development_only()
    found = services()
    report = await seed_demo_data(found.store, found.passwords, found.system)
    return respond(
        MessageOut(message=f"seeded: {report.created} created, {report.existing} already there")
    )


@dev.post("/dev/customer-token")
@validate_request(CustomerTokenBody)
@document_response(TokenOut)
async def customer_token(data: CustomerTokenBody) -> Response:
    _development_only()
    return respond(TokenOut(token=services().tokens.mint_customer(data.customer_id, data.name)))


class MailOut(WireModel):
    """A mail of the outbox; a sent one has no body any more."""

    id: str
    to: str
    reply_to: str | None
    subject: str
    text: str
    html: str
    created_at: datetime
    attempts: int
    next_attempt_at: datetime
    sent_at: datetime | None
    last_error: str | None

    @classmethod
    def of(cls, mail: Mail) -> MailOut:
        return cls(
            id=mail.id,
            to=mail.recipient,
            reply_to=mail.reply_to,
            subject=mail.subject,
            text=mail.text,
            html=mail.html,
            created_at=mail.created_at,
            attempts=mail.attempts,
            next_attempt_at=mail.next_attempt_at,
            sent_at=mail.sent_at,
            last_error=mail.last_error,
        )


class MailList(RootModel[list[MailOut]]):
    pass


@dev.get("/dev/mail")
@validate_querystring(PageQuery)
@document_response(MailList, 200, PageHeaders)
async def mail(query_args: PageQuery) -> Response:
    """The mail outbox, newest first: where codes are read when no SMTP server is set."""
    _development_only()
    page = await services().store.list_mail(limit=query_args.size, cursor=query_args.cursor)
    return page_response(MailList([MailOut.of(m) for m in page.items]), page.next_cursor)
