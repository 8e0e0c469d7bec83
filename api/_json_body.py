"""Request bodies' JSON: nesting deeper than any request of ours needs is a 400.

Python's parser recurses once per level: a 2 kB body of `[[[[...` exhausts the interpreter's
recursion limit and was a 500. Here a body is refused before that (the parser's RecursionError)
and after it (a walk of what was parsed), so the answer does not depend on the recursion limit.
"""

from __future__ import annotations

from typing import Any

from quart import Quart
from quart.json.provider import JSONProvider

from api._errors import ApiError

MAX_DEPTH = 32
_TOO_DEEP = f"the request body is nested more than {MAX_DEPTH} levels deep"


def _depth_within(value: Any, limit: int) -> bool:
    level: list[Any] = [value]
    for _ in range(limit + 1):
        inner: list[Any] = []
        for item in level:
            if isinstance(item, dict):
                inner.extend(item.values())
            elif isinstance(item, list):
                inner.extend(item)
        if not inner:
            return True
        level = inner
    return False


def limit_body_depth(app: Quart) -> None:
    """Make the app's JSON provider (quart-schema's, once installed) refuse bodies nested
    deeper than `MAX_DEPTH`; its answers are encoded as before."""
    installed: type[JSONProvider] = type(app.json)

    class BodyJSON(installed):  # type: ignore[valid-type,misc]
        def loads(self, s: str | bytes, **kwargs: Any) -> Any:
            try:
                value = super().loads(s, **kwargs)
            except RecursionError:
                raise ApiError(400, "too_deep", _TOO_DEEP) from None
            if not _depth_within(value, MAX_DEPTH):
                raise ApiError(400, "too_deep", _TOO_DEEP)
            return value

    app.json = BodyJSON(app)
