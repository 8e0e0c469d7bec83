"""What crosses the bus between nodes, as JSON: the domain's records, answers and events.

Only the classes registered here can be decoded, so whoever can write to the bus cannot make a
node build anything else (pickle would run whatever it was sent). A dataclass travels as its
name and fields, an enum as its name and value, a datetime in ISO 8601, a tuple marked as one.
"""

from __future__ import annotations

import dataclasses
import json
from datetime import datetime
from enum import Enum
from typing import Any

from actors import (
    AgentView,
    CoreSnapshot,
    History,
    OpenedChat,
    QueueEntry,
    Route,
    Sent,
    Speaker,
    SystemSnapshot,
)
from actors import events as _events
from router import ActorInfo
from store import (
    ActedBy,
    Activity,
    ActivityKind,
    AgentStatus,
    Chat,
    ChatStatus,
    Message,
    MessageStatus,
    Priority,
    Role,
    User,
)

_DATACLASSES: dict[str, type[Any]] = {
    cls.__name__: cls
    for cls in (
        AgentView,
        CoreSnapshot,
        QueueEntry,
        History,
        OpenedChat,
        Sent,
        Speaker,
        SystemSnapshot,
        Route,
        ActorInfo,
        Activity,
        Chat,
        Message,
        User,
        _events.MessageAdded,
        _events.AgentCard,
        _events.ChatAssigned,
        _events.ChatUnassigned,
        _events.ChatStatusEvent,
        _events.QueuePosition,
        _events.AgentStatusEvent,
        _events.TypingEvent,
        _events.ReadEvent,
        _events.FloorChat,
        _events.FloorAgent,
        _events.FloorQueueEntry,
        _events.FloorUpdate,
    )
}
_ENUMS: dict[str, type[Enum]] = {
    cls.__name__: cls
    for cls in (ActivityKind, AgentStatus, ChatStatus, MessageStatus, Priority, Role, ActedBy)
}


class CodecError(ValueError):
    """A bus payload this node cannot read (another version, or not Switchboard's)."""


def encode(value: object) -> bytes:
    return json.dumps(_plain(value), separators=(",", ":")).encode()


def decode(data: bytes) -> Any:
    try:
        return _built(json.loads(data))
    except (ValueError, KeyError, TypeError) as exc:
        raise CodecError(f"unreadable bus payload: {exc}") from exc


def _plain(value: object) -> Any:
    match value:
        case Enum():  # before str: a StrEnum is a str, and would arrive as one
            name = type(value).__name__
            if name not in _ENUMS:
                raise TypeError(f"{name} cannot cross the bus")
            return {"~e": name, "v": value.value}
        case None | bool() | int() | float() | str():
            return value
        case datetime():
            return {"~t": value.isoformat()}
        case tuple():
            return {"~tu": [_plain(item) for item in value]}
        case list():
            return [_plain(item) for item in value]
        case dict():
            return {"~m": {str(k): _plain(v) for k, v in value.items()}}
        case _ if dataclasses.is_dataclass(value) and not isinstance(value, type):
            name = type(value).__name__
            if _DATACLASSES.get(name) is not type(value):
                raise TypeError(f"{name} cannot cross the bus")
            fields = {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
            return {"~c": name, "f": fields}
    raise TypeError(f"{type(value).__name__} cannot cross the bus")


def _built(value: Any) -> Any:
    if isinstance(value, list):
        return [_built(item) for item in value]
    if not isinstance(value, dict):
        return value
    if "~c" in value:
        cls = _DATACLASSES[value["~c"]]
        return cls(**{name: _built(item) for name, item in value["f"].items()})
    if "~e" in value:
        return _ENUMS[value["~e"]](value["v"])
    if "~t" in value:
        return datetime.fromisoformat(value["~t"])
    if "~tu" in value:
        return tuple(_built(item) for item in value["~tu"])
    if "~m" in value:
        return {k: _built(v) for k, v in value["~m"].items()}
    raise ValueError(f"unknown payload keys {sorted(value)}")
