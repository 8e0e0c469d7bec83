"""`SqliteStore`: the embedded default backend, one SQLite file in WAL mode.

Every write goes through a group commit (`store._group_commit`): a write with none in flight
runs at once, and those asked for meanwhile leave together (up to `MAX_BATCH`) in the next, run
in one worker thread call inside one transaction (each operation in its own SAVEPOINT, so one
refusal fails only that operation; a lone one needs none), answered only after COMMIT returned. With
`synchronous=FULL` that is one fsync per batch instead of one per write: durability without
paying for it per message.

One batch at a time touches the writing connection, so it is never used by two threads at once
even though the thread it runs in may change between batches. Reads skip the writes' queue:
they run on a second, read-only connection (one at a time), which in WAL mode sees every write
acknowledged before the read started.

The async methods are `store._facade`'s, shared with the MongoDB backend.
"""

from store._group_commit import MAX_BATCH as MAX_BATCH
from store.sqlite._schema import SCHEMA_VERSION as SCHEMA_VERSION
from store.sqlite._writer import SqliteStore as SqliteStore
from store.sqlite._writer import open_sqlite_store as open_sqlite_store
