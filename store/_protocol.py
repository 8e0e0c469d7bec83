"""The store's protocols: one per role (accounts, chats, transcript, notifications, activity log,
mail outbox, routing writer); `EdgeStore` is every role but the writers of the transcript and of
routing, what the edge holds; `Store` adds the transcript's writes, what the actors hold;
`Backend` is every role, what each backend (memory, SQLite, MongoDB) implements and only the
assignment actor holds. So mypy refuses a routing write anywhere but in the assignment actor, and
a message appended or marked anywhere but in the actors.

Rules every backend keeps (tests/store checks them for each one):
- a method returns only after its write is durable;
- `append_message` is atomic with the chat's counters and refuses a second (chat, seq) or
  (chat, client_msg_id) with `DuplicateMessage`;
- lists are ordered by id (ids sort by creation) and paged with the id of the last item as cursor.

In detail:
- Records come back equal to what was stored, except that emails are stored lower-cased and
  datetimes may come back converted to UTC. Datetimes given to a store must be timezone-aware
  (`ValueError` otherwise). Storing a record whose id is already taken is a plain `StoreError`.
- Users: email unique regardless of case (`DuplicateEmail`, also from `update_user`);
  `update_user` replaces the record by id (`NotFound`) except the routing fields `status` and
  `max_load`, which only `record_routing` writes, and returns the record as stored;
  `delete_user` is a hard delete and says whether the user existed.
  `get_customer_by_external_id` only finds role customer. A shop id names one customer (a unique
  key): `find_or_create_customer` returns the customer with the record's `external_id`,
  storing the record only if there is none, atomically, so first requests that race make one.
- Pages: `limit` >= 1 (`ValueError`); ascending by id, `cursor` = id of the last item of the
  previous page (items with id > cursor); `newest_first` descends (items with id < cursor);
  `next_cursor` is None on the last page. `count_*` take the same filters as the lists.
- ChatFilter: every given field must match; `statuses` is any-of (an empty set matches nothing);
  `created_from <= created_at < created_to`.
- `delete_chat` deletes the chat's messages with it.
- `append_message`: `NotFound` if the chat is missing; with the insert, the chat gets
  last_message_id, last_seq = seq, updated_at = message.created_at, and the receiving side's unread
  count + 1 (sender_role customer -> agent_unread_count, otherwise customer_unread_count).
- `append_messages`: a run of one chat's messages in ascending seq (`ValueError` otherwise),
  stored as `append_message` would store each in turn, but all or none and in one write (one
  transaction, one round trip where the database allows): a refusal of any of them
  (`DuplicateMessage`, also between two of the run; `NotFound`; a reused id) stores none. An
  empty run stores nothing. Which message was refused is not said: a caller that needs to know
  appends them one by one.
- `list_messages`: seq > after_seq, ascending by seq, at most `limit`.
- `mark_messages`: `NotFound` if the chat is missing; the chat's messages with
  after_seq < seq <= up_to_seq not sent by `reader_id` whose status is below `status` (sent <
  delivered < seen) get `status`; nothing is returned, as counting them would cost a MongoDB
  receipt a read it otherwise does without. With seen, the reader's side unread
  count becomes 0 (the chat's customer -> customer_unread_count, anyone else ->
  agent_unread_count). `after_seq` (0: from the first message) is for a caller that knows the
  messages up to it are marked already, as their conversation does: a receipt then costs the
  messages it changes, not every message of the chat.
- Tokens: revoking again replaces expires_at; a backend may forget a revocation once its
  expires_at has passed (the token is refused as expired by then anyway).
- Login failures: `count_login_failures` counts those with at >= since; `login_failures` gives
  that count and the latest such `at` (None when there is none).
- Notifications: listed newest first (by id) with offset paging and the user's total;
  mark/delete act only on the user's own (False if missing or someone else's);
  `mark_notification_read` is True for an own notification even if it was read already;
  `mark_all_notifications_read` returns how many changed.
- `append_activity` stores all entries or none.
- Fencing (cluster mode: one arbiter at a time over one store): `claim_routing` returns a token
  greater than every token it returned before, to any process; from then on `record_routing`
  with an older token raises `Fenced` and changes nothing. A decision the previous holder had
  recorded but not finished writing (a crash or a pause part way, where the database has no
  transactions) is completed by the claim, so a caller that claims and then reads sees every
  decision that was ever accepted. `record_routing` without a token is not fenced.
- Accounts by email (a group of its own, below):
  - `update_user` leaves `password_hash`, `token_generation` and `kept_token_id` as stored: only
    `set_password` writes them (it moves the generation on by one, revoking every token issued
    before but `kept_token_id`, the token that made the change, if given), so a profile edit
    made from a copy read before a password change cannot undo it.
  - `mark_email_verified` sets `email_verified_at` (and `updated_at`) only while the user's
    email is still `email`; None if not (or no such user). A verified address stays verified at
    its first time.
  - One live code per (user, purpose): `issue_code` replaces the user's earlier one and queues
    its mail in the same step (both or neither). `use_code` is True only for the live code's
    digest before `expires_at` with fewer than `max_wrong_tries` wrong tries, and then deletes
    it (single use); a wrong digest on a live code counts one wrong try; otherwise nothing
    changes.
  - The outbox: `due_mail` gives unsent mail with `next_attempt_at <= before`, by
    `next_attempt_at` then id; `mail_sent` sets `sent_at` and drops the body (text and html:
    a delivered code does not stay readable in the store); `mail_failed` counts the attempt,
    keeps the error and sets the next attempt; both ignore an unknown id. `claim_mail` moves an
    unsent mail's `next_attempt_at` from `seen` to `until` and is True only if it was still
    `seen` (one sender wins a due mail; the others see it taken). `list_mail` pages the whole
    outbox newest first.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol, runtime_checkable

from store._records import (
    Activity,
    AgentStatus,
    Chat,
    ChatStatus,
    CodePurpose,
    Mail,
    Message,
    MessageStatus,
    Notification,
    OneTimeCode,
    Page,
    Priority,
    Role,
    User,
)


class StoreError(Exception):
    """Base of every error a store raises on purpose."""


class NotFound(StoreError):
    pass


class DuplicateEmail(StoreError):
    pass


class DuplicateMessage(StoreError):
    """(chat, seq) or (chat, client_msg_id) already stored."""


class StoreUnavailable(StoreError):
    """The backing database cannot be reached right now; the caller may retry."""


class Fenced(StoreError):
    """A routing decision made under a fencing token that a later `claim_routing` replaced:
    another process arbitrates now, and the decision was not stored."""


@dataclass(frozen=True, slots=True)
class ChatFilter:
    status: ChatStatus | None = None
    statuses: frozenset[ChatStatus] | None = None
    agent_id: str | None = None
    customer_id: str | None = None
    priority: Priority | None = None
    created_from: datetime | None = None
    created_to: datetime | None = None


@dataclass(frozen=True, slots=True)
class ChatRouting:
    """The routing fields of a chat, which only the assignment actor writes."""

    chat_id: str
    status: ChatStatus
    agent_id: str | None
    queued_at: datetime | None
    resolved_at: datetime | None
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class AgentRouting:
    """The routing fields of an agent, which only the assignment actor writes. `role`, when
    given, is written with them: becoming or ceasing to be an agent is a routing decision."""

    agent_id: str
    status: AgentStatus
    max_load: int
    updated_at: datetime
    role: Role | None = None


@dataclass(frozen=True, slots=True)
class ActivityFilter:
    chat_id: str | None = None
    agent_id: str | None = None


class AccountStore(Protocol):
    """Users, their tokens and sign-in throttling, credentials and one-time codes."""

    # users
    async def create_user(self, user: User) -> User: ...
    async def get_user(self, user_id: str) -> User | None: ...
    async def get_user_by_email(self, email: str) -> User | None: ...
    async def get_customer_by_external_id(self, external_id: str) -> User | None: ...
    async def find_or_create_customer(self, customer: User) -> User: ...
    async def update_user(self, user: User) -> User: ...
    async def delete_user(self, user_id: str) -> bool: ...
    async def list_users(
        self, *, role: Role | None = None, limit: int = 50, cursor: str | None = None
    ) -> Page[User]: ...
    async def count_users(self, *, role: Role | None = None) -> int: ...

    # tokens and login throttling
    async def revoke_token(self, jti: str, expires_at: datetime) -> None: ...
    async def is_token_revoked(self, jti: str) -> bool: ...
    async def add_login_failure(self, key: str, at: datetime) -> None: ...
    async def count_login_failures(self, key: str, since: datetime) -> int: ...
    async def login_failures(self, key: str, since: datetime) -> tuple[int, datetime | None]: ...
    async def clear_login_failures(self, key: str) -> None: ...

    # credentials and one-time codes
    async def set_password(
        self, user_id: str, password_hash: str, at: datetime, kept_token_id: str | None = None
    ) -> User: ...
    async def mark_email_verified(self, user_id: str, email: str, at: datetime) -> User | None: ...
    async def issue_code(self, code: OneTimeCode, mail: Mail) -> None: ...
    async def use_code(
        self,
        user_id: str,
        purpose: CodePurpose,
        digest: str,
        *,
        now: datetime,
        max_wrong_tries: int,
    ) -> bool: ...


class ChatStore(Protocol):
    """Chat records, but for their routing fields (`RoutingStore`) and counters (the transcript)."""

    async def create_chat(self, chat: Chat) -> Chat: ...
    async def get_chat(self, chat_id: str) -> Chat | None: ...
    async def set_chat_details(
        self, chat_id: str, *, title: str, description: str, at: datetime
    ) -> Chat | None:
        """Change only the title and description (and `updated_at`): what an admin edits, never
        racing the routing fields or the counters. None when there is no such chat."""
        ...

    async def delete_chat(self, chat_id: str) -> bool: ...
    async def list_chats(
        self,
        chat_filter: ChatFilter = ChatFilter(),
        *,
        limit: int = 50,
        cursor: str | None = None,
        newest_first: bool = False,
    ) -> Page[Chat]: ...
    async def count_chats(self, chat_filter: ChatFilter = ChatFilter()) -> int: ...


class TranscriptReader(Protocol):
    """A chat's messages as stored: the transcript's reads, which the edge holds too."""

    async def get_message(self, message_id: str) -> Message | None: ...
    async def get_message_by_client_id(
        self, chat_id: str, client_msg_id: str
    ) -> Message | None: ...
    async def list_messages(
        self, chat_id: str, *, after_seq: int = 0, limit: int = 100
    ) -> list[Message]: ...


class TranscriptStore(TranscriptReader, Protocol):
    """A chat's messages, numbered by seq, with the chat's counters moved in the same write. Its
    writes are the conversation's: the edge holds an `EdgeStore`, which has only the reads."""

    async def append_message(self, message: Message) -> Message: ...
    async def append_messages(self, messages: Sequence[Message]) -> list[Message]: ...
    async def mark_messages(
        self,
        chat_id: str,
        *,
        reader_id: str,
        up_to_seq: int,
        status: MessageStatus,
        after_seq: int = 0,
    ) -> None: ...


