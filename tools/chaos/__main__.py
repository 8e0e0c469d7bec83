"""`python -m tools.chaos`: the command line."""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
from pathlib import Path

import trio

from tools.chaos._drive import run_chaos
from tools.chaos._plan import ChaosPlan

# --- the command line ----------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tools.chaos",
        description="Kill a Switchboard server under websocket traffic, restart it, check what "
        "it kept.",
    )
    defaults = ChaosPlan()
    parser.add_argument("--chats", type=int, default=defaults.chats)
    parser.add_argument("--messages", type=int, default=defaults.messages, help="per chat")
    parser.add_argument("--kills", type=int, default=defaults.kills)
    parser.add_argument(
        "--writer-kills",
        type=int,
        default=defaults.writer_kills,
        help="SIGKILLs of SQLite's writer process alone (the server stays up)",
    )
    parser.add_argument(
        "--churn", type=int, default=defaults.churn, help="agents away and back, reassigns"
    )
    parser.add_argument("--agents", type=int, default=0, help="default: one per 5 chats")
    parser.add_argument("--window", type=int, default=defaults.window)
    parser.add_argument("--grace", type=float, default=defaults.grace_seconds)
    parser.add_argument("--seed", type=int, help="default: a random one (printed)")
    parser.add_argument("--store", help="store URL (default: SQLite in the work directory)")
    parser.add_argument(
        "--standalone",
        action="store_true",
        help="the store is a standalone MongoDB (no transactions): kill only once every chat "
        "is assigned, and use no churn",
    )
    parser.add_argument(
        "--nodes", type=int, default=1, help="cluster mode: this many nodes (needs --bus)"
    )
    parser.add_argument("--bus", help="cluster mode: the Valkey/Redis URL (redis://host:6379/0)")
    parser.add_argument("--workdir", type=Path, help="default: a new temporary directory")
    parser.add_argument("--time-limit", type=float, default=defaults.time_limit)
    args = parser.parse_args(argv)
    if args.standalone and args.churn:
        parser.error("--standalone runs without churn: its decisions could be cut in half")
    plan = ChaosPlan(
        chats=args.chats,
        messages=args.messages,
        kills=args.kills,
        writer_kills=args.writer_kills,
        seed=args.seed if args.seed is not None else random.randrange(2**31),
        churn=args.churn,
        agents=args.agents,
        window=args.window,
        grace_seconds=args.grace,
        store=args.store,
        atomic_routing=not args.standalone,
        time_limit=args.time_limit,
        nodes=args.nodes,
        bus=args.bus,
    )
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="switchboard-chaos-"))
    workdir.mkdir(parents=True, exist_ok=True)
    report = trio.run(run_chaos, plan, workdir)
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
