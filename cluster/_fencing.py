"""The store as the arbiter's domain uses it in cluster mode.

Every routing commit carries the fencing token its node got from `claim_routing` when it took the
lease: the store refuses a commit under an older token (`Fenced`), so a former arbiter cannot
write a decision. The domain's other calls (a conversation's appends and receipts, a new chat)
carry no token; instead each is made only while the lease is certainly still this node's: until
`valid_until`, the time the last successful acquire or renewal was sent plus the lease (the key
in the bus cannot expire sooner). A node that was frozen past that (a long pause, SIGSTOP) finds
it out at its first call after waking, before anything reaches the store. Either refusal tells
the node to step down at once (`on_fenced`, with the reason), and the caller gets
`StoreUnavailable`, which the domain answers as a store outage: the client retries and reaches the
new arbiter.

The domain does not know it runs in a cluster.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import trio

from store import Activity, AgentRouting, Backend, Chat, ChatRouting, Fenced, StoreUnavailable


class FencedStore:
    """`store`, with `record_routing` fenced by `token` and every call bounded by the lease."""

    def __init__(
        self,
        store: Backend,
        token: int,
        on_fenced: Callable[[str], None],
        *,
        valid_until: float = math.inf,
    ) -> None:
        self._store = store
        self.token = token
        self._on_fenced = on_fenced
        self.valid_until = valid_until
        """On trio's clock; the node moves it on with each renewal of its lease."""

    def _check_lease(self) -> None:
        if trio.current_time() >= self.valid_until:
            self._on_fenced("the arbiter lease may have run out (this node was paused)")
            raise StoreUnavailable("this node's arbiter lease has run out; another node takes over")

    async def record_routing(
        self,
        chats: Sequence[ChatRouting],
        agents: Sequence[AgentRouting],
        activity: Sequence[Activity],
        *,
        new_chats: Sequence[Chat] = (),
        fence: int | None = None,
    ) -> None:
        self._check_lease()
        try:
            await self._store.record_routing(
                chats, agents, activity, new_chats=new_chats, fence=self.token
            )
        except Fenced:
            self._on_fenced(f"a routing decision under token {self.token} was refused")
            raise

    def __getattr__(self, name: str) -> Any:
        found = getattr(self._store, name)
        if name.startswith("_") or not inspect.iscoroutinefunction(found):
            return found
        return self._bounded(found)

    def _bounded(self, call: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        async def bounded(*args: Any, **kwargs: Any) -> Any:
            self._check_lease()
            return await call(*args, **kwargs)

        return bounded
