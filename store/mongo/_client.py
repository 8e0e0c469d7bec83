"""Reaching the server: URLs (redacted for messages), PyMongo errors translated into the store's,
and what the server can do (transactions, the bulkWrite command, nx-27017's differences).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from pymongo import (
    MongoClient,
)
from pymongo.errors import (
    ConnectionFailure,
    PyMongoError,
)
from pymongo.server_type import SERVER_TYPE

from store._protocol import (
    StoreError,
    StoreUnavailable,
)
from store.mongo._schema import _BULK_WRITE_WIRE_VERSION, SERVER_SELECTION_TIMEOUT_MS, Document

# URLs and errors


def with_database(url: str, database: str) -> str:
    """`url` naming `database`, keeping its hosts, credentials and options."""
    scheme, separator, rest = url.partition("://")
    authority, _, path = rest.partition("/")
    options = path.partition("?")[2]
    return f"{scheme}{separator}{authority}/{database}" + (f"?{options}" if options else "")


def drop_database(url: str) -> None:
    """Drop the database `url` names (blocking: run it in a thread). For tests and benchmarks,
    which each use a database of their own."""
    client: MongoClient[Document] = MongoClient(url)
    with client:
        client.drop_database(client.get_default_database().name)


def _url_options(url: str) -> set[str]:
    query = url.partition("?")[2]
    return {part.partition("=")[0].lower() for part in query.replace(";", "&").split("&") if part}


def _reason(exc: PyMongoError) -> str:
    # PyMongo appends its configured timeouts and the whole topology description to the cause;
    # the first clause is the part a person can act on.
    return str(exc).partition(", Timeout: ")[0].partition(" (configured timeouts")[0]


def _transient(exc: PyMongoError) -> bool:
    return exc.has_error_label("TransientTransactionError")


@contextmanager
def _translated(where: str) -> Iterator[None]:
    """PyMongo's errors as the store's: StoreUnavailable for what a retry may cure."""
    try:
        yield
    except ConnectionFailure as exc:
        raise StoreUnavailable(f"lost MongoDB at {where}: {_reason(exc)}") from exc
    except PyMongoError as exc:
        if _transient(exc):
            raise StoreUnavailable(
                f"MongoDB at {where} kept refusing a transaction: {exc}"
            ) from exc
        raise StoreError(f"MongoDB at {where} refused the operation: {exc}") from exc


def _is_nx_27017(client: MongoClient[Document]) -> bool:
    """Whether the server is nx-27017, the tests' wire-protocol server (see its differences
    where they are worked around)."""
    return client.admin.command("buildInfo").get("process") == "nx_27017"


# opening


def _connect(url: str, where: str) -> MongoClient[Document]:
    """A client that has reached the server once, or a one-line error saying why not."""
    defaults: dict[str, Any] = {}
    if "serverselectiontimeoutms" not in _url_options(url):
        defaults["serverSelectionTimeoutMS"] = SERVER_SELECTION_TIMEOUT_MS
    try:
        # Resolves mongodb+srv:// names here, hence a thread.
        client: MongoClient[Document] = MongoClient(url, **defaults)
    except (PyMongoError, ValueError) as exc:  # a malformed URL, or an SRV name not found
        raise StoreError(f"cannot use MongoDB at {where}: {exc}") from exc
    try:
        client.admin.command("ping")
    except ConnectionFailure as exc:
        client.close()
        raise StoreUnavailable(f"cannot reach MongoDB at {where}: {_reason(exc)}") from exc
    except PyMongoError as exc:  # e.g. authentication failed
        client.close()
        raise StoreError(f"cannot use MongoDB at {where}: {exc}") from exc
    return client


def _supports_transactions(client: MongoClient[Document]) -> bool:
    # Only replica set members and mongos run multi-document transactions. Decided from what
    # the server says it is rather than by trying one: see the README on test servers that
    # accept transactions without isolating them.
    servers = client.topology_description.server_descriptions().values()
    kinds = {server.server_type for server in servers}
    return bool(kinds & {SERVER_TYPE.RSPrimary, SERVER_TYPE.Mongos, SERVER_TYPE.LoadBalancer})


def _supports_bulk_write(client: MongoClient[Document], nx_27017: bool) -> bool:
    # The client-level bulkWrite command (one round trip for writes to several collections)
    # came with MongoDB 8.0, wire version 25; older servers get one command per collection.
    # nx-27017 says 8.0 and runs the command, but under the lock of the database it is sent to
    # (admin), not the one it writes: beside another command on that database, its inserts
    # fail (code 8, "Failed to get last row id") where a duplicate key was due.
    if nx_27017:
        return False
    servers = client.topology_description.server_descriptions().values()
    versions = [server.max_wire_version for server in servers if server.is_writable]
    return bool(versions) and min(versions) >= _BULK_WRITE_WIRE_VERSION
