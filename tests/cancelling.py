"""What cancellation costs and reaches, as tests see it: the cancel scopes a piece of code
enters (each is about thirty calls, README, Performance), and a call that never returns until
it is cancelled."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import trio


@contextmanager
def scopes_entered() -> Iterator[list[str]]:
    """The cancel scopes entered in the block, each named by the code that entered it, as
    `package:qualname` (`api:Connection._send_run`)."""
    entered: list[str] = []
    enter = trio.CancelScope.__enter__

    def counted(scope: trio.CancelScope) -> trio.CancelScope:
        caller = sys._getframe(1).f_code
        entered.append(f"{caller.co_filename.rsplit('/', 2)[-2]}:{caller.co_qualname}")
        return enter(scope)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(trio.CancelScope, "__enter__", counted)
        yield entered


class Stuck:
    """`target` as its users see it, except that its method `name` never returns: `asked` is set
    once it is called, and `cancelled` once that call is cancelled."""

    def __init__(self, target: Any, name: str) -> None:
        self._target = target
        self._name = name
        self.asked = trio.Event()
        self.cancelled = False

    def __getattr__(self, attribute: str) -> Any:
        if attribute == self._name:
            return self._never
        return getattr(self._target, attribute)

    async def _never(self, *_: object, **__: object) -> None:
        self.asked.set()
        try:
            await trio.sleep_forever()
        finally:
            self.cancelled = True
