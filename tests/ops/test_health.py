"""/healthz and /readyz on a live server: ready on a working store, not ready (503, with the
reason) while MongoDB is down or the assignment actor is not running, ready again after."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest
import trio

from actors.system import ASSIGNMENT_ACTOR
from telemetry import READY
from tests.conftest import Live, make_settings, running_server
from tests.store.mongo_server import WireServer, fresh_database_url, running_wire_server

WAIT_SECONDS = 20.0


@pytest.fixture
def own_server(tmp_path: Path) -> Iterator[WireServer]:
    """A MongoDB wire-protocol server of this test's own, to stop and start again."""
    with running_wire_server(tmp_path / "nx-27017") as server:
        yield server


async def test_ready_on_sqlite_and_healthy_always(live: Live) -> None:
    # A scrape runs the checks too: nobody has asked /readyz yet (the gauge is the process's).
    READY.set(0)
    assert "switchboard_ready 1.0" in (await live.http.get("/metrics")).text
    health = await live.http.get("/healthz")
    assert (health.status_code, health.json()) == (200, {"status": "ok"})
    ready = await live.http.get("/readyz")
    assert ready.status_code == 200
    assert ready.json() == {"status": "ready", "checks": {"store": "ok", "assignment": "ok"}}


async def test_not_ready_while_the_assignment_actor_is_not_running(live: Live) -> None:
    await live.services.system._actors.stop(ASSIGNMENT_ACTOR)  # as if it had given up
    ready = await live.http.get("/readyz")
    assert ready.status_code == 503
    error = ready.json()["error"]
    assert error["code"] == "not_ready"
    assert error["message"].startswith("assignment: the assignment actor is not running")
    assert error["details"] == {"store": "ok", "assignment": error["details"]["assignment"]}
    assert (await live.http.get("/healthz")).status_code == 200


async def test_readiness_follows_mongodb_going_away_and_coming_back(
    tmp_path: Path, own_server: WireServer
) -> None:
    settings = make_settings(tmp_path, store=fresh_database_url(own_server.url))
    async with running_server(settings) as live:
        assert (await live.http.get("/readyz")).status_code == 200
        own_server.kill()
        with trio.fail_after(WAIT_SECONDS):
            down = await live.http.get("/readyz", timeout=WAIT_SECONDS)
        assert down.status_code == 503
        details = down.json()["error"]["details"]
        assert details["assignment"] == "ok"
        assert details["store"] != "ok"
        # Polled every second while it is down: each answer comes within the wait, not after
        # the driver's own timeout.
        with trio.fail_after(3 * 1.5):
            for _ in range(3):
                assert (await live.http.get("/readyz")).status_code == 503
        assert (await live.http.get("/healthz")).status_code == 200
        metrics = (await live.http.get("/metrics")).text
        assert "switchboard_ready 0.0" in metrics
        assert 'switchboard_store_errors_total{error="unavailable",operation="get_user"}' in metrics

        with ExitStack() as stack:
            restarted = running_wire_server(own_server.data_dir, own_server.port)
            await trio.to_thread.run_sync(lambda: stack.enter_context(restarted))
            with trio.fail_after(WAIT_SECONDS):
                while (await live.http.get("/readyz")).status_code != 200:
                    pass  # each check waits on the store (up to a second) before it answers
            assert "switchboard_ready 1.0" in (await live.http.get("/metrics")).text
