"""REST message sends pass the token bucket a websocket's frames pass: a customer cannot store
messages faster over REST than over /ws (one stored 1,500 in 4 s)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio

from tests.api.support import assert_error, customer, open_chat, send
from tests.conftest import Live, make_settings, running_server

BURST = 5


@pytest.fixture
async def slow_bucket(tmp_path: Path) -> AsyncIterator[Live]:
    # One message a second after a burst of five: the test's sends take well under a second.
    settings = make_settings(tmp_path, ws_frame_burst=BURST, ws_max_frames_per_second=1.0)
    async with running_server(settings) as live:
        yield live


async def test_rest_sends_beyond_the_burst_get_429_with_retry_after(slow_bucket: Live) -> None:
    live = slow_bucket
    carla = await customer(live)
    chat = await open_chat(live, carla)
    statuses = []
    with trio.fail_after(30):
        for index in range(3 * BURST):
            response = await send(live, carla, chat["id"], f"message {index}")
            statuses.append(response.status_code)
            if response.status_code == 429:
                assert_error(response, 429, "rate_limited")
                assert int(response.headers["Retry-After"]) >= 1
    stored = statuses.count(201)
    assert BURST <= stored < 2 * BURST, statuses
    assert statuses[:BURST] == [201] * BURST
    assert 429 in statuses
    messages = await live.services.store.list_messages(chat["id"], after_seq=0, limit=100)
    assert len(messages) == stored
    # Another principal has a bucket of its own.
    other = await customer(live, "shop-customer-2")
    other_chat = await open_chat(live, other)
    assert (await send(live, other, other_chat["id"], "hello")).status_code == 201
