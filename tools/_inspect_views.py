"""What `switchboard inspect` shows, read from a running server's admin API.

/admin/system gives the actors and the assignment state in one snapshot taken by the assignment
actor; /admin/agents adds names; /admin/chats/{id} a conversation's participants and last seq;
the history routes the activity log, oldest first.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tools._remote import RemoteError, Server, each


class NoSuch(RemoteError):
    """The server has no agent or chat by that id or email."""


CHAT_ACTOR_PREFIX = "chat:"
ASSIGNMENT_ACTOR = "supervisor"
# Conversation details cost a request each; the busiest (deepest mailbox) are shown first.
DEFAULT_MAX_CHATS = 50
DETAIL_REQUESTS_AT_ONCE = 8


# --- what is shown ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AgentRow:
    id: str
    name: str | None
    email: str | None
    status: str
    connections: int
    load: int
    max_load: int
    idle_seconds: float
    chat_ids: tuple[str, ...]

    @classmethod
    def of(cls, state: dict[str, Any], user: dict[str, Any] | None) -> AgentRow:
        return cls(
            id=state["id"],
            name=user["name"] if user else None,
            email=user["email"] if user else None,
            status=state["status"],
            connections=state["connections"],
            load=state["load"],
            max_load=state["maxLoad"],
            idle_seconds=state["idleSeconds"],
            chat_ids=tuple(state["chatIds"]),
        )


@dataclass(frozen=True, slots=True)
class QueueRow:
    position: int
    chat_id: str
    priority: str
    effective_priority: str
    status: str
    requeued: bool
    waiting_seconds: float

    @classmethod
    def of(cls, entry: dict[str, Any]) -> QueueRow:
        return cls(
            position=entry["position"],
            chat_id=entry["chatId"],
            priority=entry["priority"],
            effective_priority=entry["effectivePriority"],
            status=entry["status"],
            requeued=entry["requeued"],
            waiting_seconds=entry["waitingSeconds"],
        )


@dataclass(frozen=True, slots=True)
class ActorRow:
    name: str
    alive: bool
    mailbox_depth: int
    restarts: int

    @classmethod
    def of(cls, actor: dict[str, Any]) -> ActorRow:
        return cls(actor["name"], actor["alive"], actor["mailboxDepth"], actor["restarts"])


@dataclass(frozen=True, slots=True)
class ChatInfo:
    """A chat as /admin/chats/{id} tells it: who takes part and how far the transcript is."""

    id: str
    title: str
    status: str
    priority: str
    customer: str
    agent: str | None
    last_seq: int
    created_at: str

    @classmethod
    def of(cls, chat: dict[str, Any]) -> ChatInfo:
        agent = chat["agent"]
        return cls(
            id=chat["id"],
            title=chat["title"],
            status=chat["status"],
            priority=chat["priority"],
            customer=chat["customer"],
            agent=f"{agent['name']} <{agent['email']}>" if agent else None,
            last_seq=chat["lastSeq"],
            created_at=chat["createdAt"],
        )


@dataclass(frozen=True, slots=True)
class ConversationRow:
    """A running conversation actor, with its chat when the chat could be read."""

    actor: ActorRow
    chat: ChatInfo | None


@dataclass(frozen=True, slots=True)
class ActivityRow:
    at: str
    kind: str
    by: str
    from_value: str | None
    to_value: str | None
    reason: str
    chat_id: str | None
    agent_id: str | None

    @classmethod
    def of(cls, entry: dict[str, Any]) -> ActivityRow:
        by = entry["actor"] + (f" {entry['actorId']}" if entry.get("actorId") else "")
        return cls(
            at=entry["at"],
            kind=entry["kind"],
            by=by,
            from_value=entry.get("from"),
            to_value=entry.get("to"),
            reason=entry["reason"],
            chat_id=entry.get("chatId"),
            agent_id=entry.get("agentId"),
        )


@dataclass(frozen=True, slots=True)
class NodeRow:
    id: str
    connections: int
    leads: bool


@dataclass(frozen=True, slots=True)
class ClusterInfo:
    """/admin/system's `cluster`: the nodes, who leads, and the leader's fencing token."""

    clustered: bool
    node: str
    """The node that answered."""
    leader: str | None
    fencing_token: int | None
    nodes: tuple[NodeRow, ...]

    @classmethod
    def of(cls, cluster: dict[str, Any]) -> ClusterInfo:
        return cls(
            clustered=cluster["mode"] == "cluster",
            node=cluster["node"],
            leader=cluster["leader"],
            fencing_token=cluster["fencingToken"],
            nodes=tuple(
                NodeRow(node["id"], node["connections"], node["leads"]) for node in cluster["nodes"]
            ),
        )


@dataclass(frozen=True, slots=True)
class Overview:
    url: str
    sessions: int
    cluster: ClusterInfo
    supervisor: ActorRow | None  # the assignment actor, under its registered name
    agents: tuple[AgentRow, ...]
    queue: tuple[QueueRow, ...]
    parked: tuple[str, ...]
    conversations: tuple[ConversationRow, ...]
    conversations_not_shown: int
    restarted: tuple[ActorRow, ...]
    """Actors that restarted or are down: the assignment actor's restarts are here too."""


