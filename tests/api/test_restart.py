"""Data and token revocation survive a restart of the server on the same SQLite file."""

from __future__ import annotations

from pathlib import Path

from tests.api.support import assert_error, bearer
from tests.api.test_auth import REGISTER
from tests.conftest import make_settings, running_server


async def test_restart_keeps_users_and_revocations(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    async with running_server(settings) as first:
        registered = await first.http.post("/auth/register", json=REGISTER)
        assert registered.status_code == 201
        revoked = registered.json()["token"]
        assert (await first.http.post("/auth/logout", headers=bearer(revoked))).status_code == 200
    async with running_server(settings, seed=False) as second:
        assert_error(await second.http.get("/profile", headers=bearer(revoked)), 401)
        token = await second.login("zed@example.com", "correct horse battery")
        profile = await second.http.get("/profile", headers=bearer(token))
        assert profile.status_code == 200
        assert profile.json()["name"] == "Zed New"
