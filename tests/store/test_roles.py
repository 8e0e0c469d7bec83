"""The store's role protocols: only the assignment actor is handed the routing writer, and the
HTTP edge is not handed the transcript's writes.

mypy enforces it (a routing write through a `Store`, a message appended or marked through an
`EdgeStore`, does not type-check); these tests pin the types that make it so, so a loosened
annotation fails here too.
"""

from __future__ import annotations

import inspect
import typing

from actors.assignment_actor import AssignmentActor
from actors.conversation import ConversationActor
from actors.system import System, open_system
from api._mail import Outbox
from api._seed import create_admin, seed_demo_data
from api._services import Services
from api._shapes import chat_out
from store import (
    AccountStore,
    ActivityStore,
    Backend,
    ChatStore,
    EdgeStore,
    MailStore,
    MemoryStore,
    MigrationTarget,
    NotificationStore,
    RoutingStore,
    SqliteStore,
    Store,
    TranscriptReader,
    TranscriptStore,
)
from store.mongo import MongoStore

ROUTING = {"record_routing", "claim_routing"}
TRANSCRIPT_WRITES = {"append_message", "append_messages", "mark_messages"}
ROLES = (AccountStore, ChatStore, TranscriptStore, NotificationStore, ActivityStore, MailStore)


def methods(protocol: type) -> set[str]:
    return {
        name
        for name, _ in inspect.getmembers(protocol, inspect.isfunction)
        if not name.startswith("_")
    }


def test_a_store_has_every_role_but_the_routing_writer() -> None:
    assert methods(RoutingStore) == ROUTING
    assert not methods(Store) & ROUTING
    assert methods(Store) == set().union(*(methods(role) for role in ROLES))
    assert methods(Backend) == methods(Store) | ROUTING


def test_the_roles_do_not_overlap() -> None:
    roles = (*ROLES, RoutingStore)
    for index, role in enumerate(roles):
        for other in roles[index + 1 :]:
            assert not methods(role) & methods(other), (role, other)


def test_every_backend_implements_the_whole_backend() -> None:
    for backend in (MemoryStore, SqliteStore, MongoStore):
        assert methods(Backend) <= set(dir(backend)), backend
        assert issubclass(backend, MigrationTarget)


def test_only_the_assignment_actor_is_handed_the_routing_writer() -> None:
    assert typing.get_type_hints(AssignmentActor.__init__)["store"] is Backend
    assert typing.get_type_hints(open_system)["store"] is Backend
    # What the edge and the rest of the domain hold has no routing writer.
    assert typing.get_type_hints(Services)["store"] is EdgeStore
    assert typing.get_type_hints(System.__init__)["store"] is Store


def test_the_edge_reads_the_transcript_and_only_the_actors_write_it() -> None:
    assert methods(TranscriptStore) == methods(TranscriptReader) | TRANSCRIPT_WRITES
    assert not methods(EdgeStore) & (TRANSCRIPT_WRITES | ROUTING)
    assert methods(TranscriptReader) <= methods(EdgeStore)
    assert methods(Store) == methods(EdgeStore) | TRANSCRIPT_WRITES
    # What the HTTP edge's handlers reach, and what they hand the store to, is an EdgeStore.
    assert typing.get_type_hints(Services)["store"] is EdgeStore
    for takes_the_edges in (chat_out, seed_demo_data, create_admin, Outbox.__init__):
        assert typing.get_type_hints(takes_the_edges)["store"] is EdgeStore, takes_the_edges
    # The conversation numbers, appends and marks its chat's messages.
    assert typing.get_type_hints(ConversationActor.__init__)["store"] is Store
