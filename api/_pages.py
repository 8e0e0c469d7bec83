"""Pagination, the same on every list.

A list takes `limit` (1..100) and `cursor` in the query string. Without `limit` it answers what
the original backend answered, which was the whole list, up to `WHOLE_LIST` items (the two
dashboards' recent chats: 4; notifications: 20, as there). Its body is the JSON array of the
page's items (the original backend answered lists with bare arrays; notifications keep their
original envelope), and the cursor of the next page comes back in the `X-Next-Cursor` header,
absent on the last page. A cursor is opaque to clients: send back what the header said. Each list
has one fixed order (by id, which follows creation, or by a position such as a message's seq),
so pages neither skip nor repeat items, except where a list is live by nature (the queue) or
newest first with new items arriving (notifications), which the route documents.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Annotated, ClassVar, TypeVar

from pydantic import BaseModel, Field
from pydantic.json_schema import SkipJsonSchema
from quart import Response

from api._paths import ID_PATTERN
from api._respond import respond
from api._schemas import WireModel

T = TypeVar("T")
K = TypeVar("K", str, int)

MAX_LIMIT = 100
WHOLE_LIST = 1000
NEXT_CURSOR = "X-Next-Cursor"

Limit = Annotated[int, Field(ge=1, le=MAX_LIMIT, description="items per page, 1 to 100")]
# Left out: the list's own default (`size`), which may be larger than any `limit` one can ask.
OptionalLimit = Annotated[
    Limit | SkipJsonSchema[None],
    Field(
        description=f"items per page, 1 to {MAX_LIMIT}; without it, the whole list up to "
        f"{WHOLE_LIST} items (recent chats: 4, notifications: 20)"
    ),
]


class _Sized(WireModel):
    limit: OptionalLimit = None
    # How many items a page has when `limit` is left out.
    default_size: ClassVar[int] = WHOLE_LIST

    @property
    def size(self) -> int:
        return self.limit if self.limit is not None else self.default_size


class PageQuery(_Sized):
    """A page of a list ordered by id."""

    cursor: Annotated[
        str | None,
        Field(pattern=ID_PATTERN, description="X-Next-Cursor of the page before"),
    ] = None


class RecentQuery(PageQuery):
    """The dashboards' recent chats: 4 without `limit`, as the original's."""

    default_size: ClassVar[int] = 4


class NumberedPageQuery(_Sized):
    """A page of a list ordered by a number (a message's seq, a queue position, an offset)."""

    cursor: Annotated[
        str | None, Field(pattern=r"^[0-9]{1,9}$", description="X-Next-Cursor of the page before")
    ] = None

    @property
    def after(self) -> int:
        return int(self.cursor or 0)


class NotificationQuery(NumberedPageQuery):
    """Notifications: 20 without `limit`, as the original's."""

    default_size: ClassVar[int] = 20


class PageHeaders(BaseModel):
    """The response headers of a list (documentation only)."""

    x_next_cursor: str | None = Field(
        default=None, description="cursor of the next page; absent on the last page"
    )


def page_after(
    items: Sequence[T], key: Callable[[T], K], after: K | None, limit: int
) -> tuple[list[T], K | None]:
    """The page of `items` (sorted by `key`) after the cursor `after`, and the next cursor."""
    rest = [item for item in items if after is None or key(item) > after]
    page = rest[:limit]
    return page, key(page[-1]) if len(rest) > limit else None


def page_response(body: BaseModel, next_cursor: str | int | None) -> Response:
    response = respond(body)
    if next_cursor is not None:
        response.headers[NEXT_CURSOR] = str(next_cursor)
    return response
