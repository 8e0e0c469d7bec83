"""The server's store wrapper counts every message stored, whether alone or in a run."""

from __future__ import annotations

from prometheus_client import REGISTRY

from api._observed_store import observe_store
from store import MemoryStore, Role, new_id
from tests.store.factories import chat, message


def stored(role: str) -> float:
    value = REGISTRY.get_sample_value("switchboard_messages_stored_total", {"role": role})
    return value or 0.0


async def test_messages_stored_alone_and_in_a_run_are_counted() -> None:
    store = observe_store(MemoryStore())
    c = await store.create_chat(chat())
    customers, agents = stored("customer"), stored("agent")
    await store.append_message(message(c, 1))
    await store.append_messages(
        [message(c, 2), message(c, 3, sender_id=new_id(), sender_role=Role.AGENT), message(c, 4)]
    )
    assert (stored("customer") - customers, stored("agent") - agents) == (3, 1)


def calls(operation: str) -> float:
    value = REGISTRY.get_sample_value(
        "switchboard_store_call_duration_seconds_count", {"operation": operation}
    )
    return value or 0.0


async def test_every_call_is_timed_once_the_method_is_kept() -> None:
    store = observe_store(MemoryStore())
    before = calls("count_users")
    for _ in range(3):
        assert await store.count_users() == 0
    assert calls("count_users") - before == 3


async def test_attributes_that_are_not_coroutine_methods_are_read_afresh() -> None:
    backend = MemoryStore()
    store = observe_store(backend)
    backend.marker = 1  # type: ignore[attr-defined]
    assert store.marker == 1  # type: ignore[attr-defined]
    backend.marker = 2  # type: ignore[attr-defined]
    assert store.marker == 2  # type: ignore[attr-defined]