class NotificationStore(Protocol):
    """Each user's stored notifications."""

    async def add_notification(self, notification: Notification) -> Notification: ...
    async def list_notifications(
        self, user_id: str, *, limit: int = 20, offset: int = 0
    ) -> tuple[list[Notification], int]: ...
    async def count_unread_notifications(self, user_id: str) -> int: ...
    async def mark_notification_read(self, user_id: str, notification_id: str) -> bool: ...
    async def mark_all_notifications_read(self, user_id: str) -> int: ...
    async def delete_notification(self, user_id: str, notification_id: str) -> bool: ...


class ActivityStore(Protocol):
    """The activity log, append only."""

    async def append_activity(self, entries: Sequence[Activity]) -> None: ...
    async def list_activity(
        self, activity_filter: ActivityFilter, *, limit: int = 50, cursor: str | None = None
    ) -> Page[Activity]: ...


class MailStore(Protocol):
    """The mail outbox: queued, claimed by one sender, sent or failed and retried."""

    async def queue_mail(self, mail: Mail) -> None: ...
    async def due_mail(self, before: datetime, *, limit: int = 50) -> list[Mail]: ...
    async def claim_mail(self, mail_id: str, seen: datetime, until: datetime) -> bool: ...
    async def mail_sent(self, mail_id: str, at: datetime) -> None: ...
    async def mail_failed(self, mail_id: str, error: str, retry_at: datetime) -> None: ...
    async def list_mail(self, *, limit: int = 50, cursor: str | None = None) -> Page[Mail]: ...


