"""Profile images: stored in the blob store from a form's file, served back under `/uploads/`."""

from __future__ import annotations

from quart import Blueprint, Response, request
from quart_schema import hide
from werkzeug.datastructures import FileStorage

from api._blobs import blob_key, sniff_image
from api._errors import ApiError
from api._services import services

uploads = Blueprint("uploads", __name__)


async def store_image(upload: FileStorage) -> str:
    """Store an uploaded image; its absolute URL (the original stored its image host's URL, and
    the front ends put it in an <img> on their own origin)."""
    limit = services().settings.max_image_bytes
    data = upload.stream.read(limit + 1)
    if len(data) > limit:
        raise ApiError(413, "image_too_large", f"the image is larger than {limit} bytes")
    key = await services().blobs.put(data, sniff_image(data))
    return f"{request.host_url.rstrip('/')}/uploads/{key}"


async def forget_image(old: str | None, new: str | None) -> None:
    """The image a profile no longer shows, if it was one of ours."""
    key = blob_key(old)
    if key is not None and old != new:
        await services().blobs.delete(key)


@uploads.get("/uploads/<key>")
@hide  # image bytes, not JSON: out of the API's description, as /docs and /metrics are
async def served(key: str) -> Response:
    blob = await services().blobs.get(key)
    if blob is None:
        raise ApiError(404, "not_found", "no such upload")
    return Response(
        blob.data,
        content_type=blob.content_type,
        headers={
            # Only ever an image of the sniffed type: browsers must not guess another.
            "X-Content-Type-Options": "nosniff",
            "Content-Security-Policy": "default-src 'none'; sandbox",
            "Cache-Control": "public, max-age=31536000, immutable",
        },
    )
