"""A Switchboard node in cluster mode: the arbiter lease, forwarding to the arbiter, sessions and
events across nodes over the bus.

One node at a time holds the arbiter lease (`switchboard:lease:arbiter`, renewed every third of
its TTL) and runs the domain there: the assignment actor (fenced by the store's token, see
`_fencing.py`), the conversations and the floor feed. Every other node is an edge: it forwards
each ask to the arbiter over the bus and waits for the answer, so each chat's transcript has one
writer (the arbiter's conversation actor) and the ack still comes after the append is durable.

Channels (each node subscribes to two, once, so connecting a socket costs no subscription):
- `switchboard:inbox:<node>`: what is addressed to one node. The arbiter gets calls and session
  reports on its inbox; an edge gets the answers and the events for its own sessions on its own.
- `switchboard:broadcast`: what every node hears: who leads now, route changes (each node keeps a
  copy of the routes, which the edges read to authorise typing), sign-outs.

Sessions: every node reports its live sessions (id, user, token, role) to the arbiter on
connect, on disconnect and in full on every beat. The arbiter registers each remote one in its
presence as a session whose `offer` publishes to that node's inbox, so the domain delivers to a
socket on another node the way it delivers to one of its own. A node that stops beating drops
out of the membership when its key expires; the arbiter then detaches its sessions, and the
agents among them get their grace period there, on the arbiter, which survives the node.
Presence per node is also kept in Valkey with the node's TTL (`bus.Membership`), for
`inspect` and /admin/system.

Over 500 lines: one node's lease loop, forwarding and sessions across nodes share the node's state
(its lease, its bus, its presence).
"""

from __future__ import annotations

import json
import logging
import os
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from typing import Any, cast

import trio

from actors import Event, Session, System, SystemConfig, open_system
from actors.events import CLOSE_SIGNED_OUT
from actors.presence import Presence, Route, Routes
from bus import Bus, BusError, Lease, Membership, Published, key
from cluster._codec import CodecError, decode, encode
from cluster._fencing import FencedStore
from router import ActorDead, Refused, RouterError
from store import Backend, Role, StoreError, StoreUnavailable, new_id

log = logging.getLogger("cluster")

ARBITER_LEASE = key("lease", "arbiter")
BROADCAST = key("broadcast")
# Events waiting to be published to other nodes; past this, the sessions they are for are
# closed as slow readers (they resume from the store when they reconnect).
OUTBOUND_EVENTS = 10_000
LEAVE_SECONDS = 2.0
# Publications sent in one round trip at most.
PUBLISH_BATCH = 256

# What an edge may ask the arbiter to run: the domain's own methods, by name.
FORWARDED = frozenset(
    {
        "open_chat",
        "set_agent_status",
        "set_max_load",
        "park_chat",
        "resolve_chat",
        "delete_chat",
        "reassign_chat",
        "add_agent",
        "edit_agent_profile",
        "chat_details_changed",
        "remove_agent",
        "snapshot",
        "watch_floor",
        "unwatch_floor",
        "send_message",
        "mark_read",
        "history",
        "typing",
    }
)


def inbox(node_id: str) -> str:
    return key("inbox", node_id)


def default_node_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{new_id()[-6:]}"


@dataclass(frozen=True, slots=True)
class ClusterConfig:
    node_id: str
    lease_seconds: float = 5.0
    # How long an edge waits for the arbiter's answer (also while no node leads). Shorter than
    # the edge's own bound on an ask (10 s), so that a wait with no arbiter ends as
    # "unavailable" (503, retry), not as the edge's "overloaded".
    forward_seconds: float = 8.0

    @property
    def tick_seconds(self) -> float:
        return self.lease_seconds / 3


class NotLeading(Exception):
    """A call reached a node that no longer arbitrates; the caller asks the new one."""


@dataclass(slots=True)
class _Pending:
    done: trio.Event = field(default_factory=trio.Event)
    answer: dict[str, Any] | None = None


