"""Receipts as read marks on the chat document, not a write to every message they raise.

A receipt used to set the status of each message it raised: on a server that commits each
document on its own (nx-27017 does), a commit per message read; on a replica set, a
multi-document transaction per receipt. Now the chat keeps, for each reader, the seq up to which
every message not sent by them was delivered to them and the seq up to which they saw it:
`reads.<reader key>.delivered` and `.seen`. A receipt moves its reader's marks with `$max` (an
update of one document: atomic on every server, never lowered by a late or racing receipt), in
the same update that clears the reader's unread count.

A message's status is the higher of its stored status and what the marks of every reader but
its sender say; each read of messages (`list_messages`, `get_message`...) reads the chat's marks
beside them. A mark covers only messages stored when it moved: it is at most the chat's
`last_seq`, and every later message has a higher seq.

A receipt whose `after_seq` is above its reader's mark (a caller that says the messages up to it
are marked where the mark does not say so) would leave a gap: it raises its messages' stored
statuses instead, as every receipt did before, and leaves the mark alone.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, assert_never

from store._records import Message, MessageStatus

READS = "reads"
"""The chat document's field of read marks."""


@dataclass(frozen=True, slots=True)
class Receipt:
    """One `mark_messages` call."""

    chat_id: str
    reader_id: str
    after_seq: int
    up_to_seq: int
    status: MessageStatus


@dataclass(frozen=True, slots=True)
class Mark:
    """One reader's marks in one chat: every message up to `delivered` (not their own) was
    delivered to them, every one up to `seen` seen by them."""

    delivered: int = 0
    seen: int = 0

    def covers(self, status: MessageStatus) -> int:
        """The seq up to which this reader's receipt of `status` would change nothing."""
        match status:
            case MessageStatus.SEEN:
                return self.seen
            case MessageStatus.DELIVERED:
                return self.delivered  # never below seen (see `moved`)
            case MessageStatus.SENT:
                raise ValueError("every message is sent: there is no mark of sent")
            case _:
                assert_never(status)


Marks = dict[str, Mark]
"""A chat's marks by reader key."""


def reader_key(reader_id: str) -> str:
    """The field name of a reader's marks. Ids are made of letters, digits, `-` and `_`, but a
    shop may name its customers otherwise, and a field name must not hold `.` or start with `$`:
    any other id is spelt in hex under its own prefix, so no two ids share a key."""
    if reader_id and all(c.isascii() and (c.isalnum() or c in "-_") for c in reader_id):
        return "u" + reader_id
    return "x" + reader_id.encode().hex()


def mark_field(reader_id: str, status: MessageStatus) -> str:
    return f"{READS}.{reader_key(reader_id)}.{status.value}"


def moved(reader_id: str, status: MessageStatus, up_to_seq: int) -> dict[str, int]:
    """The `$max` of a receipt. Seen moves the delivered mark too (what was seen was
    delivered), so a reader's delivered mark is never below their seen mark."""
    marks = {mark_field(reader_id, MessageStatus.DELIVERED): up_to_seq}
    if status == MessageStatus.SEEN:
        marks[mark_field(reader_id, MessageStatus.SEEN)] = up_to_seq
    return marks


def marks_of(chat: dict[str, Any] | None) -> Marks:
    """The marks in a chat document (read with at least the `reads` field); none for a chat
    that is gone or was never read."""
    if chat is None:
        return {}
    return {
        key: Mark(int(mark.get("delivered", 0)), int(mark.get("seen", 0)))
        for key, mark in (chat.get(READS) or {}).items()
    }


def with_marks(message: Message, marks: Marks) -> Message:
    """`message` with its status: its stored one, raised by the marks of every reader but its
    sender."""
    if message.status == MessageStatus.SEEN or not marks:
        return message
    status: MessageStatus = message.status
    sender = reader_key(message.sender_id)
    for key, mark in marks.items():
        if key == sender:
            continue
        if message.seq <= mark.seen:
            status = MessageStatus.SEEN
            break
        if message.seq <= mark.delivered:
            status = MessageStatus.DELIVERED
    return message if status == message.status else replace(message, status=status)
