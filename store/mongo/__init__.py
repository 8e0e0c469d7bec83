"""`MongoStore`: the Store protocol on MongoDB, the production store of the system this replaces.

Driver: PyMongo's synchronous client, every call in a worker thread (`trio.to_thread.run_sync`,
never abandoned on cancel, so a write a caller gave up on still finishes or fails as a whole).
Motor is deprecated, and it and PyMongo's asyncio client run on asyncio only, not on Trio.

Layout: one document per record, `_id` = the record's id (the 24-hex string of `new_id`), in the
collections users, chats, messages, notifications, revoked_tokens, login_failures, one
collection per activity kind (agent_status_history, chat_status_history, assignments), and
one_time_codes (`_id` = user id and purpose) and mail (the outbox).

Datetimes: each is stored twice, as a BSON date under its own name (UTC, milliseconds: what
people, tools and TTL indexes read) and as exact microseconds since the epoch under the name
plus `_us` (what records are rebuilt from and what range queries compare), because the protocol
promises records back equal to what was stored and BSON dates would drop the microseconds.

Durability: writes use write concern majority with journal, reads read concern majority from the
primary, so a call returns only once its write survives a failover, and a later read sees it.

Atomicity: on a replica set or sharded cluster each multi-document write runs in a transaction.
A standalone server has none, so the writes are ordered so that a crash part way loses nothing
acknowledged, and every call still refuses duplicates through the unique indexes alone:
- `append_message(s)` inserts the messages first (the unique (chat, seq) and (chat, client_msg_id)
  indexes refuse a duplicate before anything else changes, so racing appends store exactly one),
  then updates the chat's counters in one `$set`/`$inc`; the inserts before a refused one are
  taken back. A crash between the two leaves stored but unacknowledged messages that the chat's
  counters do not count.

Round trips: on MongoDB 8.0 and later, a write to several collections (a run of messages and
their chat's counters) is one client-level bulkWrite command, ordered, so it stops at a refused
write just as the separate commands did.
Older servers, and nx-27017 (see `_supports_bulk_write`), get one command per collection.
- `append_activity` takes back the entries it inserted when a later one is refused; a crash
  before that leaves the entries before the refused one.
- `record_routing` appends the activity first (the only part that can be refused), then inserts
  the new chats, then writes the chats' and agents' routing fields; a crash between leaves log
  entries whose decisions did not take effect, which the assignment actor reconciles when it
  reloads. A new chat is inserted whole, routing fields included, so a crash after its insert
  leaves it as decided.

Fencing (cluster mode): the `fences` collection holds one document, `routing`, with the latest
token `claim_routing` gave out and a journal: the last fenced decision. A fenced `record_routing`
commits by one single-document compare-and-set (the token must still be the latest; the journal
becomes this decision), which is atomic on every server, then applies the journal to the chats,
users and activity log (new chats inserted, skipped when there already). Each chat and user it
writes carries the token (`routing_fence`) and is written only if it carries no later one.
`claim_routing` raises the token in one atomic update and applies the journal it finds under
the new token before returning, so a holder that was
paused between its compare-and-set and its writes, and wakes up after the claim, finds every
document it would write already stamped with a later token: its late writes change nothing
(but for a chat it created that was deleted in between, which its late insert brings back).
- `delete_chat` deletes the chat, then its messages (and always its messages, so calling it
  again clears what a crash left).

Receipts: `mark_messages` moves its reader's read mark on the chat document, with the unread
count, in one single-document update (atomic everywhere, no transaction); a message's status is
its stored one raised by the marks (see `_reads`).
"""

from store.mongo._client import drop_database as drop_database
from store.mongo._client import with_database as with_database
from store.mongo._schema import DEFAULT_DATABASE as DEFAULT_DATABASE
from store.mongo._schema import SERVER_SELECTION_TIMEOUT_MS as SERVER_SELECTION_TIMEOUT_MS
from store.mongo._store import MongoStore as MongoStore
from store.mongo._store import open_mongo_store as open_mongo_store