class RoutingStore(Protocol):
    """The routing writer: one transaction for a batch of assignment decisions, and the claim
    that makes one arbiter. Only the assignment actor holds it (`Backend`); everything else holds
    a `Store` or an `EdgeStore`, which have no way to write a chat's agent, an agent's status or
    load."""

    async def record_routing(
        self,
        chats: Sequence[ChatRouting],
        agents: Sequence[AgentRouting],
        activity: Sequence[Activity],
        *,
        new_chats: Sequence[Chat] = (),
        fence: int | None = None,
    ) -> None:
        """Create `new_chats` (whole records, routing fields included), write only the routing
        fields of the chats and agents named, and append the activity, atomically: a batch of
        decisions is one write. Rows that no longer exist (deleted meanwhile) are skipped; a new
        chat whose id is taken is a `StoreError`. With `fence`, refused with `Fenced` unless it
        is the token of the latest `claim_routing`."""
        ...

    async def claim_routing(self, holder: str) -> int:
        """Become the one arbiter: a new fencing token, after completing the previous holder's
        last decision. `holder` names the claimant for people reading the database."""
        ...


class EdgeStore(
    AccountStore, ChatStore, TranscriptReader, NotificationStore, ActivityStore, MailStore, Protocol
):
    """What the HTTP edge holds: every role but the writers of the transcript and of routing, so
    a message appended or marked from a route does not type-check (its conversation writes it)."""


class Store(EdgeStore, TranscriptStore, Protocol):
    """Async persistence as the actors hold it: every role but the routing writer. Every write is
    durable when the call returns."""


class Backend(Store, RoutingStore, Protocol):
    """Every role, the routing writer included: what each backend implements and `open_store`
    opens. The composition hands it to the assignment actor and a `Store` to everyone else."""


@runtime_checkable
class MigrationTarget(Backend, Protocol):
    """A backend that `switchboard migrate` copies into: every backend is one, but the product's
    code holds a `Store` or a `Backend`, which cannot overwrite a chat's counters or routing
    fields."""

    async def restore_chat(self, chat: Chat) -> Chat:
        """Write the chat record whole, as the source has it (its counters moved while its
        messages were appended). `NotFound` if the target has no such chat."""
        ...
