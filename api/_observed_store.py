"""The store as the running server uses it: every call timed by operation, every failure
logged and counted, every message stored counted. Wrapped once, where the server opens its
store, so no backend and no caller knows about it."""

from __future__ import annotations

import inspect
import time
from collections.abc import Awaitable, Callable
from typing import Any, cast

from store import Backend, DuplicateEmail, DuplicateMessage, NotFound, StoreUnavailable
from telemetry import message_stored, store_call, store_failed

# Refusals the callers expect and answer (a resent message, a taken email): not store errors.
_EXPECTED = (DuplicateMessage, DuplicateEmail, NotFound)


class ObservedStore:
    """Forwards everything to the store it wraps; its coroutine methods are observed."""

    def __init__(self, store: Backend) -> None:
        self._store = store

    def __getattr__(self, name: str) -> Any:
        found = getattr(self._store, name)
        if name.startswith("_") or not inspect.iscoroutinefunction(found):
            return found
        # Found without `__getattr__` from now on: the store's methods do not change, and this
        # look-up (with `inspect`) ran for every call, every message.
        method = self.__dict__[name] = _observed(name, found)
        return method


def _observed(operation: str, call: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    async def observed(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            result = await call(*args, **kwargs)
        except _EXPECTED:
            raise
        except Exception as error:
            store_failed(operation, error, unavailable=isinstance(error, StoreUnavailable))
            raise
        finally:
            store_call(operation, time.perf_counter() - started)
        if operation == "append_message":
            message_stored(result.sender_role.value)
        elif operation == "append_messages":
            for message in result:
                message_stored(message.sender_role.value)
        return result

    return observed


def observe_store(store: Backend) -> Backend:
    return cast(Backend, ObservedStore(store))
