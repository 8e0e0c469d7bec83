"""Cluster membership and presence in the bus, each kept alive by its node's heartbeat.

- `switchboard:node:<id>`: the node's description (what `inspect` shows), with a TTL: a node is
  a member while its key exists. `switchboard:nodes` lists the ids ever seen, pruned as their
  keys are found gone.
- `switchboard:presence:<id>`: a hash of user id -> live connections on that node, with the same
  TTL, so a node that dies takes its presence with it when the TTL runs out, without anyone
  cleaning up after it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from bus._client import Bus, key

NODES = key("nodes")


def node_key(node_id: str) -> str:
    return key("node", node_id)


def presence_key(node_id: str) -> str:
    return key("presence", node_id)


class Membership:
    """This node's entries in the bus, and what it can read of the others'."""

    def __init__(self, bus: Bus, node_id: str, ttl_seconds: float) -> None:
        self._bus = bus
        self.node_id = node_id
        self.ttl_ms = max(1, round(ttl_seconds * 1000))

    async def beat(self, info: bytes, presence: Mapping[str, int] | None = None) -> None:
        """Say this node is alive for another TTL; with `presence`, replace its presence hash
        (after the bus lost it, e.g. Valkey restarted empty)."""
        node, users = node_key(self.node_id), presence_key(self.node_id)
        with self._bus.translated():
            async with self._bus.client.pipeline(transaction=True) as pipe:
                pipe.set(node, info, px=self.ttl_ms)
                pipe.sadd(NODES, [self.node_id])
                if presence is not None:
                    pipe.delete([users])
                    live = {user: count for user, count in presence.items() if count > 0}
                    if live:
                        pipe.hset(users, live)
                pipe.pexpire(users, self.ttl_ms)

    async def leave(self) -> None:
        """A clean stop: the node and its presence are gone at once, not after the TTL."""
        with self._bus.translated():
            async with self._bus.client.pipeline(transaction=True) as pipe:
                pipe.delete([node_key(self.node_id), presence_key(self.node_id)])
                pipe.srem(NODES, [self.node_id])

    async def set_presence(self, user_id: str, connections: int) -> None:
        """This node now holds `connections` live connections of the user (0: none)."""
        users = presence_key(self.node_id)
        with self._bus.translated():
            async with self._bus.client.pipeline(transaction=True) as pipe:
                if connections > 0:
                    pipe.hset(users, {user_id: connections})
                else:
                    pipe.hdel(users, [user_id])
                pipe.pexpire(users, self.ttl_ms)

    async def members(self) -> dict[str, bytes]:
        """Every live node's description, by id."""
        with self._bus.translated():
            ids = sorted(m.decode() for m in await self._bus.client.smembers(NODES))
            if not ids:
                return {}
            infos = await self._bus.client.mget([node_key(i) for i in ids])
            gone = [i for i, info in zip(ids, infos, strict=True) if info is None]
            if gone:
                await self._bus.client.srem(NODES, gone)
        return {i: info for i, info in zip(ids, infos, strict=True) if info is not None}

    async def presence(self, node_ids: Iterable[str]) -> dict[str, dict[str, int]]:
        """The presence hash of each node named, by node id."""
        ids = list(node_ids)
        with self._bus.translated():
            async with self._bus.client.pipeline(transaction=False) as pipe:
                replies = [pipe.hgetall(presence_key(i)) for i in ids]
            return {
                i: {user.decode(): int(count) for user, count in (await reply).items()}
                for i, reply in zip(ids, replies, strict=True)
            }
