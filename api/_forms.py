"""Form bodies where the original took them: `multipart/form-data` (with an image file) and
urlencoded forms, beside JSON, on the routes marked `takes_forms`.

A multipart request to such a route may be larger than SWITCHBOARD_MAX_BODY_BYTES by
SWITCHBOARD_MAX_IMAGE_BYTES: the limit is chosen when the request is created (before its body is
read, as Quart enforces it while the body arrives), from the route it will reach.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any

from pydantic import BaseModel, ValidationError
from quart import Quart, request
from quart_schema import RequestSchemaValidationError
from werkzeug.datastructures import Headers
from werkzeug.exceptions import HTTPException

from api._errors import ApiError
from api._uploads import store_image

FORM_TYPES = frozenset({"multipart/form-data", "application/x-www-form-urlencoded"})
IMAGE_FIELD = "image"  # the original's multer field
_TAKES_FORMS = "takes_forms"
ViewFunction = Callable[..., Awaitable[Any]]


def takes_forms(
    model: type[BaseModel], *, into: str = "avatar"
) -> Callable[[ViewFunction], ViewFunction]:
    """Over a `validate_request(model)` view: a form body is validated against the same model,
    its `image` file stored and its URL put in `into`; any other body goes to the view as before."""

    def decorate(view: ViewFunction) -> ViewFunction:
        unvalidated: ViewFunction = view.__wrapped__  # type: ignore[attr-defined]

        @functools.wraps(view)
        async def formed(*args: Any, **kwargs: Any) -> Any:
            if request.mimetype not in FORM_TYPES:
                return await view(*args, **kwargs)
            form, files = await request.form, await request.files
            fields: dict[str, Any] = {k: v for k, v in form.items() if k != IMAGE_FIELD}
            if form.get(IMAGE_FIELD):
                raise ApiError(400, "invalid_body", "image must be a file (multipart/form-data)")
            try:
                data = model.model_validate(fields)
            except ValidationError as error:
                raise RequestSchemaValidationError(error) from None
            upload = files.get(IMAGE_FIELD)
            if upload is not None and upload.filename:
                data = data.model_copy(update={into: await store_image(upload)})
            return await unvalidated(*args, data=data, **kwargs)

        setattr(formed, _TAKES_FORMS, True)
        return formed

    return decorate


def allow_image_bodies(app: Quart, max_image_bytes: int) -> None:
    """Requests carrying a multipart body to a `takes_forms` route may be larger by an image."""
    base = app.request_class

    class FormRequest(base):  # type: ignore[valid-type,misc]
        def __init__(self, method: str, scheme: str, path: str, query_string: bytes,
                     headers: Headers, *args: Any, max_content_length: int | None = None,
                     **kwargs: Any) -> None:  # fmt: skip
            if (
                max_content_length is not None
                and headers.get("Content-Type", "").startswith("multipart/form-data")
                and _takes_forms(app, method, path)
            ):
                max_content_length += max_image_bytes
            super().__init__(
                method, scheme, path, query_string, headers, *args,
                max_content_length=max_content_length, **kwargs,
            )  # fmt: skip
            self.max_content_length = max_content_length

    app.request_class = FormRequest


def _takes_forms(app: Quart, method: str, path: str) -> bool:
    try:
        endpoint, _ = app.url_map.bind("switchboard").match(path, method=method)
    except HTTPException:
        return False
    return bool(getattr(app.view_functions.get(str(endpoint)), _TAKES_FORMS, False))
