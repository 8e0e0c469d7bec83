"""`SqliteStore`: the embedded default backend, one SQLite file in WAL mode.

Every write goes to one writer task through a channel. The writer takes everything queued at
that moment (up to `MAX_BATCH`), runs the whole batch in one worker thread call inside one
transaction (each operation in its own SAVEPOINT, so one refusal fails only that operation), and
answers the callers only after COMMIT returned. With `synchronous=FULL` that is one fsync per
batch instead of one per write: durability without paying for it per message.

Only the writer task touches the writing connection, one batch at a time, so it is never used by
two threads at once even though the thread it runs in may change between batches. Reads skip
the writer's queue: they run on a second, read-only connection (one at a time), which in WAL mode
sees every write acknowledged before the read started.

The async methods are `store._facade`'s, shared with the MongoDB backend.
"""

from store.sqlite._schema import SCHEMA_VERSION as SCHEMA_VERSION
from store.sqlite._writer import MAX_BATCH as MAX_BATCH
from store.sqlite._writer import SqliteStore as SqliteStore
from store.sqlite._writer import open_sqlite_store as open_sqlite_store
