"""The load simulator's invariant checks, fed by hand: each rule passes what the protocol allows
and catches what it forbids, so a clean report from a real run means something."""

from __future__ import annotations

from tools._sim_ledger import (
    DUPLICATED,
    LOST,
    MAX_LOAD,
    ONE_AGENT,
    ORDERED,
    Ledger,
    Outcome,
)
from tools._sim_scenario import PRESETS

CUSTOMER, AGENT, OTHER = "c1", "agent-a", "agent-b"
CHAT = "chat-1"


def verdict(ledger: Ledger, now: float = 100.0) -> dict[str, Outcome]:
    return {outcome.name: outcome for outcome in ledger.finish(now)}


def failed(ledger: Ledger, now: float = 100.0) -> set[str]:
    return {name for name, outcome in verdict(ledger, now).items() if not outcome.ok}


def conversation(ledger: Ledger, seqs: range, *, deliver_to: tuple[str, ...]) -> None:
    """The customer sends one message per seq, acknowledged and delivered live to `deliver_to`."""
    for seq in seqs:
        client_msg_id = f"{CUSTOMER}.{seq}"
        ledger.sent(client_msg_id, CHAT, "customer", now=float(seq), lag=0.0)
        ledger.acked(client_msg_id, CHAT, seq, now=seq + 0.01)
        for connection, who in enumerate(deliver_to, start=1):
            ledger.received(
                who, connection, CHAT, seq, client_msg_id, seq + 0.02,
                replay=False, by_agent=who != CUSTOMER,
            )  # fmt: skip


def opened(ledger: Ledger) -> Ledger:
    ledger.agent_joined(AGENT, max_load=2)
    ledger.agent_joined(OTHER, max_load=2)
    ledger.chat_opened(CUSTOMER, CHAT, requested_at=0.0, now=0.1, queued=False)
    ledger.customer_assigned(CHAT, AGENT, now=0.1)
    ledger.agent_took(AGENT, CHAT, now=0.1)
    return ledger


def test_a_clean_conversation_passes_and_is_measured() -> None:
    ledger = opened(Ledger())
    conversation(ledger, range(1, 6), deliver_to=(CUSTOMER, AGENT))
    assert failed(ledger) == set()
    assert len(ledger.samples["end_to_end"]) == 5
    assert ledger.counts["acked"] == 5
    assert ledger.outstanding == 0


def test_a_message_the_customer_never_got_is_lost() -> None:
    ledger = opened(Ledger())
    conversation(ledger, range(1, 4), deliver_to=(AGENT,))
    conversation(ledger, range(4, 5), deliver_to=(CUSTOMER, AGENT))
    outcome = verdict(ledger)[LOST]
    assert outcome.violations == 3
    assert "never got chat chat-1 seq 1" in outcome.examples[0]


def test_a_hole_in_an_agents_view_is_lost() -> None:
    ledger = opened(Ledger())
    conversation(ledger, range(1, 3), deliver_to=(CUSTOMER, AGENT))
    conversation(ledger, range(3, 4), deliver_to=(CUSTOMER,))
    conversation(ledger, range(4, 5), deliver_to=(CUSTOMER, AGENT))
    assert failed(ledger) == {LOST}


def test_a_message_at_another_seq_than_acknowledged_is_caught() -> None:
    ledger = opened(Ledger())
    ledger.sent("c1.1", CHAT, "customer", now=1.0, lag=0.0)
    ledger.acked("c1.1", CHAT, 1, now=1.1)
    ledger.received(CUSTOMER, 1, CHAT, 1, "c1.other", 1.2, replay=False, by_agent=False)
    assert "carried c1.other" in verdict(ledger)[LOST].examples[0]


def test_a_live_duplicate_fails_but_a_resume_may_repeat() -> None:
    ledger = opened(Ledger())
    conversation(ledger, range(1, 3), deliver_to=(CUSTOMER, AGENT))
    # A resume answering seq 2 again after it arrived live: allowed, clients merge by seq.
    ledger.received(AGENT, 2, CHAT, 2, "c1.2", 3.0, replay=True, by_agent=True)
    assert failed(ledger) == set()
    ledger.received(CUSTOMER, 1, CHAT, 2, "c1.2", 3.0, replay=False, by_agent=False)
    assert failed(ledger) == {DUPLICATED}


