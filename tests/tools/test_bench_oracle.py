"""`switchboard bench oracle` runs and reports every chat-naming frame against its floor."""

from __future__ import annotations

import pytest

from tools.bench_oracle import FRAMES
from tools.cli import main


def test_the_oracle_benchmark_reports_each_frame_for_both_chats(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["bench", "oracle", "--probes", "3"]) == 0
    report = capsys.readouterr().out
    assert "ping (floor)" in report
    for kind in FRAMES:
        assert f"{kind}, someone else's" in report
        assert f"{kind}: someone else's - unknown, medians" in report
