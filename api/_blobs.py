"""Uploaded images: a small blob-store interface and its default, a local directory.

What is stored is only ever served back as an image of the type sniffed from its first bytes
(PNG, JPEG or WebP; anything else is refused before it is stored), under `/uploads/<key>` with
`nosniff` and a sandboxing CSP, never run and never listed. Keys are random, so an upload's URL
is not guessable from another's.
"""

from __future__ import annotations

import os
import re
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import trio

from api._errors import ApiError

IMAGE_TYPES = {"png": "image/png", "jpg": "image/jpeg", "webp": "image/webp"}
_KEY = re.compile(r"[0-9a-f]{32}\.(png|jpg|webp)")


@dataclass(frozen=True, slots=True)
class Blob:
    data: bytes
    content_type: str


class BlobStore(Protocol):
    async def put(self, data: bytes, extension: str) -> str:
        """Store `data` under a new key ending in `.extension`; the key."""
        ...

    async def get(self, key: str) -> Blob | None: ...

    async def delete(self, key: str) -> None:
        """Forget `key`; a missing key is no error."""
        ...


def sniff_image(data: bytes) -> str:
    """The extension of an image of an accepted type, from its bytes (never from its name or its
    declared type, which the sender chooses); a 400 for anything else."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if data.startswith(b"\xff\xd8\xff"):
        return "jpg"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    raise ApiError(400, "unsupported_image", "the image must be a PNG, JPEG or WebP file")


def blob_key(url: str | None) -> str | None:
    """The key of one of our uploads' URL, None for any other URL."""
    if url is None:
        return None
    key = url.rpartition("/uploads/")[2]
    return key if "/uploads/" in url and _KEY.fullmatch(key) else None


class DirectoryBlobs:
    """Blobs as files of one directory: written to a temporary name and renamed, so a reader
    never sees half a file; mode 0o600 (never executable)."""

    def __init__(self, directory: Path) -> None:
        self._directory = directory

    async def put(self, data: bytes, extension: str) -> str:
        assert extension in IMAGE_TYPES
        key = f"{secrets.token_hex(16)}.{extension}"
        await trio.to_thread.run_sync(self._write, key, data)
        return key

    async def get(self, key: str) -> Blob | None:
        match = _KEY.fullmatch(key)
        if match is None:
            return None
        try:
            data = await trio.to_thread.run_sync((self._directory / key).read_bytes)
        except FileNotFoundError:
            return None
        return Blob(data, IMAGE_TYPES[match.group(1)])

    async def delete(self, key: str) -> None:
        if _KEY.fullmatch(key):
            await trio.to_thread.run_sync(lambda: (self._directory / key).unlink(missing_ok=True))

    def _write(self, key: str, data: bytes) -> None:
        self._directory.mkdir(parents=True, exist_ok=True)
        partial = self._directory / f".{key}.partial"
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as file:
            file.write(data)
        partial.rename(self._directory / key)
