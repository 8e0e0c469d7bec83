"""`ClusterSystem`: the domain as the API sees it on a node of a cluster.

It answers as `actors.System` does, and the API cannot tell the difference: on the arbiter each
call runs in the domain here, on any other node it is forwarded to the arbiter (`Node.call`).
Connections stay with the node that holds their socket.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import suppress
from dataclasses import dataclass

import trio

from actors import (
    AgentView,
    History,
    OpenedChat,
    Route,
    Sent,
    Session,
    Speaker,
    System,
    SystemSnapshot,
)
from cluster._node import Node
from router import ActorDead, ActorInfo
from store import ActedBy, AgentStatus, Chat, MessageStatus, Priority, Role, User


@dataclass(frozen=True, slots=True)
class NodeView:
    node_id: str
    connections: int  # live websocket and Socket.IO sessions on that node
    leads: bool


@dataclass(frozen=True, slots=True)
class ClusterView:
    """What inspect and /admin/system show of the cluster, as the answering node knows it:
    the members as of their last beat (one tick old at most), the leader as of now."""

    node_id: str  # the node that answers
    clustered: bool  # False: one process, no bus
    leader_id: str | None  # None between an arbiter's death and the next one's takeover
    routing_token: int | None  # the leader's fencing token
    nodes: tuple[NodeView, ...]

    @classmethod
    def alone(cls, node_id: str, connections: int) -> ClusterView:
        """A process without a bus: one node, which arbitrates, and no fencing."""
        return cls(node_id, False, node_id, None, (NodeView(node_id, connections, True),))


class ClusterSystem(System):
    # The parent's state is the arbiter's domain, which this node may or may not run: it is
    # reached through the node, so the parent's constructor is not called.
    def __init__(self, node: Node) -> None:
        self.store = node.store
        self.config = node.system_config
        self.node = node

    def cluster(self) -> ClusterView:
        node = self.node
        leader = node.leader_id
        members = dict(node.members)
        # This node's own line is as of now, not as of its last beat.
        members[node.node_id] = members.get(node.node_id, {}) | {"connections": len(node.local)}
        token = node.token if leader == node.node_id else members.get(leader or "", {}).get("token")
        nodes = tuple(
            NodeView(node_id, int(info.get("connections", 0)), node_id == leader)
            for node_id, info in sorted(members.items())
        )
        return ClusterView(node.node_id, True, leader, token, nodes)

    # --- sessions: kept where their socket is --------------------------------------------------

    async def connect(self, session: Session, role: Role) -> None:
        await self.node.connect(session, role)

    async def disconnect(self, session: Session, role: Role) -> None:
        await self.node.disconnect(session, role)

    def sign_out(self, user_id: str, reason: str, *, keep_token: str | None = None) -> int:
        return self.node.sign_out(user_id, reason, keep_token=keep_token)

    def close_token(self, token_id: str, reason: str) -> int:
        return self.node.close_token(token_id, reason)

    def connections(self, user_id: str) -> int:
        return self.node.presence.connections(user_id)

    @property
    def assignment_running(self) -> bool:
        system = self.node.system
        if system is not None:
            return system.assignment_running
        return self.node.leader_id is not None

    def actor_states(self) -> list[ActorInfo]:
        system = self.node.system
        return [] if system is None else system.actor_states()

    def route(self, chat_id: str) -> Route | None:
        return self.node.routes.get(chat_id)

    # --- the domain: on the arbiter --------------------------------------------------------------

    async def open_chat(
        self, customer_id: str, *, title: str, description: str, priority: Priority
    ) -> OpenedChat:
        answer: OpenedChat = await self.node.call(
            "open_chat",
            {
                "customer_id": customer_id,
                "title": title,
                "description": description,
                "priority": priority,
            },
        )
        return answer

    async def set_agent_status(
        self, agent_id: str, status: AgentStatus, *, by: ActedBy, actor_id: str | None
    ) -> AgentView:
        answer: AgentView = await self.node.call(
            "set_agent_status",
            {"agent_id": agent_id, "status": status, "by": by, "actor_id": actor_id},
        )
        return answer

    async def set_max_load(self, agent_id: str, max_load: int, *, actor_id: str) -> AgentView:
        answer: AgentView = await self.node.call(
            "set_max_load", {"agent_id": agent_id, "max_load": max_load, "actor_id": actor_id}
        )
        return answer

    async def park_chat(self, chat_id: str, *, by: ActedBy, actor_id: str | None) -> Chat:
        answer: Chat = await self.node.call(
            "park_chat", {"chat_id": chat_id, "by": by, "actor_id": actor_id}
        )
        return answer

    async def resolve_chat(self, chat_id: str, *, by: ActedBy, actor_id: str | None) -> Chat:
        answer: Chat = await self.node.call(
            "resolve_chat", {"chat_id": chat_id, "by": by, "actor_id": actor_id}
        )
        return answer

    async def delete_chat(self, chat_id: str, *, actor_id: str) -> bool:
        answer: bool = await self.node.call(
            "delete_chat", {"chat_id": chat_id, "actor_id": actor_id}
        )
        return answer

    async def reassign_chat(self, chat_id: str, agent_id: str, *, actor_id: str) -> Chat:
        answer: Chat = await self.node.call(
            "reassign_chat", {"chat_id": chat_id, "agent_id": agent_id, "actor_id": actor_id}
        )
        return answer

    async def add_agent(self, agent_id: str, max_load: int) -> None:
        await self.node.call("add_agent", {"agent_id": agent_id, "max_load": max_load})

    async def edit_agent_profile(self, user: User) -> User:
        answer: User = await self.node.call("edit_agent_profile", {"user": user})
        return answer

    async def chat_details_changed(self, chat_id: str, title: str, description: str) -> None:
        await self.node.call(
            "chat_details_changed",
            {"chat_id": chat_id, "title": title, "description": description},
        )

    async def remove_agent(self, agent_id: str) -> None:
        await self.node.call("remove_agent", {"agent_id": agent_id})

    async def snapshot(self) -> SystemSnapshot:
        answer: SystemSnapshot = await self.node.call("snapshot", {})
        return answer

    async def watch_floor(self, user_id: str, session_id: str) -> None:
        await self.node.call("watch_floor", {"user_id": user_id, "session_id": session_id})

    async def unwatch_floor(self, session_id: str) -> None:
        await self.node.call("unwatch_floor", {"session_id": session_id})

    async def send_message(
        self, chat_id: str, sender: Speaker, *, client_msg_id: str, content: str
    ) -> Sent:
        answer: Sent = await self.node.call(
            "send_message",
            {
                "chat_id": chat_id,
                "sender": sender,
                "client_msg_id": client_msg_id,
                "content": content,
            },
        )
        return answer

    async def send_messages(
        self, chat_id: str, sender: Speaker, sends: Sequence[tuple[str, str]]
    ) -> list[Sent | Exception]:
        """One call each, in order: the bus has no batch call (yet), so none is stored together."""
        answers: list[Sent | Exception] = []
        for client_msg_id, content in sends:
            try:
                answers.append(
                    await self.send_message(
                        chat_id, sender, client_msg_id=client_msg_id, content=content
                    )
                )
            except Exception as error:
                answers.append(error)
        return answers

    async def mark_read(
        self, chat_id: str, reader: Speaker, *, seq: int, status: MessageStatus
    ) -> None:
        await self.node.call(
            "mark_read", {"chat_id": chat_id, "reader": reader, "seq": seq, "status": status}
        )

    async def history(
        self, chat_id: str, reader: Speaker, *, after_seq: int, limit: int
    ) -> History:
        answer: History = await self.node.call(
            "history",
            {"chat_id": chat_id, "reader": reader, "after_seq": after_seq, "limit": limit},
        )
        return answer

    async def typing(self, chat_id: str, speaker: Speaker, *, on: bool) -> None:
        """Best effort, as on one node: typing that cannot reach the arbiter is dropped."""
        with suppress(ActorDead, trio.TooSlowError):
            await self.node.call("typing", {"chat_id": chat_id, "speaker": speaker, "on": on})
