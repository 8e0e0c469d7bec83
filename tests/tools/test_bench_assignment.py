"""bench assignment, small: both modes drive the real assignment actor and find no violation."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from tools.bench_assignment import run, run_burst


async def test_the_mix_keeps_every_invariant(capsys: pytest.CaptureFixture[str]) -> None:
    assert await run(20, 300, "memory", seed=3, concurrency=20) == 0
    out = capsys.readouterr().out
    assert "decisions per CPU second" in out
    assert "invariant violations" in out


async def test_a_burst_drains_near_the_ideal_on_the_trio_clock(
    autojump_clock: trio.testing.MockClock, capsys: pytest.CaptureFixture[str]
) -> None:
    """On virtual time nothing but the rules delays a refill: every chat is assigned once and
    the backlog drains within a fifth of the ideal (the handling times are random)."""
    with trio.fail_after(600):  # virtual seconds; the ideal is 20
        code = await run_burst(5, 200, "memory", 7, max_load=2, arrival_rate=100.0, handling=1.0)
    assert code == 0
    out = capsys.readouterr().out
    ratio = float(out.split("drain / ideal")[1].split()[1])
    assert 0.6 < ratio < 1.2, out
