"""GET /metrics on a live server: who may read it, and its figures moving under a small real load
(websocket agent and customer, a REST sender, a waiting chat)."""

from __future__ import annotations

import gc
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from api._ops import _loopback
from tests.conftest import Live, make_settings, running_server
from tests.e2e.wsclient import connect, open_chat, ready_agent, say

ANN = "ann@switchboard.example"
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


async def scrape(live: Live) -> Samples:
    response = await live.http.get("/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=")
    return parse(response.text)


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


async def test_the_figures_move_under_a_small_load(live: Live) -> None:
    before = await scrape(live)
    customer_token = await live.customer_token("shop-customer-1")
    async with (
        connect(live, await live.login(ANN)) as agent,
        connect(live, customer_token) as customer,
    ):
        await ready_agent(live, agent)
        chat = await open_chat(customer)
        await agent.expect("chat.assigned")
        for n in range(5):
            await say(customer, chat["id"], f"c{n}", f"question {n}")
            await agent.expect("message", chatId=chat["id"], seq=2 * n + 1)
            await say(agent, chat["id"], f"a{n}", f"answer {n}")
            await customer.expect("message", chatId=chat["id"], seq=2 * n + 2)
        # A second customer waits: Ann is away now.
        await agent.request({"type": "status.set", "status": "away"}, "agent.status")
        waiting = await live.http.post(
            "/chats/customer",
            headers={"Authorization": f"Bearer {await live.customer_token('shop-customer-2')}"},
            json={"title": "still waiting"},
        )
        assert waiting.status_code == 201, waiting.text
        gc.collect()  # a full collection, timed by the gc callbacks like any other
        during = await scrape(live)
    after = await scrape(live)

    def moved(name: str, **labels: str) -> float:
        return value(during, name, **labels) - value(before, name, **labels)

    assert value(during, "switchboard_connections", edge="ws", role="agent") == 1
    assert value(during, "switchboard_connections", edge="ws", role="customer") == 1
    assert value(after, "switchboard_connections", edge="ws", role="agent") == 0
    closed = value(after, "switchboard_connections_closed_total", edge="ws", code="1000")
    assert (
        closed - value(before, "switchboard_connections_closed_total", edge="ws", code="1000") == 2
    )
    assert moved("switchboard_messages_stored_total", role="customer") == 5
    assert moved("switchboard_messages_stored_total", role="agent") == 5
    assert moved("switchboard_messages_delivered_total", edge="ws") == 10
    assert moved("switchboard_message_ack_seconds_count", edge="ws") == 10
    assert moved("switchboard_message_end_to_end_seconds_count", edge="ws") == 10
    assert moved("switchboard_message_end_to_end_seconds_bucket", edge="ws", le="+Inf") == 10
    assert moved("switchboard_assignments_total", reason="new") == 1
    assert moved("switchboard_unassignments_total", reason="agent_away") == 1
    assert value(during, "switchboard_queue_length") == 2  # the new chat, the one Ann left
    assert value(during, "switchboard_queue_oldest_wait_seconds") > 0
    assert value(during, "switchboard_agents", status="away", connected="yes") == 1
    assert value(during, "switchboard_actors", kind="supervisor") == 1
    assert value(during, "switchboard_actors", kind="chat") >= 1
    assert value(during, "switchboard_actor_mailbox_depth", kind="supervisor") >= 0
    # One send in flight at a time, so each of the conversation's batched appends holds one message.
    assert moved("switchboard_store_call_duration_seconds_count", operation="append_messages") == 10
    assert (
        moved(
            "switchboard_http_requests_total", method="POST", route="/chats/customer", status="201"
        )
        == 1
    )
    assert (
        moved("switchboard_http_request_duration_seconds_count", method="POST", route="/auth/login")
        == 1
    )
    assert moved("switchboard_gc_pause_seconds_count", generation="2") >= 1
    assert moved("switchboard_gc_pause_cpu_seconds_count", generation="2") >= 1
    assert value(during, "switchboard_event_loop_lag_seconds_count") > 0
    assert value(during, "process_resident_memory_bytes") > 0


async def test_metrics_answer_only_this_machine_unless_a_token_is_set(tmp_path: Path) -> None:
    async with running_server(make_settings(tmp_path)) as live:
        assert (await live.http.get("/metrics")).status_code == 200
        # Through a proxy on this machine, a client may be anywhere: each header a proxy sets.
        for header in ("Forwarded", "X-Forwarded-For", "X-Real-IP"):
            proxied = await live.http.get("/metrics", headers={header: "203.0.113.9"})
            assert proxied.status_code == 403, header
            assert "SWITCHBOARD_METRICS_TOKEN" in proxied.json()["error"]["message"]
    token = "m" * 32
    async with running_server(make_settings(tmp_path, metrics_token=token), seed=False) as live:
        assert (await live.http.get("/metrics")).status_code == 401
        wrong = {"Authorization": "Bearer " + "x" * 32}
        assert (await live.http.get("/metrics", headers=wrong)).status_code == 401
        right = await live.http.get("/metrics", headers={"Authorization": f"Bearer {token}"})
        assert right.status_code == 200
        assert "switchboard_ready" in right.text


def test_loopback_means_this_machine_only() -> None:
    assert _loopback("127.0.0.1")
    assert _loopback("127.9.9.9")
    assert _loopback("::1")
    for address in ("10.0.0.1", "192.168.1.5", "203.0.113.9", "::ffff:8.8.8.8", "<local>", None):
        assert not _loopback(address), address