def test_one_seq_acknowledged_for_two_messages_is_a_duplicate() -> None:
    ledger = opened(Ledger())
    for client_msg_id in ("c1.1", "c1.2"):
        ledger.sent(client_msg_id, CHAT, "customer", now=1.0, lag=0.0)
        ledger.acked(client_msg_id, CHAT, 1, now=1.1)
    assert DUPLICATED in failed(ledger)


def test_out_of_order_on_a_connection_fails_unless_resuming() -> None:
    def after_seq_3(then_replay: bool) -> Ledger:
        ledger = opened(Ledger())
        for seq in (1, 2, 3):
            ledger.sent(f"c1.{seq}", CHAT, "customer", now=1.0, lag=0.0)
            ledger.acked(f"c1.{seq}", CHAT, seq, now=1.0)
        ledger.received(AGENT, 7, CHAT, 3, "c1.3", 2.0, replay=False, by_agent=True)
        for seq in (1, 2):
            ledger.received(
                AGENT, 7, CHAT, seq, f"c1.{seq}", 2.1, replay=then_replay, by_agent=True
            )
        return ledger

    # After reconnecting, a resume fills in below what arrived live: fine.
    assert ORDERED not in failed(after_seq_3(then_replay=True))
    assert ORDERED in failed(after_seq_3(then_replay=False))


def test_holding_more_than_max_load_fails() -> None:
    ledger = opened(Ledger())
    ledger.agent_took(AGENT, "chat-2", now=1.0)
    assert failed(ledger) == set()
    ledger.agent_took(AGENT, "chat-3", now=2.0)
    assert verdict(ledger)[MAX_LOAD].examples == ("agent-a holds 3 chats, max load 2",)


def test_a_hand_over_may_arrive_in_either_order_within_the_settle_time() -> None:
    ledger = opened(Ledger(settle_seconds=5.0))
    ledger.agent_took(OTHER, CHAT, now=10.0)  # the new agent's frame came first
    ledger.agent_released(AGENT, CHAT, now=10.2)
    assert failed(ledger) == set()


def test_a_chat_held_by_two_agents_fails() -> None:
    late = opened(Ledger(settle_seconds=5.0))
    late.agent_took(OTHER, CHAT, now=10.0)
    late.agent_released(AGENT, CHAT, now=16.0)
    assert failed(late) == {ONE_AGENT}
    never = opened(Ledger(settle_seconds=5.0))
    never.agent_took(OTHER, CHAT, now=10.0)
    assert "still held at the end" in verdict(never, now=11.0)[ONE_AGENT].examples[0]


def test_a_resync_settles_what_a_dropped_connection_missed() -> None:
    ledger = opened(Ledger())
    ledger.agent_resynced(AGENT, {"chat-2"}, now=5.0)
    assert ledger.holding[AGENT] == {"chat-2"}
    assert ledger.owners[CHAT] == set()


def test_queue_waits_and_reassignments_as_the_customer_sees_them() -> None:
    ledger = Ledger()
    ledger.begin(0.0)
    ledger.chat_opened(CUSTOMER, CHAT, requested_at=1.0, now=1.1, queued=True)
    assert ledger.waiting == 1
    ledger.customer_assigned(CHAT, AGENT, now=3.0)
    ledger.customer_assigned(CHAT, AGENT, now=3.0)  # told twice: chat.assigned and chat.status
    ledger.customer_lost_agent(CHAT, now=5.0)
    ledger.customer_assigned(CHAT, OTHER, now=5.5)
    assert ledger.samples["queue_wait"] == [2.0]
    assert ledger.samples["reassign_wait"] == [0.5]
    assert (ledger.counts["chats_assigned"], ledger.counts["reassignments"]) == (1, 1)
    assert (ledger.waiting, ledger.backlog_peak) == (0, 1)


def test_a_rate_sets_the_think_time_for_every_busy_slot() -> None:
    steady = PRESETS["steady"].at_rate(100.0)
    senders = 2 * min(steady.customers, steady.agents * steady.max_load)
    assert steady.think == senders / 100.0
    assert steady.warnings() == []
    assert "frames/s" in PRESETS["steady"].at_rate(10_000.0).warnings()[0]
