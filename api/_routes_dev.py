"""Development helpers, as the original had: health, seeding, and shop-token minting for demos.

Only /dev/test is served in production mode; the others answer 404 there.
"""

from __future__ import annotations

from quart import Blueprint, Response
from quart_schema import document_response, validate_request

from api._errors import ApiError
from api._respond import respond
from api._schemas import CustomerTokenBody, MessageOut, TokenOut
from api._seed import seed_demo_data
from api._services import services

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