@dataclass(frozen=True, slots=True)
class AgentDetail:
    agent: AgentRow
    history: tuple[ActivityRow, ...]
    history_total: int
    names: dict[str, str]
    """Agent id -> name, to show the history with names."""


@dataclass(frozen=True, slots=True)
class ChatDetail:
    chat: ChatInfo
    actor: ActorRow | None
    queue: QueueRow | None
    history: tuple[ActivityRow, ...]
    history_total: int
    names: dict[str, str]


InspectView = Overview | AgentDetail | ChatDetail


# --- reading it from the server -----------------------------------------------------------------


async def _users_by_id(server: Server) -> dict[str, dict[str, Any]]:
    return {agent["id"]: agent for agent in await server.every("/admin/agents")}


def _names(users: dict[str, dict[str, Any]]) -> dict[str, str]:
    return {user_id: user["name"] for user_id, user in users.items() if user["name"]}


async def _chat(server: Server, chat_id: str) -> ChatInfo | None:
    """None when deleted or unknown (a conversation actor may outlive its chat briefly)."""
    chat = await server.json_or_none(f"/admin/chats/{chat_id}")
    return ChatInfo.of(chat) if chat is not None else None


async def _chats(server: Server, chat_ids: list[str]) -> dict[str, ChatInfo | None]:
    found = await each(chat_ids, lambda chat_id: _chat(server, chat_id), DETAIL_REQUESTS_AT_ONCE)
    return dict(zip(chat_ids, found, strict=True))


async def fetch_overview(server: Server, max_chats: int = DEFAULT_MAX_CHATS) -> Overview:
    system = await server.json("/admin/system")
    users = await _users_by_id(server)
    actors = [ActorRow.of(actor) for actor in system["actors"]]
    conversations = sorted(
        (actor for actor in actors if actor.name.startswith(CHAT_ACTOR_PREFIX)),
        key=lambda actor: (-actor.mailbox_depth, actor.name),
    )
    shown = conversations[:max_chats]
    chats = await _chats(server, [actor.name.removeprefix(CHAT_ACTOR_PREFIX) for actor in shown])
    return Overview(
        url=server.url,
        sessions=system["sessions"],
        cluster=ClusterInfo.of(system["cluster"]),
        supervisor=next((actor for actor in actors if actor.name == ASSIGNMENT_ACTOR), None),
        agents=tuple(AgentRow.of(state, users.get(state["id"])) for state in system["agents"]),
        queue=tuple(QueueRow.of(entry) for entry in system["queue"]),
        parked=tuple(system["parked"]),
        conversations=tuple(
            ConversationRow(actor, chats[actor.name.removeprefix(CHAT_ACTOR_PREFIX)])
            for actor in shown
        ),
        conversations_not_shown=len(conversations) - len(shown),
        restarted=tuple(actor for actor in actors if actor.restarts or not actor.alive),
    )


def _last(entries: list[Any], count: int) -> tuple[ActivityRow, ...]:
    return tuple(ActivityRow.of(entry) for entry in entries[-count:] if count > 0)


async def fetch_agent(server: Server, wanted: str, history: int) -> AgentDetail:
    """`wanted` is an agent's id or email."""
    system = await server.json("/admin/system")
    users = await _users_by_id(server)
    by_email = {user["email"].lower(): user["id"] for user in users.values()}
    agent_id = by_email.get(wanted.lower(), wanted)
    state = next((agent for agent in system["agents"] if agent["id"] == agent_id), None)
    if state is None:
        raise NoSuch(f"no agent {wanted!r} at {server.url} (give an agent's id or email)")
    entries = await server.every(f"/admin/agents/{agent_id}/history")
    return AgentDetail(
        agent=AgentRow.of(state, users.get(agent_id)),
        history=_last(entries, history),
        history_total=len(entries),
        names=_names(users),
    )


async def fetch_either(server: Server, wanted: str, history: int) -> AgentDetail | ChatDetail:
    """An agent's id (or email), else a chat's id."""
    try:
        return await fetch_agent(server, wanted, history)
    except NoSuch:
        pass
    try:
        return await fetch_chat(server, wanted, history)
    except NoSuch:
        raise NoSuch(f"no agent or chat {wanted!r} at {server.url}") from None


async def fetch_chat(server: Server, chat_id: str, history: int) -> ChatDetail:
    chat = await _chat(server, chat_id)
    if chat is None:
        raise NoSuch(f"no chat {chat_id!r} at {server.url}")
    system = await server.json("/admin/system")
    actor = next(
        (a for a in system["actors"] if a["name"] == f"{CHAT_ACTOR_PREFIX}{chat_id}"), None
    )
    entry = next((e for e in system["queue"] if e["chatId"] == chat_id), None)
    entries = await server.every(f"/admin/chats/{chat_id}/history")
    return ChatDetail(
        chat=chat,
        actor=ActorRow.of(actor) if actor else None,
        queue=QueueRow.of(entry) if entry else None,
        history=_last(entries, history),
        history_total=len(entries),
        names=_names(await _users_by_id(server)),
    )
