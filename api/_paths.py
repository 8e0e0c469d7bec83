"""Path parameters: record ids, and values from a short list (`/chats/agent/{chatId}/{status}`)."""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum
from typing import TypeVar

from werkzeug.routing import AnyConverter, BaseConverter, Map

from api._errors import ApiError

E = TypeVar("E", bound=StrEnum)

ID_PATTERN = "^[0-9a-f]{24}$"


class IdConverter(BaseConverter):
    """`<id:name>`: a record id, 24 hex digits (store.new_id). Anything else matches no route, so
    `/admin/users/approve` is never also `/admin/users/{userId}` with a strange id."""

    regex = ID_PATTERN.strip("^$")


class OneOfConverter(AnyConverter):
    """`<oneof(a, b):name>`: documented as the enum [a, b] (quart-schema reads an AnyConverter's
    items), yet matching any segment, so that the handler answers another value with a 400 naming
    the choices rather than the router's bare 404 for a path that does not exist."""

    def __init__(self, map: Map, *items: str) -> None:
        super().__init__(map, *items)
        self.regex = "[^/]+"


CONVERTERS = {"id": IdConverter, "oneof": OneOfConverter}


def choice(name: str, value: str, allowed: Sequence[E]) -> E:
    for option in allowed:
        if value == option.value:
            return option
    raise ApiError(
        400,
        f"invalid_{name}",
        f"{name} {value!r} is not one of: {', '.join(option.value for option in allowed)}",
    )
