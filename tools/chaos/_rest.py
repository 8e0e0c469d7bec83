"""REST calls that ride out restarts."""

from __future__ import annotations

import random
from typing import Any

import httpx
import trio

from tools.chaos._plan import BACKOFF_CAP, BACKOFF_FIRST, REST_ATTEMPTS, REST_SECONDS, ChaosError

# --- REST ----------------------------------------------------------------------------------------


class Rest:
    """REST calls that ride out restarts: retried (bounded) while the server is down or 5xx;
    with several nodes, each retry goes to the next one."""

    def __init__(self, *nodes: httpx.AsyncClient) -> None:
        self.nodes = nodes
        self._turn = 0

    @property
    def http(self) -> httpx.AsyncClient:
        return self.nodes[self._turn % len(self.nodes)]

    async def call(
        self,
        method: str,
        path: str,
        *,
        token: str | None = None,
        body: Any = None,
        params: dict[str, Any] | None = None,
        attempts: int = REST_ATTEMPTS,
    ) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        for attempt in range(attempts):
            try:
                with trio.fail_after(REST_SECONDS):
                    response = await self.http.request(
                        method, path, json=body, params=params, headers=headers
                    )
                if response.status_code < 500:
                    return response
            except (httpx.TransportError, trio.TooSlowError):
                pass
            self._turn += 1
            await trio.sleep(_backoff(attempt))
        raise ChaosError(f"{method} {path}: no answer after {attempts} attempts")

    async def ok(self, method: str, path: str, **how: Any) -> Any:
        response = await self.call(method, path, **how)
        if response.status_code >= 300:
            raise ChaosError(f"{method} {path}: {response.status_code} {response.text[:300]}")
        return response.json()


def _backoff(attempt: int) -> float:
    return min(BACKOFF_CAP, BACKOFF_FIRST * 2.0**attempt) * random.uniform(0.5, 1.0)
