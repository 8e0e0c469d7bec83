"""Two small synchronous registries the actors share: live sessions, and published chat routes.

Neither is an actor, on purpose. Delivering an event is a non-blocking `Session.offer` into the
connection's own bounded outbox, so any actor can do it in place: a mailbox hop per delivery
would add a task switch to every message and buy nothing, since nothing here waits. Trio runs
one task at a time and these methods never await, so each call is atomic.

`Routes` is the assignment actor's published view of who is in each active chat. Only the assignment
actor writes it, after the change is durable; conversations read it to authorise senders and to
address deliveries without asking the assignment actor (which could make two actors wait on each
other's full mailboxes).
"""

from __future__ import annotations

from dataclasses import dataclass

import trio

from actors.events import CLOSE_SLOW_READER, Event, Session
from store import ChatStatus
from telemetry import limit_hit


class Presence:
    """Every live session by user; delivery that never blocks, cutting off slow readers."""

    def __init__(self) -> None:
        self._by_user: dict[str, dict[str, Session]] = {}
        self._count = 0

    def attach(self, session: Session) -> int:
        """Register a session; returns how many the user has now."""
        sessions = self._by_user.setdefault(session.user_id, {})
        if session.id not in sessions:
            sessions[session.id] = session
            self._count += 1
        return len(sessions)

    def detach(self, session: Session) -> bool:
        """Forget a session; False if it was not attached."""
        sessions = self._by_user.get(session.user_id)
        if sessions is None or sessions.pop(session.id, None) is None:
            return False
        self._count -= 1
        if not sessions:
            del self._by_user[session.user_id]
        return True

    def connections(self, user_id: str) -> int:
        return len(self._by_user.get(user_id, ()))

    def connected_users(self) -> dict[str, int]:
        return {user_id: len(sessions) for user_id, sessions in self._by_user.items()}

    @property
    def count(self) -> int:
        return self._count

    def deliver(self, user_id: str | None, event: Event) -> None:
        """Offer the event to each of the user's sessions; a session whose outbox is full is
        closed (1013) rather than slowing the sender. Its edge detaches it as it ends."""
        if user_id is None:
            return
        for session in tuple(self._by_user.get(user_id, {}).values()):
            try:
                session.offer(event)
            except trio.WouldBlock:
                limit_hit("slow_reader", session=session.id, principal=user_id)
                session.close(CLOSE_SLOW_READER, "too slow reading events; reconnect and resume")

    def offer_to(self, user_id: str, session_id: str, event: Event) -> bool:
        """Offer the event to one session; False if it is gone, or was closed for being full."""
        session = self._by_user.get(user_id, {}).get(session_id)
        if session is None:
            return False
        try:
            session.offer(event)
        except trio.WouldBlock:
            limit_hit("slow_reader", session=session.id, principal=user_id)
            session.close(CLOSE_SLOW_READER, "too slow reading events; reconnect and resume")
            return False
        return True

    def close_user(
        self, user_id: str, code: int, reason: str, *, keep_token: str | None = None
    ) -> int:
        """Close every session of the user (signed out, demoted, deleted) but those opened with
        `keep_token`; returns how many."""
        sessions = tuple(
            session
            for session in self._by_user.get(user_id, {}).values()
            if keep_token is None or session.token_id != keep_token
        )
        for session in sessions:
            session.close(code, reason)
        return len(sessions)

    def close_token(self, token_id: str, code: int, reason: str) -> int:
        """Close every session opened with that token (its holder signed out); returns how many.

        A scan, not an index: sign-outs are rare next to deliveries, which an index would tax.
        """
        sessions = [
            session
            for by_id in self._by_user.values()
            for session in by_id.values()
            if session.token_id == token_id
        ]
        for session in sessions:
            session.close(code, reason)
        return len(sessions)


@dataclass(frozen=True, slots=True)
class Route:
    """Who is in an active chat right now."""

    chat_id: str
    customer_id: str
    agent_id: str | None
    status: ChatStatus

    def participant(self, user_id: str) -> bool:
        return user_id == self.customer_id or (
            self.agent_id is not None and user_id == self.agent_id
        )


class Routes:
    """The assignment actor's published routes of active chats; resolved chats are absent."""

    def __init__(self) -> None:
        self._routes: dict[str, Route] = {}

    def get(self, chat_id: str) -> Route | None:
        return self._routes.get(chat_id)

    def publish(self, route: Route) -> None:
        self._routes[route.chat_id] = route

    def withdraw(self, chat_id: str) -> None:
        self._routes.pop(chat_id, None)

    def clear(self) -> None:
        self._routes.clear()

    def chat_ids(self) -> list[str]:
        return list(self._routes)

    def __len__(self) -> int:
        return len(self._routes)
