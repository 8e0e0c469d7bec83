"""The store's role protocols: only the assignment actor is handed the routing writer.

mypy enforces it (a routing write through a `Store` does not type-check); these tests pin the
types that make it so, so a loosened annotation fails here too.
"""

from __future__ import annotations

import inspect
import typing

from actors.assignment_actor import AssignmentActor
from actors.system import System, open_system
from api._services import Services
from store import (
    AccountStore,
    ActivityStore,
    Backend,
    ChatStore,
    MailStore,
    MemoryStore,
    MigrationTarget,
    NotificationStore,
    RoutingStore,
    SqliteStore,
    Store,
    TranscriptStore,
)
from store.mongo import MongoStore

ROUTING = {"record_routing", "claim_routing"}
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
    assert typing.get_type_hints(Services)["store"] is Store
    assert typing.get_type_hints(System.__init__)["store"] is Store
