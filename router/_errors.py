"""The errors the kernel raises, and `Refused`, the one handlers raise on purpose.

Each keeps its constructor arguments in `args`, so the exceptions copy and pickle faithfully.
"""

from __future__ import annotations


class RouterError(Exception):
    """Base of every error of the actor kernel."""


class ActorDead(RouterError):
    """The target actor has stopped or is stopping; also what pending asks fail with on stop."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name

    def __str__(self) -> str:
        return f"actor {self.name!r} is not running"


class MailboxFull(RouterError):
    """`tell_nowait` found the target's mailbox full."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name

    def __str__(self) -> str:
        return f"mailbox of actor {self.name!r} is full"


class HandlerCrashed(RouterError):
    """What an asker gets when the handler raised an unexpected exception (chained as the cause).

    The actor itself crashed and is being restarted.
    """

    def __init__(self, name: str, cause: Exception) -> None:
        super().__init__(name, cause)
        self.name = name
        self.cause = cause
        self.__cause__ = cause

    def __str__(self) -> str:
        return f"actor {self.name!r} crashed handling the message: {self.cause!r}"


class Refused(RouterError):
    """A domain refusal, raised by a handler on purpose; the asker gets it and the actor carries on.

    `code` is a stable machine-readable identifier, `message` says what to do about it.
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(code, message)
        self.code = code
        self.message = message

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


class ActorGaveUp(RouterError):
    """An actor crashed more often than its `RestartPolicy` allows and nobody handled it.

    Raised out of `open_actor_system`, with the last crash as its cause.
    """

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name

    def __str__(self) -> str:
        return f"actor {self.name!r} crashed too often and was given up"
