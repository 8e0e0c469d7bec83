"""The store as the arbiter writes to it in cluster mode: every routing commit carries the
fencing token its node got from `claim_routing` when it took the lease.

The wrapper changes nothing else: the domain does not know it runs in a cluster. When the store
refuses a commit (`Fenced`: another node claimed since), `on_fenced` tells the node to step down
at once, before its renewal notices the lost lease.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from store import Activity, AgentRouting, Chat, ChatRouting, Fenced, Store


class FencedStore:
    """`store`, with `record_routing` fenced by `token`."""

    def __init__(self, store: Store, token: int, on_fenced: Callable[[], None]) -> None:
        self._store = store
        self.token = token
        self._on_fenced = on_fenced

    async def record_routing(
        self,
        chats: Sequence[ChatRouting],
        agents: Sequence[AgentRouting],
        activity: Sequence[Activity],
        *,
        new_chats: Sequence[Chat] = (),
        fence: int | None = None,
    ) -> None:
        try:
            await self._store.record_routing(
                chats, agents, activity, new_chats=new_chats, fence=self.token
            )
        except Fenced:
            self._on_fenced()
            raise

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)
