"""Responses: pydantic models dumped camelCase as JSON."""

from __future__ import annotations

from pydantic import BaseModel
from quart import Response


def respond(model: BaseModel, status: int = 200) -> Response:
    return Response(
        model.model_dump_json(by_alias=True), status=status, content_type="application/json"
    )
