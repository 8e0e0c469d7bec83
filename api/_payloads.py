"""The bodies and query strings of the chat, message, notification, dashboard, user and admin
routing routes, as pydantic models (camelCase on the wire, unknown fields refused).

Every rule a request must follow is in its model, so /openapi.json states exactly what is
accepted: a request the schema allows is never refused as malformed.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    Field,
    JsonValue,
    RootModel,
    model_validator,
)
from pydantic.json_schema import SkipJsonSchema

from actors import AgentView, QueueEntry
from api._pages import PageQuery
from api._paths import ID_PATTERN
from api._schemas import (
    ChatMessageOut,
    ChatOut,
    ClientMsgId,
    Email,
    Name,
    NameChange,
    Password,
    Phone,
    Url,
    UserOut,
    WireModel,
    refuse_null,
)
from cluster import ClusterView
from store import (
    ActedBy,
    ActivityKind,
    AgentStatus,
    ChatStatus,
    Priority,
    Role,
    User,
)

STATISTICS_FETCHED = "Statistics fetched successfully"  # the original's words
# Ids are 24 hex digits (store.new_id); the same rule as the `id` path converter.
Id = Annotated[str, Field(pattern=ID_PATTERN)]
# Not only whitespace. Spelled out because `\s` means three different sets to Python,
# to pydantic's Rust engine and to JSON Schema's ECMA regexes: this class is their union.
_NON_BLANK = r"[^\t-\r\x1c-\x20\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff]"
Title = Annotated[str, Field(min_length=1, max_length=200, pattern=_NON_BLANK)]
Description = Annotated[str, Field(max_length=2000)]
Content = Annotated[str, Field(min_length=1, max_length=4000, pattern=_NON_BLANK)]
MaxLoad = Annotated[int, Field(ge=1, le=100)]
EmailChange = Annotated[Email | SkipJsonSchema[None], AfterValidator(refuse_null)]
_RFC3339 = re.compile(r"\d{4}-\d\d-\d\d[Tt ]\d\d:\d\d:\d\d(\.\d+)?([Zz]|[+-]\d\d:\d\d)")


def _rfc3339(value: object) -> object:
    # pydantic would also take numbers (Unix time) and dates; a query string gets one format.
    if not isinstance(value, str) or not _RFC3339.fullmatch(value):
        raise ValueError("must be an RFC 3339 date-time like 2025-04-15T04:20:05Z")
    return value


def _in_utc(value: datetime) -> datetime:
    # 0001-01-01T00:00:00+00:01 is a valid RFC 3339 date-time with no UTC equivalent.
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError("is out of range: in UTC it falls before year 1 or after 9999") from None


Instant = Annotated[AwareDatetime, BeforeValidator(_rfc3339), AfterValidator(_in_utc)]


# --- errors (documentation: api/_errors.py writes them) -----------------------------------------


class ErrorDetail(WireModel):
    code: str
    message: str
    details: JsonValue = None


class ErrorOut(WireModel):
    """Every error: a stable `code`, a `message` a person can act on, and `details` (for invalid
    input, one entry per field) or null; `message` again at the top, where the original backend's
    front ends read it."""

    error: ErrorDetail
    message: str


# --- chats --------------------------------------------------------------------------------------


class OpenChatBody(WireModel):
    title: Title | None = Field(default=None, description="default: 'Chat with <your name>'")
    description: Description = ""
    priority: Priority = Priority.MEDIUM


class ChatList(RootModel[list[ChatOut]]):
    """Chats, one page (see X-Next-Cursor)."""


class ChatListQuery(PageQuery):
    status: ChatStatus | None = None


class AdminChatQuery(PageQuery):
    status: ChatStatus | None = None
    agent_id: Id | None = None
    customer_id: Id | None = None
    priority: Priority | None = None
    created_from: Instant | None = Field(default=None, description="inclusive")
    created_to: Instant | None = Field(default=None, description="exclusive")


class AdminChatUpdate(WireModel):
    """All optional: `agentId` reassigns first, then `status` parks or resolves, then `title`
    and `description` change."""

    agent_id: Id | None = None
    status: Literal[ChatStatus.PENDING, ChatStatus.RESOLVED] | None = None
    title: Title | None = None
    description: Description | None = None


class ReassignBody(WireModel):
    agent_id: Id


# --- messages -----------------------------------------------------------------------------------


class SendMessageBody(WireModel):
    chat_id: Id
    content: Content
    client_msg_id: ClientMsgId | None = Field(
        default=None,
        description="the sender's id for this message, so a retry is not stored twice; or send "
        "it as the Idempotency-Key header",
    )


class IdempotencyHeaders(BaseModel):
    """Field names are the headers' (quart-schema matches them in kebab-case)."""

    idempotency_key: ClientMsgId | None = None


