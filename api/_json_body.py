"""Request bodies' JSON: nesting deeper than any request of ours needs is a 400.

Python's parser recurses once per level: a 2 kB body of `[[[[...` exhausts the interpreter's
recursion limit and was a 500. Here a body nested too deeply is refused before the parser sees
it (`nested_deeper_than`), so the answer does not depend on the recursion limit.
"""

from __future__ import annotations

from typing import Any

from quart import Quart
from quart.json.provider import JSONProvider

from api._errors import ApiError
from api._json_depth import nested_deeper_than

MAX_DEPTH = 32
_TOO_DEEP = f"the request body is nested more than {MAX_DEPTH} levels deep"


def limit_body_depth(app: Quart) -> None:
    """Make the app's JSON provider (quart-schema's, once installed) refuse bodies nested
    deeper than `MAX_DEPTH`; its answers are encoded as before."""
    installed: type[JSONProvider] = type(app.json)

    class BodyJSON(installed):  # type: ignore[valid-type,misc]
        def loads(self, s: str | bytes, **kwargs: Any) -> Any:
            if nested_deeper_than(s, MAX_DEPTH):
                raise ApiError(400, "too_deep", _TOO_DEEP)
            return super().loads(s, **kwargs)

    app.json = BodyJSON(app)
