"""Benchmark: does a frame naming someone else's chat take longer than one naming no chat?

It must not (README, "Hostile traffic"): on /ws both are answered `chat_not_found` after the same
single store read, so neither the answer nor its time says whether the chat exists. A server runs
in this process on a fresh SQLite store (the default backend, `synchronous=FULL`) with the frame
rate limit lifted; an agent takes a customer's chat, and another customer sends, alternately, each
chat-naming frame for that chat and for a made-up id, `--probes` of each, timing each answer.
Beside them, the floor: `ping`, a frame answered with no store work at all.

    python -m tools.bench_oracle [--probes 300]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import trio
from rich.console import Console
from trio_websocket import WebSocketConnection, open_websocket_url

from api import Settings, open_services, seed_demo_data, serve
from store import ActedBy, AgentStatus, Priority, new_id
from tools._bench_table import timing_table
from tools._ws_client import bearer

AGENT = "ann@switchboard.example"
TARGETS = ("someone else's", "unknown")
# Each chat-naming frame, without its chat id; and what answers it.
FRAMES: dict[str, tuple[dict[str, Any], str]] = {
    "message.send": ({"type": "message.send", "clientMsgId": "p", "content": "hi"}, "error"),
    "typing": ({"type": "typing", "on": True}, "error"),
    "read": ({"type": "read", "seq": 1}, "error"),
    "resume": ({"type": "resume", "afterSeq": 0}, "resumed"),
}


async def _answer(ws: WebSocketConnection, frame: dict[str, Any], answer: str) -> float:
    started = time.perf_counter()
    await ws.send_message(json.dumps(frame))
    while json.loads(await ws.get_message())["type"] != answer:
        pass
    return (time.perf_counter() - started) * 1000


async def _measure(probes: int) -> dict[str, list[float]]:
    with tempfile.TemporaryDirectory() as folder:
        settings = Settings(
            port=0,
            data_dir=Path(folder),
            store=f"sqlite:///{Path(folder) / 'bench.db'}",
            ws_max_frames_per_second=10**6,
            ws_frame_burst=10**6,
        )
        names = ["ping (floor)"] + [f"{kind}, {target}" for kind in FRAMES for target in TARGETS]
        timings: dict[str, list[float]] = {name: [] for name in names}
        async with open_services(settings) as found, trio.open_nursery() as nursery:
            await seed_demo_data(found.store, found.passwords, found.system)
            binds = await nursery.start(lambda task_status: serve(found, task_status=task_status))
            url = binds[0].replace("http://", "ws://", 1) + "/ws"
            agent = await found.store.get_user_by_email(AGENT)
            assert agent is not None
            owner = await found.tokens.authenticate(found.tokens.mint_customer("bench-owner"))
            prober = found.tokens.mint_customer("bench-prober")
            staff = found.tokens.issue(agent)
            async with open_websocket_url(url, extra_headers=bearer(staff)):
                # The agent is connected and available: the chat is open and assigned.
                await found.system.set_agent_status(
                    agent.id, AgentStatus.AVAILABLE, by=ActedBy.SELF, actor_id=agent.id
                )
                opened = await found.system.open_chat(
                    owner.user.id, title="bench", description="", priority=Priority.MEDIUM
                )
                theirs = opened.chat.id
                async with open_websocket_url(url, extra_headers=bearer(prober)) as ws:
                    await _probe(ws, theirs, probes, timings)
            nursery.cancel_scope.cancel()
        return timings


async def _probe(
    ws: WebSocketConnection, theirs: str, probes: int, timings: dict[str, list[float]]
) -> None:
    order = random.Random(14)
    for _ in range(probes):
        calls: list[tuple[str, dict[str, Any], str]] = [("ping (floor)", {"type": "ping"}, "pong")]
        for kind, (frame, answer) in FRAMES.items():
            for target, chat_id in zip(TARGETS, (theirs, new_id()), strict=True):
                calls.append((f"{kind}, {target}", {**frame, "chatId": chat_id}, answer))
        # A new order each round: what runs just before a probe weighs on every kind alike
        # (in a fixed rotation the probe after `ping` was the slow one, whatever its chat).
        order.shuffle(calls)
        for name, frame, answer in calls:
            timings[name].append(await _answer(ws, frame, answer))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="switchboard bench oracle", description=__doc__)
    parser.add_argument("--probes", type=int, default=300, help="probes of each kind")
    args = parser.parse_args(argv)
    timings = trio.run(_measure, args.probes)
    console = Console()
    console.print(
        timing_table(f"/ws answers, {args.probes} probes each (ms)", "frame, chat", timings)
    )
    for kind in FRAMES:
        theirs = statistics.median(timings[f"{kind}, someone else's"])
        unknown = statistics.median(timings[f"{kind}, unknown"])
        console.print(f"{kind}: someone else's - unknown, medians: {theirs - unknown:+.3f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
