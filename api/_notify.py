"""Notifications: written for what happens to a user while they may not be watching.

One event qualifies: a message arriving while its receiver has no live connection (an agent in
their grace period, a customer whose page is closed). Everything else a user could be told of
(a chat assigned, reassigned, closed) only happens to an agent with a live connection, who hears
of it at once over the websocket, so a notification would merely repeat it. Several messages in a
row in one chat make one unread notification, not one each.
"""

from __future__ import annotations

from api._services import services
from store import Message, Notification, new_id, utcnow

NEW_MESSAGE = "new_message"
PREVIEW_CHARS = 140


async def notify_if_offline(message: Message) -> None:
    found = services()
    receiver_id = message.receiver_id
    if receiver_id is None or found.system.connections(receiver_id) > 0:
        return
    latest, _ = await found.store.list_notifications(receiver_id, limit=1)
    last = latest[0] if latest else None
    if last and not last.read and last.kind == NEW_MESSAGE and last.chat_id == message.chat_id:
        return
    await found.store.add_notification(
        Notification(
            id=new_id(),
            user_id=receiver_id,
            kind=NEW_MESSAGE,
            title="New message",
            body=message.content[:PREVIEW_CHARS],
            chat_id=message.chat_id,
            created_at=utcnow(),
        )
    )
