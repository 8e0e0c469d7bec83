"""The server's stop tells each live connection once, with no task per connection waiting."""

from __future__ import annotations

from api._stopping import Stopping


def test_a_connection_is_told_once_while_it_listens_and_at_once_if_late() -> None:
    stopping = Stopping()
    told: list[str] = []
    with stopping.telling(lambda: told.append("early")):
        pass  # gone before the stop: never told
    with stopping.telling(lambda: told.append("live")):
        stopping.set()
        stopping.set()  # a second stop tells no one again
        assert told == ["live"]
        with stopping.telling(lambda: told.append("late")):
            assert told == ["live", "late"]
    assert stopping.is_set()
