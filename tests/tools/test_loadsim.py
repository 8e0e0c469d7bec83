"""`switchboard loadsim`: a short run of each preset against a live server, checked by what the
report says (every invariant held, the counts add up) and by its JSON shape; `idle` through the
command with a server it spawns itself (which is what gives memory per connection); and the
refusals that come before any traffic: a host that is not this machine, --plot without
matplotlib. Runs end by their message cap or by every chat being resolved, never by the clock,
so a slow machine only makes them take longer (the duration is a generous upper bound).
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

import pytest
import trio

from api import DEMO_PASSWORD
from tests.conftest import Live
from tools import loadsim
from tools._remote import DEMO_ADMIN_EMAIL, Credentials
from tools._sim_ledger import INVARIANTS, Ledger
from tools._sim_report import MEASURES, Report
from tools._sim_scenario import PRESETS, Scenario
from tools.cli import main
from tools.loadsim import Phase, Target, simulate
from tools.loadsim import _report as build_report

RUN_LIMIT = 120
# Agents may send 20 frames a second: 2 chats at one message per 0.15 s each is 13.
SMALL = {"max_load": 2, "think": 0.15, "duration": 90.0, "drain": 20.0, "seed": 7, "warmup": 0.0}


async def run_preset(live: Live, preset: str, **changes: Any) -> Report:
    scenario: Scenario = dataclasses.replace(PRESETS[preset], **(SMALL | changes))
    target = Target(
        url=live.url,
        spawn=False,
        credentials=Credentials(token=None, email=DEMO_ADMIN_EMAIL, password=DEMO_PASSWORD),
    )
    with trio.fail_after(RUN_LIMIT):
        report, _ = await simulate(scenario, target)
    return report


def assert_clean(report: Report) -> None:
    """Every invariant held, and every message sent was answered one way or the other."""
    failed = [outcome for outcome in report.invariants if not outcome.ok]
    assert failed == [], failed
    assert report.ok
    messages = report.messages
    assert messages.acked + messages.refused + messages.unacked == messages.sent
    assert messages.unacked == 0


def assert_json_shape(report: Report) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(json.dumps(report.to_json()))
    assert set(document) == {
        "preset", "url", "spawned", "scenario", "load_seconds", "messages", "latency_ms",
        "chats", "agents", "errors", "frames_received", "invariants", "memory", "cpu", "stalls",
        "ok",
    }  # fmt: skip
    assert set(document["messages"]) == {
        "sent", "acked", "refused", "unacked", "per_second", "offered_per_second",
    }  # fmt: skip
    assert set(document["latency_ms"]) == set(MEASURES)
    for summary in document["latency_ms"].values():
        assert set(summary) == {"count", "p50", "p95", "p99", "max"}
    assert set(document["invariants"]) == set(INVARIANTS)
    for outcome in document["invariants"].values():
        assert set(outcome) == {"ok", "violations", "examples"}
    assert set(document["chats"]) == {
        "opened", "assigned", "resolved", "reassignments", "backlog_peak",
        "queue_empty_after_seconds",
    }  # fmt: skip
    assert set(document["agents"]) == {"drops", "aways", "reconnects"}
    return document


async def test_steady_runs_to_its_message_cap_with_every_invariant(live: Live) -> None:
    report = await run_preset(
        live, "steady", customers=6, agents=3, handling=0.6, pause=0.1, max_messages=150
    )
    assert_clean(report)
    assert report.messages.sent == 150
    assert report.chats.opened >= 1
    latency = report.latency_ms
    assert latency["ack"].count == report.messages.acked
    assert latency["end_to_end"].count > 0
    assert latency["end_to_end"].p50 is not None
    assert latency["end_to_end"].p50 <= latency["end_to_end"].max  # type: ignore[operator]
    document = assert_json_shape(report)
    assert document["ok"] is True
    assert document["spawned"] is False
    assert document["frames_received"]["ack"] == report.messages.acked
    assert document["scenario"]["preset"] == "steady"
    # The live server answers /metrics on loopback: its stalls beside the simulator's own.
    assert set(document["stalls"]) == {"server", "simulator"}
    for stalls in document["stalls"].values():
        assert set(stalls) == {
            "gc_collections", "gc_total_ms", "gc_longest_ms", "gc_longest_cpu_ms",
            "loop_lag_p99_ms", "loop_lag_longest_ms", "bounded",
        }  # fmt: skip
    assert report.stalls["server"].bounded
    assert not report.stalls["simulator"].bounded
    # Sampled ten times a second through a load of some seconds.
    assert report.stalls["simulator"].loop_lag_longest_ms is not None
    # Its own collections would be counted as latency: none while the load runs (39
    # in this run's window before they were held).
    assert report.stalls["simulator"].gc_collections == 0
    assert report.stalls["server"].loop_lag_longest_ms is not None


async def test_burst_backlog_drains_every_chat(live: Live) -> None:
    customers = 12
    report = await run_preset(
        live, "burst", customers=customers, agents=2, handling=0.3, chats_per_customer=1
    )
    assert_clean(report)
    chats = report.chats
    assert (chats.opened, chats.assigned, chats.resolved) == (customers, customers, customers)
    assert chats.queue_empty_after_seconds is not None
    assert report.latency_ms["open_to_assigned"].count == customers
    assert_json_shape(report)


async def test_churn_agents_flapping_keep_every_invariant(live: Live) -> None:
    report = await run_preset(
        live,
        "churn",
        customers=8,
        agents=4,
        handling=1.0,
        away_rate=60.0,
        away_seconds=0.3,
        drop_rate=60.0,
        reconnect_delay=0.1,
        max_messages=150,
    )
    assert_clean(report)
    assert report.messages.sent == 150
    agents = report.agents
    assert agents.reconnects <= agents.drops
    assert_json_shape(report)


def test_idle_spawns_its_server_and_reports_memory_per_connection(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "idle.json"
    argv = ["loadsim", "idle", "--spawn", "--customers", "20", "--agents", "3", "--duration"]
    code = main([*argv, "0.2", "--report", str(path), "--quiet"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "server RSS per connection" in out
    document = json.loads(path.read_text())
    assert document["spawned"] is True
    assert document["ok"] is True
    memory = document["memory"]
    assert memory["connections"] == 23
    assert memory["rss_after_kib"] > 0
    assert memory["kib_per_connection"] == pytest.approx(
        (memory["rss_after_kib"] - memory["rss_before_kib"]) / 23, abs=0.01
    )
    assert set(document["cpu"]) == {
        "server_seconds",
        "simulator_seconds",
        "server_ms_per_message",
        "server_children_ms_per_message",
    }
    assert document["cpu"]["server_seconds"] >= 0


def test_only_this_machine_unless_allowed(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["loadsim", "steady", "--url", "http://192.0.2.10:8080"]) == 2
    assert "--allow-remote" in capsys.readouterr().err


def test_plot_without_matplotlib_is_refused_before_the_run(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # makes `import matplotlib` fail
    code = main(
        ["loadsim", "steady", "--url", "http://127.0.0.1:9", "--plot", str(tmp_path / "x.png")]
    )
    assert code == 2
    assert "pip install 'switchboard[plot]'" in capsys.readouterr().err


def test_bad_numbers_are_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["loadsim", "burst", "--think", "0"]) == 2
    assert main(["loadsim", "steady", "--agents", "0"]) == 2
    assert main(["loadsim", "steady", "--rate", "-5"]) == 2
    err = capsys.readouterr().err
    assert "--think must be positive" in err
    assert "at least one agent" in err
    assert "--rate must be positive" in err


def test_a_failed_invariant_exits_1(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    ledger = Ledger()
    ledger.agent_joined("agent-a", max_load=1)
    for chat_id in ("chat-1", "chat-2"):
        ledger.agent_took("agent-a", chat_id, now=1.0)
    phase = Phase(
        started=0.0,
        ended=1.0,
        outcomes=ledger.finish(2.0),
        rss_after=None,
        cpu_used=(None, None, None),
        stalls={},
    )

    async def overloaded(scenario: Scenario, target: Target, progress: Any = None) -> Any:
        return build_report(scenario, target.url, False, phase, ledger, None), ledger

    monkeypatch.setattr(loadsim, "simulate", overloaded)
    assert main(["loadsim", "steady", "--quiet"]) == 1
    out = capsys.readouterr().out
    assert "no_agent_above_max_load" in out
    assert "agent-a holds 2 chats, max load 1" in out
