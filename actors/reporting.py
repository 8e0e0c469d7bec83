"""What an operator hears of the assignment actor's decisions: a log line for each chat given to
or taken from an agent (with the activity log's reason), and the counters by bounded category.

Called once per committed decision, with the core's effects; nothing here decides anything.
"""

from __future__ import annotations

from collections.abc import Sequence

from actors.assignment import Assigned, ChatStatusChanged, Effect, Unassigned
from store import ChatStatus
from telemetry import routing_decision

# The core's reasons for taking a chat from its agent (actors/assignment.py), as categories.
_UNASSIGNED = (
    ("waiting for the customer", "parked"),
    ("disconnected for grace period", "agent_disconnected"),
    ("agent removed", "agent_removed"),
    ("restored without an available agent", "restored"),
    (" away: ", "agent_away"),
)


def unassigned_category(reason: str) -> str:
    return next((category for words, category in _UNASSIGNED if words in reason), "other")


def _assigned_category(effect: Assigned, following: Effect | None) -> str:
    """An admin's move names the previous agent; otherwise the status change the core puts
    right after an assignment says whether the chat was new or pending (it had lost its agent,
    or been parked)."""
    if effect.previous_agent_id is not None:
        return "admin"
    if (
        isinstance(following, ChatStatusChanged)
        and following.chat_id == effect.chat_id
        and following.old == ChatStatus.PENDING
    ):
        return "requeued"
    return "new"


def report_decisions(effects: Sequence[Effect]) -> None:
    for index, effect in enumerate(effects):
        match effect:
            case Assigned(chat_id, agent_id, _, reason, by):
                following = effects[index + 1] if index + 1 < len(effects) else None
                category = _assigned_category(effect, following)
                routing_decision(
                    "assigned", category, chat=chat_id, agent=agent_id, by=by.value, reason=reason
                )
            case Unassigned(chat_id, agent_id, reason, by):
                routing_decision(
                    "unassigned",
                    unassigned_category(reason),
                    chat=chat_id,
                    agent=agent_id,
                    by=by.value,
                    reason=reason,
                )
            case _:
                pass