class MessageList(RootModel[list[ChatMessageOut]]):
    """Messages in seq order, one page (see X-Next-Cursor)."""


# --- notifications ------------------------------------------------------------------------------


class NotificationOut(WireModel):
    id: str
    kind: str
    title: str
    body: str
    chat_id: str | None
    read: bool
    created_at: datetime


class Pagination(WireModel):
    total: int
    limit: int
    offset: int
    has_more: bool


class NotificationPage(WireModel):
    """The original backend's envelope; the next page's cursor is also in X-Next-Cursor."""

    notifications: list[NotificationOut]
    pagination: Pagination


class CountOut(WireModel):
    count: int


# --- users --------------------------------------------------------------------------------------


class UserList(RootModel[list[UserOut]]):
    """Users, one page (see X-Next-Cursor)."""


class UserListQuery(PageQuery):
    role: Role | None = None


class CreateAgentBody(WireModel):
    """An agent (away until they choose available), or with `role` user a plain user."""

    name: Name
    email: Email
    password: Password
    confirm_password: str
    phone: Phone | None = None
    avatar: Url | None = None
    role: Literal[Role.AGENT, Role.USER] = Role.AGENT
    max_load: MaxLoad = 3

    @model_validator(mode="after")
    def _passwords_match(self) -> CreateAgentBody:
        if self.password != self.confirm_password:
            raise ValueError("password and confirmPassword differ")
        return self


class AdminUserUpdate(WireModel):
    """Profile fields, the role between user and agent (approve or demote), and an agent's
    availability (as PUT /admin/agents/{agentId}/status). Fields left out stay as they are;
    phone and avatar are cleared with null."""

    name: NameChange = None
    email: EmailChange = None
    phone: Phone | None = None
    avatar: Url | None = None
    role: Literal[Role.USER, Role.AGENT] | None = None
    status: Literal[AgentStatus.AVAILABLE, AgentStatus.AWAY] | None = None


class ApproveBody(WireModel):
    email: Email


# --- the routing state --------------------------------------------------------------------------


class AgentStateOut(WireModel):
    """An agent as the assignment actor sees it now."""

    id: str
    status: AgentStatus
    connections: int = Field(description="live websocket connections")
    load: int = Field(description="open chats assigned")
    max_load: int
    idle_seconds: float = Field(description="since the agent last got a chat or became available")
    chat_ids: list[str] = Field(description="open chats, in assignment order")

    @classmethod
    def of(cls, view: AgentView, now: float) -> AgentStateOut:
        return cls(
            id=view.agent_id,
            status=view.status,
            connections=view.connections,
            load=view.load,
            max_load=view.max_load,
            idle_seconds=round(max(now - view.idle_since, 0.0), 3),
            chat_ids=list(view.chat_ids),
        )


class AgentOut(AgentStateOut):
    name: str | None = Field(description="null if the account was deleted meanwhile")
    email: str | None

    @classmethod
    def of_user(cls, view: AgentView, user: User | None, now: float) -> AgentOut:
        return cls(
            **dict(AgentStateOut.of(view, now)),
            name=user.name if user else None,
            email=user.email if user else None,
        )


class AgentList(RootModel[list[AgentOut]]):
    """Agents by id, one page (see X-Next-Cursor)."""


class AgentStatusBody(WireModel):
    status: Literal[AgentStatus.AVAILABLE, AgentStatus.AWAY] = Field(
        description="busy is set by the system while an agent is at max load"
    )


class MaxLoadBody(WireModel):
    max_load: MaxLoad