class MirroredRoutes(Routes):
    """The routes, as the arbiter's assignment actor publishes them and every node reads them."""

    def __init__(self, announce: Callable[[dict[str, Any]], None]) -> None:
        super().__init__()
        self._announce = announce
        self.leading = False

    def publish(self, route: Route) -> None:
        super().publish(route)
        if self.leading:
            self._announce({"k": "route", "route": route})

    def withdraw(self, chat_id: str) -> None:
        super().withdraw(chat_id)
        if self.leading:
            self._announce({"k": "withdraw", "chat": chat_id})

    def clear(self) -> None:
        super().clear()
        if self.leading:
            self._announce({"k": "clear"})

    def apply(self, note: dict[str, Any]) -> None:
        """A change the arbiter announced."""
        match note["k"]:
            case "route":
                Routes.publish(self, note["route"])
            case "withdraw":
                Routes.withdraw(self, note["chat"])
            case "clear":
                Routes.clear(self)


class Node:
    """This process's part in the cluster; `ClusterSystem` is what the API sees of it."""

    def __init__(
        self, store: Backend, bus: Bus, config: ClusterConfig, system_config: SystemConfig
    ) -> None:
        self.store = store
        self.bus = bus
        self.config = config
        self.system_config = system_config
        self.node_id = config.node_id
        self.presence = Presence()
        self.routes = MirroredRoutes(self._broadcast_soon)
        self.lease = Lease(bus, ARBITER_LEASE, self.node_id, config.lease_seconds)
        self.membership = Membership(bus, self.node_id, config.lease_seconds)
        self.leader_id: str | None = None
        self.leader_changed = trio.Event()
        self.system: System | None = None  # the domain, while this node arbitrates
        self.token: int | None = None
        self.local: dict[str, tuple[Session, Role]] = {}  # this node's own sessions
        self.remote: dict[str, dict[str, tuple[Session, Role]]] = {}  # arbiter: by node
        self.members: dict[str, dict[str, Any]] = {}
        self.takeovers: list[float] = []  # trio time each time this node took the lease
        self._pending: dict[str, _Pending] = {}
        self._outbound_send, self._outbound = trio.open_memory_channel[tuple[str, bytes]](
            OUTBOUND_EVENTS
        )
        self._nursery: trio.Nursery | None = None
        self._step_down: trio.CancelScope | None = None
        # Set once the domain this node starts on taking the lease runs (or failed to start):
        # a session that connects or leaves meanwhile waits for it, or the assignment actor, which
        # read the presence when it started, would never hear of it.
        self._domain_started: trio.Event | None = None

    # --- running ------------------------------------------------------------------------------

    async def run(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with (
            self.bus.subscribe(inbox(self.node_id), BROADCAST) as deliveries,
            trio.open_nursery() as nursery,
        ):
            self._nursery = nursery
            nursery.start_soon(self._read, deliveries)
            nursery.start_soon(self._publish)
            nursery.start_soon(self._beat)
            nursery.start_soon(self._elect)
            task_status.started()

    async def _read(self, deliveries: trio.MemoryReceiveChannel[Any]) -> None:
        async for delivery in deliveries:
            if not isinstance(delivery, Published):
                # Resubscribed: what was published meanwhile is lost; the arbiter's routes are
                # fetched again at the next beat, and the sessions are reported in full anyway.
                self._resync_routes_soon()
                continue
            try:
                note = decode(delivery.data)
            except CodecError as error:
                log.warning("dropped a bus payload: %s", error)
                continue
            if delivery.channel == BROADCAST:
                self._on_broadcast(note)
            else:
                await self._on_inbox(note)

    async def _publish(self) -> None:
        """Sends what was queued without waiting (events, replies, route changes), in order:
        whatever queued up meanwhile goes in one round trip to the bus."""
        async for first in self._outbound:
            batch = [first]
            while len(batch) < PUBLISH_BATCH:
                try:
                    batch.append(self._outbound.receive_nowait())
                except trio.WouldBlock:
                    break
            try:
                await self.bus.publish_all(batch)
            except BusError as error:
                log.warning("lost %d bus publications: %s", len(batch), error)

    def _queue(self, channel: str, note: dict[str, Any]) -> None:
        self._outbound_send.send_nowait((channel, encode(note)))

    def _broadcast_soon(self, note: dict[str, Any]) -> None:
        with suppress(trio.WouldBlock):
            self._queue(BROADCAST, note | {"from": self.node_id})

    # --- the lease ----------------------------------------------------------------------------

    async def _elect(self) -> None:
        while True:
            try:
                asked = trio.current_time()
                if await self.lease.acquire():
                    await self._lead(asked)
                else:
                    self._set_leader(await self.lease.current_holder())
            except BusError as error:
                log.warning("cannot reach the bus for the arbiter lease: %s", error)
            except StoreError as error:
                log.warning("cannot claim the routing token: %s", error)
            await trio.sleep(self.config.tick_seconds)

    async def _lead(self, acquired: float) -> None:
        """Run the domain while the lease taken at `acquired` (trio's clock) holds."""
        token = await self.store.claim_routing(self.node_id)
        self.token = token
        self.takeovers.append(trio.current_time())
        log.info("node %s arbitrates now (routing token %d)", self.node_id, token)
        try:
            with trio.CancelScope() as scope:
                self._step_down = scope

                def refused(why: str) -> None:
                    log.warning("%s: another node arbitrates now; stepping down", why)
                    scope.cancel()

                fenced = FencedStore(
                    self.store,
                    token,
                    on_fenced=refused,
                    valid_until=acquired + self.config.lease_seconds,
                )
                self._domain_started = trio.Event()
                async with (
                    trio.open_nursery() as nursery,
                    open_system(
                        cast(Backend, fenced),
                        self.system_config,
                        presence=self.presence,
                        routes=self.routes,
                    ) as system,
                ):
                    self.routes.leading = True
                    self.system = system
                    self._domain_started.set()
                    self._set_leader(self.node_id)
                    self._broadcast_soon({"k": "leader", "node": self.node_id, "token": token})
                    # The routes as rebuilt, for the nodes (the assignment actor published them
                    # before `leading` was set).
                    self._announce_routes()
                    nursery.start_soon(self._renew, scope, fenced)
                    await trio.sleep_forever()
        finally:
            if self._domain_started is not None:
                self._domain_started.set()
                self._domain_started = None
            self.routes.leading = False
            self.system = None
            self._step_down = None
            self._detach_all_remote()
            if self.leader_id == self.node_id:
                self._set_leader(None)
            log.warning("node %s no longer arbitrates", self.node_id)

    async def _renew(self, scope: trio.CancelScope, fenced: FencedStore) -> None:
        renewed = trio.current_time()
        while True:
            await trio.sleep(self.config.tick_seconds)
            try:
                asked = trio.current_time()
                if not await self.lease.renew():
                    log.warning("node %s lost the arbiter lease; stepping down", self.node_id)
                    scope.cancel()
                    return
                renewed = trio.current_time()
                fenced.valid_until = asked + self.config.lease_seconds
            except BusError:
                # Not sure whether the lease still holds: step down before it could expire.
                if trio.current_time() - renewed >= self.config.lease_seconds * 2 / 3:
                    scope.cancel()
                    return

    def _set_leader(self, node_id: str | None) -> None:
        if node_id != self.leader_id:
            self.leader_id = node_id
            self.leader_changed.set()
            self.leader_changed = trio.Event()
            if node_id is not None and node_id != self.node_id:
                self._report_sessions_soon()
                self._resync_routes_soon()

    def _announce_routes(self) -> None:
        self._broadcast_soon({"k": "routes", "routes": self._route_list()})

    def _route_list(self) -> list[Route]:
        return list(self.routes._routes.values())

    # --- membership and presence --------------------------------------------------------------

    async def _beat(self) -> None:
        while True:
            try:
                counts: dict[str, int] = {}
                for session, _ in self.local.values():
                    counts[session.user_id] = counts.get(session.user_id, 0) + 1
                info = {
                    "node": self.node_id,
                    "pid": os.getpid(),
                    "connections": len(self.local),
                    "leader": self.system is not None,
                    # The leader's fencing token, so that every node can show it.
                    "token": self.token if self.system is not None else None,
                }
                await self.membership.beat(json.dumps(info).encode(), presence=counts)
                members = await self.membership.members()
                self.members = {node: json.loads(data) for node, data in members.items()}
                if self.system is not None:
                    for gone in set(self.remote) - set(members):
                        log.warning("node %s stopped beating: its sessions are gone", gone)
                        self._replace_remote(gone, [])
                else:
                    self._report_sessions_soon()
            except BusError as error:
                log.warning("cannot beat on the bus: %s", error)
            await trio.sleep(self.config.tick_seconds)

    def _session_list(self) -> list[list[Any]]:
        return [[s.id, s.user_id, s.token_id, role] for s, role in self.local.values()]

    def _report_sessions_soon(self) -> None:
        leader = self.leader_id
        if leader is not None and leader != self.node_id:
            with suppress(trio.WouldBlock):
                self._queue(
                    inbox(leader),
                    {"k": "sessions", "from": self.node_id, "sessions": self._session_list()},
                )

    def _resync_routes_soon(self) -> None:
        if self._nursery is not None and self.leader_id not in (None, self.node_id):
            self._nursery.start_soon(self._fetch_routes)

    async def _fetch_routes(self) -> None:
        with suppress(ActorDead, Refused, trio.TooSlowError, BusError):
            routes = await self.call("routes", {})
            if self.system is None:
                Routes.clear(self.routes)
                for route in routes:
                    Routes.publish(self.routes, route)

    # --- sessions (the arbiter's side) --------------------------------------------------------

    def _remote_session(self, node_id: str, entry: list[Any]) -> tuple[Session, Role]:
        session_id, user_id, token_id, role = entry
        channel = inbox(node_id)

        def offer(event: Event) -> None:
            self._queue(channel, {"k": "event", "user": user_id, "session": session_id, "e": event})

        def close(code: int, reason: str) -> None:
            with suppress(trio.WouldBlock):
                self._queue(
                    channel,
                    {
                        "k": "close",
                        "user": user_id,
                        "session": session_id,
                        "code": code,
                        "reason": reason,
                    },
                )

        return Session(session_id, user_id, offer, close, token_id), Role(role)

    def _replace_remote(self, node_id: str, entries: list[list[Any]]) -> None:
        """The node's sessions are now `entries` (in full)."""
        known = self.remote.setdefault(node_id, {})
        wanted = {entry[0]: entry for entry in entries}
        for session_id in set(known) - set(wanted):
            self._detach_remote(node_id, session_id)
        for session_id, entry in wanted.items():
            if session_id not in known:
                self._attach_remote(node_id, entry)
        if not entries:
            self.remote.pop(node_id, None)

    def _attach_remote(self, node_id: str, entry: list[Any]) -> None:
        session, role = self._remote_session(node_id, entry)
        self.remote.setdefault(node_id, {})[session.id] = (session, role)
        self._domain_soon(lambda system: system.connect(session, role))

    def _detach_remote(self, node_id: str, session_id: str) -> None:
        found = self.remote.get(node_id, {}).pop(session_id, None)
        if found is not None:
            session, role = found
            self._domain_soon(lambda system: system.disconnect(session, role))

    def _detach_all_remote(self) -> None:
        for sessions in self.remote.values():
            for session, _ in sessions.values():
                self.presence.detach(session)
        self.remote.clear()

    def _domain_soon(self, work: Callable[[System], Awaitable[None]]) -> None:
        system = self.system
        if system is not None and self._nursery is not None:

            async def run() -> None:
                with suppress(ActorDead, trio.TooSlowError):
                    await work(system)

            self._nursery.start_soon(run)

    # --- the inbox ----------------------------------------------------------------------------

    async def _on_inbox(self, note: dict[str, Any]) -> None:
        match note.get("k"):
            case "call":
                assert self._nursery is not None
                self._nursery.start_soon(self._answer, note)
            case "reply":
                pending = self._pending.get(note["id"])
                if pending is not None:
                    pending.answer = note
                    pending.done.set()
            case "sessions":
                if self.system is not None:
                    self._replace_remote(note["from"], note["sessions"])
            case "attach":
                if self.system is not None:
                    self._attach_remote(note["from"], note["session"])
            case "detach":
                if self.system is not None:
                    self._detach_remote(note["from"], note["session"])
            case "event":
                self.presence.offer_to(note["user"], note["session"], note["e"])
            case "close":
                found = self.local.get(note["session"])
                if found is not None:
                    found[0].close(note["code"], note["reason"])
            case other:
                log.warning("unknown inbox note %r", other)

    async def _answer(self, note: dict[str, Any]) -> None:
        reply: dict[str, Any] = {"k": "reply", "id": note["id"]}
        try:
            reply["ok"] = await self._run_here(note["op"], note["args"])
        except Refused as refusal:
            reply["refused"] = [refusal.code, refusal.message]
        except NotLeading:
            reply["moved"] = True
        except StoreUnavailable as error:  # the asker answers as this node would: retry later
            reply["store_unavailable"] = str(error)
        except Exception as error:  # the asker gets "unavailable"; the cause is logged here
            log.warning("forwarded %s failed: %r", note["op"], error)
            reply["failed"] = type(error).__name__
        with suppress(trio.WouldBlock):
            self._queue(inbox(note["from"]), reply)

    async def _run_here(self, op: str, args: dict[str, Any]) -> Any:
        system = self.system
        if system is None:
            raise NotLeading()
        if op == "routes":
            return self._route_list()
        if op not in FORWARDED:
            raise Refused("unknown_operation", f"{op} is not forwarded")
        leading = self._step_down
        try:
            return await getattr(system, op)(**args)
        except (RuntimeError, RouterError) as error:
            if isinstance(error, Refused) or leading is None or not leading.cancel_called:
                raise
            # The domain stopped under the ask (this node stepped down): an actor it needed
            # was gone or could not be started. The next arbiter answers it; a send's retry
            # is deduplicated by its client id, as after an arbiter's death.
            raise NotLeading() from error

    def _on_broadcast(self, note: dict[str, Any]) -> None:
        if note.get("from") == self.node_id:
            return
        match note.get("k"):
            case "leader":
                self._set_leader(note["node"])
            case "route" | "withdraw" | "clear":
                if self.system is None:
                    self.routes.apply(note)
            case "routes":
                if self.system is None:
                    Routes.clear(self.routes)
                    for route in note["routes"]:
                        Routes.publish(self.routes, route)
            case "sign_out":
                self.presence.close_user(
                    note["user"], CLOSE_SIGNED_OUT, note["reason"], keep_token=note.get("keep")
                )
            case "close_token":
                self.presence.close_token(note["token"], CLOSE_SIGNED_OUT, note["reason"])

    # --- asking the arbiter -------------------------------------------------------------------

    async def call(self, op: str, args: dict[str, Any]) -> Any:
        """Run `op` on the arbiter (here if this node is it) and return its answer."""
        with trio.move_on_after(self.config.forward_seconds):
            while True:
                leader = self.leader_id
                if leader is None:
                    await self.leader_changed.wait()
                    continue
                if leader == self.node_id:
                    try:
                        return await self._run_here(op, args)
                    except NotLeading:
                        await self.leader_changed.wait()
                        continue
                answer = await self._ask(leader, op, args)
                if answer is None or "moved" in answer:
                    # Nobody listens at that inbox (the arbiter died) or it stepped down.
                    if self.leader_id == leader:
                        self._set_leader(None)
                    continue
                if "refused" in answer:
                    code, message = answer["refused"]
                    raise Refused(code, message)
                if "store_unavailable" in answer:
                    raise StoreUnavailable(answer["store_unavailable"])
                if "failed" in answer:
                    raise ActorDead(f"the arbiter ({answer['failed']})")
                return answer["ok"]
        raise ActorDead("the arbiter (no node answered in time)")

    async def _ask(self, leader: str, op: str, args: dict[str, Any]) -> dict[str, Any] | None:
        request_id = new_id()
        pending = self._pending[request_id] = _Pending()
        try:
            note = {"k": "call", "id": request_id, "from": self.node_id, "op": op, "args": args}
            try:
                listeners = await self.bus.publish(inbox(leader), encode(note))
            except BusError:
                await trio.sleep(self.config.tick_seconds)
                return None
            if listeners == 0:
                await trio.sleep(self.config.tick_seconds / 4)
                return None
            # The arbiter may die with the call: then no answer comes before the lease moves.
            with trio.move_on_after(self.config.lease_seconds * 2):
                await pending.done.wait()
            return pending.answer
        finally:
            del self._pending[request_id]

    # --- this node's sessions -----------------------------------------------------------------

    async def _domain_settled(self) -> None:
        """Return once this node's domain is not starting (it runs, or this node is an edge)."""
        starting = self._domain_started
        if starting is not None:
            await starting.wait()

    async def connect(self, session: Session, role: Role) -> None:
        self.local[session.id] = (session, role)
        await self._domain_settled()
        system = self.system
        if system is not None:
            await system.connect(session, role)
            return
        self.presence.attach(session)
        self._tell_leader(
            {"k": "attach", "session": [session.id, session.user_id, session.token_id, role]}
        )

    async def disconnect(self, session: Session, role: Role) -> None:
        self.local.pop(session.id, None)
        await self._domain_settled()
        system = self.system
        if system is not None:
            await system.disconnect(session, role)
            return
        self.presence.detach(session)
        self._tell_leader({"k": "detach", "session": session.id})

    def _tell_leader(self, note: dict[str, Any]) -> None:
        leader = self.leader_id
        if leader is not None and leader != self.node_id:
            with suppress(trio.WouldBlock):
                self._queue(inbox(leader), note | {"from": self.node_id})

    def sign_out(self, user_id: str, reason: str, *, keep_token: str | None = None) -> int:
        self._broadcast_soon(
            {"k": "sign_out", "user": user_id, "reason": reason, "keep": keep_token}
        )
        return self.presence.close_user(user_id, CLOSE_SIGNED_OUT, reason, keep_token=keep_token)

    def close_token(self, token_id: str, reason: str) -> int:
        self._broadcast_soon({"k": "close_token", "token": token_id, "reason": reason})
        return self.presence.close_token(token_id, CLOSE_SIGNED_OUT, reason)


@asynccontextmanager
async def open_node(
    store: Backend, bus: Bus, config: ClusterConfig, system_config: SystemConfig
) -> AsyncIterator[Node]:
    """Join the cluster for the block; leaves (and gives up the lease) cleanly at its end."""
    node = Node(store, bus, config, system_config)
    async with trio.open_nursery() as nursery:
        await nursery.start(node.run)
        try:
            yield node
        finally:
            # A clean stop: the next arbiter need not wait for the lease to expire.
            with (
                trio.CancelScope(shield=True),
                trio.move_on_after(LEAVE_SECONDS),
                suppress(BusError),
            ):
                if node.system is not None:
                    await node.lease.release()
                await node.membership.leave()
            nursery.cancel_scope.cancel()
