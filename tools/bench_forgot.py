"""Benchmark: does `/password/forgot` take longer for an address with an account?

It must not (README, "Accounts and email"): the answer is the same, and so should the time be.
A server runs in this process on a fresh SQLite store (the default backend, `synchronous=FULL`),
with the code-request limit lifted; the client sends, alternately, a known address (a demo
agent's) and a made-up one, `--requests` of each, and times every request. Beside them, the
floor: `GET /dev/test`, an answer with no store work at all. `--answer-seconds 0` measures the
work alone, without the answer's minimum time (`SWITCHBOARD_FORGOT_ANSWER_SECONDS`).

    python -m tools.bench_forgot [--requests 300] [--answer-seconds 0]
"""

from __future__ import annotations

import argparse
import logging
import statistics
import tempfile
import time
from pathlib import Path

import httpx
import trio
from rich.console import Console

from api import Settings, open_services, seed_demo_data, serve
from tools._bench_table import timing_table

KNOWN = "ann@switchboard.example"


async def _measure(requests: int, answer_seconds: float | None) -> dict[str, list[float]]:
    with tempfile.TemporaryDirectory() as folder:
        settings = Settings(
            port=0,
            data_dir=Path(folder),
            store=f"sqlite:///{Path(folder) / 'bench.db'}",
            code_max_requests=10**9,
        )
        if answer_seconds is not None:
            settings = settings.model_copy(update={"forgot_answer_seconds": answer_seconds})
        timings: dict[str, list[float]] = {"known address": [], "unknown address": [], "floor": []}
        async with open_services(settings) as found, trio.open_nursery() as nursery:
            await seed_demo_data(found.store, found.passwords, found.system)
            binds = await nursery.start(lambda task_status: serve(found, task_status=task_status))
            async with httpx.AsyncClient(base_url=binds[0]) as http:
                for i in range(requests):
                    calls = [
                        ("known address", "/password/forgot", {"email": KNOWN}),
                        ("unknown address", "/password/forgot", {"email": f"n{i}@example.com"}),
                        ("floor", "/dev/test", None),
                    ]
                    # Each kind goes first in turn, so what runs after a request (or before)
                    # weighs on every kind alike.
                    for name, path, body in calls[i % 3 :] + calls[: i % 3]:
                        started = time.perf_counter()
                        if body is None:
                            response = await http.get(path)
                        else:
                            response = await http.post(path, json=body)
                        timings[name].append((time.perf_counter() - started) * 1000)
                        assert response.status_code == 200, response.text
            nursery.cancel_scope.cancel()
        return timings


def main(argv: list[str] | None = None) -> int:
    # Without an SMTP server each known address's mail is logged as kept; with one (as in
    # production) nothing is logged during the request. Measure the production path.
    logging.getLogger("api.mail").setLevel(logging.ERROR)
    parser = argparse.ArgumentParser(prog="switchboard bench forgot", description=__doc__)
    parser.add_argument("--requests", type=int, default=300, help="requests of each kind")
    parser.add_argument(
        "--answer-seconds", type=float, help="the answer's minimum time (default: the server's)"
    )
    args = parser.parse_args(argv)
    timings = trio.run(_measure, args.requests, args.answer_seconds)
    console = Console()
    console.print(
        timing_table(f"/password/forgot, {args.requests} requests each (ms)", "request", timings)
    )
    known = statistics.median(timings["known address"])
    unknown = statistics.median(timings["unknown address"])
    console.print(f"known - unknown, medians: {known - unknown:+.2f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
