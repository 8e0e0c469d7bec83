"""`switchboard backup FILE` while a real server runs on the database: a consistent copy that
opens as a store with everything in it; refusals of one line."""

from __future__ import annotations

from pathlib import Path

import pytest

from store import open_sqlite_store
from tests.conftest import Live
from tools.cli import main


async def test_a_backup_taken_while_serving_holds_everything(
    live: Live, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    token = await live.customer_token("shop-customer-1")
    opened = await live.http.post(
        "/chats/customer", headers={"Authorization": f"Bearer {token}"}, json={"title": "Lost"}
    )
    assert opened.status_code == 201, opened.text
    store = f"sqlite://{tmp_path / 'test.db'}"  # the live server's, locked by it
    copy = tmp_path / "backups" / "switchboard-1.db"
    copy.parent.mkdir()
    assert main(["backup", str(copy), "--store", store]) == 0
    line = capsys.readouterr().out
    assert line.startswith(f"backup: {tmp_path / 'test.db'} -> {copy}, ")
    assert "MiB" in line
    assert list(copy.parent.iterdir()) == [copy]  # no partial file left
    async with open_sqlite_store(copy) as backed_up:
        assert await backed_up.count_users() == await live.services.store.count_users()
        assert await backed_up.get_chat(opened.json()["id"]) is not None

    assert main(["backup", str(copy), "--store", store]) == 2
    assert "exists already" in capsys.readouterr().err
    assert main(["backup", str(tmp_path / "m.db"), "--store", "mongodb://db/switchboard"]) == 2
    assert "use mongodump" in capsys.readouterr().err
    assert main(["backup", str(tmp_path / "x.db"), "--store", f"sqlite://{tmp_path}/none.db"]) == 2
    assert "there is no SQLite database" in capsys.readouterr().err
