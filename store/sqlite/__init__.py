"""`SqliteStore`: the embedded default backend, one SQLite file in WAL mode.

Every write goes through a group commit (`store._group_commit`): a write with none in flight
runs at once, and those asked for meanwhile leave together (up to `MAX_BATCH`) in the next, run
in one transaction (each operation in its own SAVEPOINT, so one refusal fails only that
operation; a lone one needs none), answered only after COMMIT returned. With `synchronous=FULL`
that is one fsync per batch instead of one per write: durability without paying for it per
message.

The transactions run in a process of their own, the writer (`_child`), which holds the writing
connection: the server sends it each batch's calls and reads back the answers, so SQLite's work
runs on another core without a thread taking turns with the event loop for the GIL. It ends
with the store, dies with a crashed server, and one that ends on its own is replaced: the batch
it held is answered by the next, from the database if it was committed and by running it if
not (`_transaction.Writer.outcome`). Reads skip the writes' queue:
they run on a read-only connection in the server (one at a time, in a worker thread), which in
WAL mode sees every write acknowledged before the read started.

The async methods are `store._facade`'s, shared with the MongoDB backend.
"""

from store._group_commit import MAX_BATCH as MAX_BATCH
from store.sqlite._schema import SCHEMA_VERSION as SCHEMA_VERSION
from store.sqlite._writer import SqliteStore as SqliteStore
from store.sqlite._writer import open_sqlite_store as open_sqlite_store
