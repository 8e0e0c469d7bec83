"""Leases in the bus: a key naming its holder, that expires unless the holder renews it.

A lease alone does not make one writer: a holder paused past its expiry (a long collection, a
SIGSTOP, a lost network) may still act when it wakes, believing it holds it. That is what the
store's fencing token is for (`Store.claim_routing`); the lease only decides who claims.
Each operation is one Lua script, so it is atomic in the server, and idempotent, so the
client's retry after a lost reply cannot take or drop a lease by mistake.
"""

from __future__ import annotations

from bus._client import Bus

# Take the lease if free, or extend it if ours: 1 held, 0 someone else's.
_ACQUIRE = """
local holder = redis.call('GET', KEYS[1])
if not holder then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
if holder == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
"""

# Extend the lease only while it is ours: 1 extended, 0 lost (expired or someone else's).
_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
"""

# Give the lease up only if it is ours, so a late release cannot free another's.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


class Lease:
    """One named lease; `holder` identifies this process (a node id)."""

    def __init__(self, bus: Bus, name: str, holder: str, ttl_seconds: float) -> None:
        self._bus = bus
        self.name = name
        self.holder = holder
        self.ttl_ms = max(1, round(ttl_seconds * 1000))
        self._acquire = bus.client.register_script(_ACQUIRE)
        self._renew = bus.client.register_script(_RENEW)
        self._release = bus.client.register_script(_RELEASE)

    async def acquire(self) -> bool:
        """Take the lease if nobody holds it (or extend it if this holder does)."""
        with self._bus.translated():
            return bool(await self._acquire(keys=[self.name], args=[self.holder, self.ttl_ms]))

    async def renew(self) -> bool:
        """Extend the lease for another TTL; False if it is no longer this holder's."""
        with self._bus.translated():
            return bool(await self._renew(keys=[self.name], args=[self.holder, self.ttl_ms]))

    async def release(self) -> bool:
        """Give the lease up at once (a clean stop), so another need not wait for its expiry."""
        with self._bus.translated():
            return bool(await self._release(keys=[self.name], args=[self.holder]))

    async def current_holder(self) -> str | None:
        with self._bus.translated():
            value = await self._bus.client.get(self.name)
        return None if value is None else value.decode()