class QueueEntryOut(WireModel):
    chat_id: str
    position: int = Field(description="1 is served next")
    priority: Priority
    effective_priority: Priority = Field(description="after the starvation guard raised it")
    status: ChatStatus
    requeued: bool = Field(description="lost its agent; served before new chats")
    waiting_seconds: float

    @classmethod
    def of(cls, entry: QueueEntry, now: float) -> QueueEntryOut:
        return cls(
            chat_id=entry.chat_id,
            position=entry.position,
            priority=entry.priority,
            effective_priority=entry.effective_priority,
            status=entry.status,
            requeued=entry.requeued,
            waiting_seconds=round(max(now - entry.waiting_since, 0.0), 3),
        )


class QueueList(RootModel[list[QueueEntryOut]]):
    """Waiting chats in serving order, one page (see X-Next-Cursor)."""


class ActorOut(WireModel):
    name: str
    alive: bool
    mailbox_depth: int
    restarts: int


class NodeOut(WireModel):
    id: str
    connections: int = Field(description="live websocket and Socket.IO sessions on this node")
    leads: bool = Field(
        description="holds the arbiter lease: runs the assignment actor and the chats"
    )


class ClusterOut(WireModel):
    """The nodes as the answering node knows them (each as of its last beat, at most a third
    of the lease ago)."""

    mode: Literal["single", "cluster"] = Field(
        description="single: one process, no SWITCHBOARD_BUS_URL; cluster: nodes on the bus"
    )
    node: str = Field(description="the node that answered this request")
    leader: str | None = Field(
        description="the arbiter's node; null while no node holds the lease (a takeover)"
    )
    fencing_token: int | None = Field(
        description="the arbiter's routing token; null on a single node (nothing to fence), "
        "and until a new arbiter's first beat"
    )
    nodes: list[NodeOut]

    @classmethod
    def of(cls, view: ClusterView) -> ClusterOut:
        return cls(
            mode="cluster" if view.clustered else "single",
            node=view.node_id,
            leader=view.leader_id,
            fencing_token=view.routing_token,
            nodes=[
                NodeOut(id=n.node_id, connections=n.connections, leads=n.leads) for n in view.nodes
            ],
        )


class SystemOut(WireModel):
    """The actor system now: the assignment state, every actor, the live connections, and the
    nodes serving them."""

    agents: list[AgentStateOut]
    queue: list[QueueEntryOut]
    parked: list[str] = Field(description="pending chats waiting for their customer")
    actors: list[ActorOut] = Field(description="the arbiter's actors, in cluster mode")
    sessions: int = Field(description="live sessions, on every node")
    cluster: ClusterOut


class ActivityOut(WireModel):
    id: str
    kind: ActivityKind
    actor: ActedBy = Field(description="who caused it: self, system or admin")
    actor_id: str | None
    reason: str
    at: datetime
    agent_id: str | None
    chat_id: str | None
    from_value: str | None = Field(alias="from")
    to_value: str | None = Field(alias="to")


class ActivityList(RootModel[list[ActivityOut]]):
    """Activity-log entries, oldest first, one page (see X-Next-Cursor)."""


# --- dashboards ---------------------------------------------------------------------------------


class ChatCounts(WireModel):
    """Chats by status, as the original's dashboards read them."""

    total: int
    resolved: int
    pending: int
    open: int
    new: int


class AgentStatisticsBody(WireModel):
    chat: ChatCounts


class UserCounts(WireModel):
    total_agents: int
    total_users: int


class AdminStatisticsBody(WireModel):
    user: UserCounts
    chat: ChatCounts


class AgentStatistics(WireModel):
    """The original's `{message, statistics: {chat}}`, with the flat figures beside."""

    message: str = STATISTICS_FETCHED
    statistics: AgentStatisticsBody
    status: AgentStatus
    max_load: int
    open_chats: int
    resolved_chats: int
    total_chats: int


class AdminStatistics(WireModel):
    """The original's `{message, statistics: {user, chat}}`, with the flat figures beside."""

    message: str = STATISTICS_FETCHED
    statistics: AdminStatisticsBody
    users: int
    agents: int
    admins: int
    customers: int
    total_chats: int
    new_chats: int
    open_chats: int
    pending_chats: int
    resolved_chats: int
    queued_chats: int
    agents_online: int
    agents_available: int
    agents_busy: int
    agents_away: int
