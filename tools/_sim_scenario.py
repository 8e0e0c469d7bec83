"""What a load simulation does: the knobs, and the four presets they start from."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

# The server's default cap on frames a connection may send (SWITCHBOARD_WS_MAX_FRAMES_PER_SECOND).
SERVER_FRAMES_PER_SECOND = 20.0


@dataclass(frozen=True, slots=True)
class Scenario:
    preset: str
    customers: int
    agents: int
    max_load: int
    duration: float
    """Seconds of load at most (for `idle`: how long the connections are held)."""
    max_messages: int
    """Messages sent at most; the load stops when they are all sent."""
    think: float
    """Mean seconds between one participant's messages in one chat (exponential)."""
    arrival_rate: float
    """Customers arriving per second; 0 for all at once."""
    chats_per_customer: int | None
    """Chats each customer opens one after another; None: keep opening until the end."""
    pause: float
    """Seconds a customer waits after a chat is resolved before opening the next."""
    handling: float
    """Mean seconds an agent keeps a chat before resolving it (exponential)."""
    agent_replies: bool = True
    away_rate: float = 0.0
    """Times per minute each agent goes away (their chats are re-queued) ..."""
    away_seconds: float = 2.0
    """... and for how long."""
    drop_rate: float = 0.0
    """Times per minute each agent drops their connection ..."""
    reconnect_delay: float = 0.5
    """... and how soon they are back (well within the server's grace period)."""
    message_bytes: int = 64
    seed: int = 1
    drain: float = 15.0
    """Seconds allowed after the load for outstanding acks and deliveries to arrive."""
    warmup: float = 0.0
    """Seconds at the start of the load left out of latencies and rates (arrivals, first
    chats, cold caches)."""

    def at_rate(self, messages_per_second: float) -> Scenario:
        """The think time that offers `messages_per_second` in all when every slot is busy."""
        chats = min(self.customers, self.agents * self.max_load)
        senders = chats * (2 if self.agent_replies else 1)
        return dataclasses.replace(self, think=senders / messages_per_second)

    def warnings(self) -> list[str]:
        """What the server would cut off, said before the run rather than found in it."""
        agent_frames = self.max_load / self.think if self.agent_replies else 0.0
        if agent_frames > SERVER_FRAMES_PER_SECOND * 0.9:
            return [
                f"an agent with {self.max_load} chats would send {agent_frames:.0f} frames/s, "
                f"near or over the server's default limit of {SERVER_FRAMES_PER_SECOND:.0f}/s; "
                "add agents or customers, or lower --rate"
            ]
        return []


PRESETS = {
    # Customers keep chatting at a steady rate with every agent slot in use.
    "steady": Scenario(
        preset="steady", customers=44, agents=10, max_load=4, duration=30.0,
        max_messages=1_000_000, think=0.8, arrival_rate=20.0, chats_per_customer=None,
        pause=0.5, handling=20.0, warmup=3.0,
    ),
    # Many customers at once for few agents: a backlog that drains as chats are resolved.
    "burst": Scenario(
        preset="burst", customers=200, agents=5, max_load=4, duration=120.0,
        max_messages=1_000_000, think=1.0, arrival_rate=0.0, chats_per_customer=1,
        pause=0.0, handling=2.0,
    ),
    # Agents flapping: away and back, connections dropped and resumed.
    "churn": Scenario(
        preset="churn", customers=40, agents=10, max_load=3, duration=30.0,
        max_messages=1_000_000, think=1.0, arrival_rate=20.0, chats_per_customer=None,
        pause=0.5, handling=10.0, away_rate=6.0, away_seconds=2.0, drop_rate=6.0,
    ),
    # Connections that only sit there: the server's memory per connection.
    "idle": Scenario(
        preset="idle", customers=200, agents=20, max_load=4, duration=5.0,
        max_messages=0, think=1.0, arrival_rate=0.0, chats_per_customer=0, pause=0.0,
        handling=1.0,
    ),
}  # fmt: skip
