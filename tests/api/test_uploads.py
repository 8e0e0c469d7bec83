"""Form bodies and profile images, as the original took them (its Postman collection sends
multipart/form-data with an `image` file): stored in the blob store, served under /uploads/."""

from __future__ import annotations

import os
import struct
import zlib

from tests.api.support import ADMIN, ANN, UMA, assert_error, staff
from tests.conftest import Live


def png(width: int = 2, height: int = 2) -> bytes:
    """A real, decodable PNG."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    rows = b"".join(b"\x00" + b"\xff\x00\x00" * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00\xff\xd9"
WEBP = (
    b"RIFF\x1a\x00\x00\x00WEBPVP8L\x0d\x00\x00\x00"
    b"\x2f\x00\x00\x00\x10\x07\x10\x11\x11\x88\x88\xfe\x07\x00"
)


async def test_profile_takes_a_form_with_an_image_served_back_as_the_avatar(live: Live) -> None:
    ann = await staff(live, ANN)
    image = png()
    answer = await live.http.put(
        "/profile",
        headers=ann.headers,
        data={"name": "Ann Form", "phone": "01012345678"},
        files={"image": ("me.png", image, "image/png")},
    )
    assert answer.status_code == 200, answer.text
    profile = answer.json()
    assert (profile["name"], profile["phone"]) == ("Ann Form", "01012345678")
    url = profile["image"]
    assert profile["avatar"] == url
    assert url.startswith(f"{live.url}/uploads/")
    assert url.endswith(".png")

    served = await live.http.get(url)
    assert served.status_code == 200
    assert served.content == image
    assert served.headers["Content-Type"] == "image/png"
    assert served.headers["X-Content-Type-Options"] == "nosniff"
    assert "sandbox" in served.headers["Content-Security-Policy"]
    # Stored without any execute bit, in the uploads directory of its own.
    stored = live.services.settings.uploads_path / url.rpartition("/")[2]
    assert stored.read_bytes() == image
    assert os.stat(stored).st_mode & 0o111 == 0

    # A new image replaces it; the old one is gone.
    again = await live.http.put(
        "/profile", headers=ann.headers, files={"image": ("me.jpg", JPEG, "image/jpeg")}
    )
    assert again.status_code == 200, again.text
    assert again.json()["image"].endswith(".jpg")
    assert again.json()["name"] == "Ann Form"
    assert (await live.http.get(url)).status_code == 404
    assert (await live.http.get(again.json()["image"])).headers["Content-Type"] == "image/jpeg"


async def test_admin_profile_and_urlencoded_forms(live: Live) -> None:
    admin = await staff(live, ADMIN)
    answer = await live.http.put(
        "/admin/profile",
        headers=admin.headers,
        data={"name": "Ada Form", "phone": "01112345678"},
        files={"image": ("a.webp", WEBP, "image/webp")},
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["name"] == "Ada Form"
    served = await live.http.get(answer.json()["image"])
    assert (served.content, served.headers["Content-Type"]) == (WEBP, "image/webp")

    uma = await staff(live, UMA)
    plain = await live.http.put("/profile", headers=uma.headers, data={"name": "Uma Plain"})
    assert plain.status_code == 200, plain.text
    assert plain.json()["name"] == "Uma Plain"


async def test_admin_creates_and_edits_an_agent_with_a_form(live: Live) -> None:
    """The Postman collection's "User: Add Agent" and "User" (edit) requests."""
    admin = await staff(live, ADMIN)
    created = await live.http.post(
        "/admin/users",
        headers=admin.headers,
        data={
            "role": "agent",
            "name": "Form Agent",
            "email": "form.agent@gmail.com",
            "password": "123456zZ",
            "confirmPassword": "123456zZ",
            "phone": "01012345678",
        },
        files={"image": ("f.png", png(), "image/png")},
    )
    assert created.status_code == 201, created.text
    assert created.json()["role"] == "agent"
    assert created.json()["image"].endswith(".png")
    edited = await live.http.put(
        f"/admin/users/{created.json()['id']}",
        headers=admin.headers,
        data={"name": "Form Agent Two", "status": "away"},
    )
    assert edited.status_code == 200, edited.text
    assert edited.json()["name"] == "Form Agent Two"
    assert edited.json()["image"] == created.json()["image"]


async def test_what_is_not_an_accepted_image_is_refused_and_changes_nothing(live: Live) -> None:
    ann = await staff(live, ANN)
    before = (await live.http.get("/profile", headers=ann.headers)).json()
    uploads = live.services.settings.uploads_path
    # The declared type and name say PNG; the bytes are a page with a script.
    page = b"<html><script>alert(1)</script></html>"
    svg = b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>'
    for name, body in (("x.png", page), ("x.svg", svg), ("x.gif", b"GIF89a\x01\x00\x01\x00")):
        refused = await live.http.put(
            "/profile",
            headers=ann.headers,
            data={"name": "Changed"},
            files={"image": (name, body, "image/png")},
        )
        assert_error(refused, 400, "unsupported_image")
    bad_field = await live.http.put(
        "/profile", headers=ann.headers, data={"name": "", "phone": "1"}
    )
    assert bad_field.status_code == 400
    not_a_file = await live.http.put("/profile", headers=ann.headers, data={"image": "http://x"})
    assert not_a_file.status_code == 400
    assert (await live.http.get("/profile", headers=ann.headers)).json() == before
    assert not uploads.exists() or list(uploads.iterdir()) == []
    # Only keys of ours are served: no path ever leaves the directory.
    for path in ("/uploads/..%2fswitchboard.db", "/uploads/test.db", "/uploads/x.png"):
        assert (await live.http.get(path)).status_code == 404


async def test_an_image_over_the_limit_is_413_and_other_routes_keep_the_body_limit(
    live: Live,
) -> None:
    ann = await staff(live, ANN)
    limit = live.services.settings.max_image_bytes
    body_limit = live.services.settings.max_body_bytes
    big = png() + b"\x00" * limit
    refused = await live.http.put(
        "/profile", headers=ann.headers, files={"image": ("big.png", big, "image/png")}
    )
    assert refused.status_code == 413
    # Just under the image limit passes: the route's body limit grew by the image's.
    fits = png() + b"\x00" * (limit - len(png()) - 1)
    accepted = await live.http.put(
        "/profile", headers=ann.headers, files={"image": ("fits.png", fits, "image/png")}
    )
    assert accepted.status_code == 200, accepted.text
    # JSON to the same route keeps the plain body limit; a route that takes no forms refuses
    # a multipart body without reading it.
    long_name = await live.http.put(
        "/profile", headers=ann.headers, json={"name": "n" * (body_limit + 10)}
    )
    assert long_name.status_code == 413
    elsewhere = await live.http.post(
        "/messages/agent/send",
        headers=ann.headers,
        files={"image": ("big.png", b"\x00" * (body_limit + 10), "image/png")},
    )
    assert elsewhere.status_code == 400
