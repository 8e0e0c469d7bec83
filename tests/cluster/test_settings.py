"""Cluster mode's settings: a bus URL turns it on, and what cannot work is one line at start."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cluster.conftest import MongoServer
from tests.ops.test_startup_errors import one_line
from tests.store.mongo_server import free_port, fresh_database_url
from tools.cli import main


@pytest.mark.parametrize("store", ["memory://", "sqlite:///tmp/switchboard-cluster.db"])
def test_cluster_mode_refuses_a_store_the_nodes_cannot_share(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], store: str
) -> None:
    monkeypatch.setenv("SWITCHBOARD_BUS_URL", "redis://127.0.0.1:6379/0")
    assert main(["seed", "--store", store]) == 2
    line = one_line(capsys)
    assert line == (
        "cluster mode (SWITCHBOARD_BUS_URL) needs the nodes to share a MongoDB store: set "
        f"SWITCHBOARD_STORE=mongodb://..., not {store.partition(':')[0]}"
    )


def test_a_bus_url_of_another_kind_is_one_line_with_the_forms(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("SWITCHBOARD_BUS_URL", "http://user:s3cret@valkey:6379")
    assert main(["seed", "--store", "mongodb://127.0.0.1:1/x"]) == 2
    line = one_line(capsys)
    assert line.startswith("SWITCHBOARD_BUS_URL: unknown bus URL 'http://user@valkey:6379'")
    assert "use 'redis://host:6379/0', 'valkey://host:6379/0' or 'rediss://" in line
    assert "s3cret" not in line


def test_without_a_bus_url_the_store_may_be_sqlite(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("SWITCHBOARD_BUS_URL", raising=False)
    assert main(["seed", "--store", "memory://"]) == 0


def test_a_bus_that_cannot_be_reached_at_start_is_one_line(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    mongo: MongoServer,
    tmp_path: Path,
) -> None:
    port = free_port()
    monkeypatch.setenv("SWITCHBOARD_BUS_URL", f"redis://127.0.0.1:{port}/0")
    monkeypatch.setenv("SWITCHBOARD_DATA_DIR", str(tmp_path))
    assert main(["serve", "--port", "0", "--store", fresh_database_url(mongo.url)]) == 2
    assert one_line(capsys) == (
        f"cannot reach the bus at redis://127.0.0.1:{port}/0: Unable to establish a connection "
        f"to 127.0.0.1:{port}"
    )
