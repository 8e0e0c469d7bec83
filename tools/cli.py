"""The `switchboard` command: serve, seed, unlock, migrate, inspect, loadsim, bench, version
(each with --help)."""

from __future__ import annotations

import argparse
import getpass
import logging
import os
import signal
import sys
from collections.abc import Sequence
from importlib.metadata import version as package_version
from pathlib import Path
from typing import Any

import trio
from pydantic import ValidationError

from api import (
    CannotListen,
    ConfigError,
    Passwords,
    Settings,
    create_admin,
    demo_logins,
    load_settings,
    misspelt_variables,
    open_services,
    seed_demo_data,
    serve,
    unlock,
)
from bus import BusError
from store import StoreError, open_store
from telemetry import configure_logging, event, scrub
from tools import (
    bench_assignment,
    bench_cluster,
    bench_forgot,
    bench_oracle,
    bench_register,
    bench_socketio,
    bench_ws,
)
from tools._errors import sole_error
from tools._remote import CLIENT_VARIABLES
from tools.backup import backup, sqlite_path
from tools.inspect import add_inspect_parser, inspect_command
from tools.loadsim import add_loadsim_parser, loadsim_command
from tools.migrate import migrate

log = logging.getLogger("tools.serve")

BENCHMARKS = {
    "assignment": bench_assignment.main,
    "cluster": bench_cluster.main,
    "forgot": bench_forgot.main,
    "oracle": bench_oracle.main,
    "register": bench_register.main,
    "ws": bench_ws.main,
    "socketio": bench_socketio.main,
}


def _settings(args: argparse.Namespace, fields: Sequence[str]) -> Settings:
    """Environment first, then the flags given on the command line; logging as they say."""
    overrides: dict[str, Any] = {
        name: getattr(args, name) for name in fields if getattr(args, name, None) is not None
    }
    flags = {name: "--" + name.replace("_", "-") for name in fields}
    settings = load_settings(overrides, flags)
    configure_logging(settings.log_level, settings.log_format)
    for warning in misspelt_variables(os.environ, CLIENT_VARIABLES):
        print(f"switchboard: warning: {warning}", file=sys.stderr)
    return settings


def _no_demo_accounts_in(settings: Settings, what: str) -> None:
    """The demo accounts' password is in the README: production mode never creates them."""
    if settings.production:
        raise ConfigError(
            f"{what} creates the demo accounts, whose password is public; production mode "
            "(SWITCHBOARD_MODE=production) never does: create your own admin with "
            "`switchboard seed --admin EMAIL` (the password on stdin)"
        )


def _password() -> str:
    """The new admin's password: typed at a terminal, else the first line of stdin (never an
    argument, which `ps` would show)."""
    if sys.stdin.isatty():
        return getpass.getpass("password: ")
    return sys.stdin.readline().removesuffix("\n")


async def _seed_admin(settings: Settings, email: str, name: str, password: str) -> None:
    async with open_store(settings.store_url, beside_server=True) as store:
        admin = await create_admin(store, Passwords(), email, name, password)
    print(f"created the admin {admin.email}; sign in at /admin/auth/login")


def _add_store_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--store",
        help="store URL: sqlite:///path/to.db or memory:// "
        "(env SWITCHBOARD_STORE; default: sqlite under --data-dir)",
    )
    parser.add_argument(
        "--data-dir",
        dest="data_dir",
        type=Path,
        help="where the embedded database lives (env SWITCHBOARD_DATA_DIR; default ./data)",
    )


async def _serve(settings: Settings, seed_if_empty: bool) -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:

        async def shutdown_requested() -> None:
            async for received in signals:
                event(log, "server.stopping", signal=signal.Signals(received).name)
                print("\nstopping...", flush=True)
                return

        async with open_services(settings) as found, trio.open_nursery() as nursery:
            if seed_if_empty and await found.store.count_users() == 0:
                report = await seed_demo_data(found.store, found.passwords, found.system)
                print(f"seeded demo data: {report.created} records", flush=True)
            binds = await nursery.start(
                lambda task_status: serve(
                    found, shutdown_trigger=shutdown_requested, task_status=task_status
                )
            )
            base = binds[0]
            store = scrub(settings.store_url)
            event(log, "server.started", url=base, store=store, mode=settings.mode, pid=os.getpid())
            print(f"Switchboard serving on {base}  (store: {store})", flush=True)
            if not settings.production:
                print("Demo logins (development mode):", flush=True)
                print(demo_logins(), flush=True)
                print(
                    f"Try: curl -s -X POST {base}/admin/auth/login -H 'Content-Type: "
                    'application/json\' -d \'{"email": "admin@switchboard.example", '
                    '"password": "switchboard-demo"}\'',
                    flush=True,
                )
            print("Press Ctrl-C to stop.", flush=True)
    print("stopped.", flush=True)


async def _seed(settings: Settings) -> None:
    async with open_services(settings) as found:
        report = await seed_demo_data(found.store, found.passwords, found.system)
    print(f"seed: {report.created} created, {report.existing} already there")
    print(demo_logins())


async def _unlock(settings: Settings, email: str) -> None:
    async with open_store(settings.store_url, existing=True, beside_server=True) as store:
        if await store.get_user_by_email(email) is None:
            raise ValueError(f"there is no account with the email {email!r}")
        await unlock(store, email)
    print(f"unlocked {email}: its failed sign-ins so far no longer slow any client")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="switchboard", description="Switchboard: a real-time customer-support chat router."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve_parser = commands.add_parser("serve", help="serve the API and websockets")
    serve_parser.add_argument("--host", help="interface to bind (env SWITCHBOARD_HOST; 127.0.0.1)")
    serve_parser.add_argument("--port", type=int, help="port (env SWITCHBOARD_PORT; 8080)")
    _add_store_flags(serve_parser)
    serve_parser.add_argument(
        "--mode",
        choices=["development", "production"],
        help="production refuses demo secrets (env SWITCHBOARD_MODE; development)",
    )
    serve_parser.add_argument(
        "--seed-if-empty",
        action="store_true",
        help="seed demo data when the store has no users yet (development mode only)",
    )

    seed_parser = commands.add_parser(
        "seed", help="create the demo accounts (idempotent; development mode only)"
    )
    seed_parser.add_argument(
        "--admin",
        metavar="EMAIL",
        help="create only this admin, with the password read from stdin (any mode; how "
        "production gets its first admin)",
    )
    seed_parser.add_argument("--name", default="Admin", help="the admin's name (default Admin)")
    _add_store_flags(seed_parser)

    unlock_parser = commands.add_parser(
        "unlock",
        help="forget an account's failed sign-ins from every client (works while serving)",
    )
    unlock_parser.add_argument("email", metavar="EMAIL", help="the account's email")
    _add_store_flags(unlock_parser)

    migrate_parser = commands.add_parser(
        "migrate", help="copy every record from one store into another (idempotent)"
    )
    migrate_parser.add_argument(
        "--from",
        dest="source",
        required=True,
        metavar="URL",
        help="the store to copy from, e.g. sqlite:///data/switchboard.db",
    )
    migrate_parser.add_argument(
        "--to",
        dest="target",
        required=True,
        metavar="URL",
        help="the store to copy into, e.g. mongodb://localhost/switchboard",
    )

    backup_parser = commands.add_parser(
        "backup",
        help="copy the SQLite database to FILE, consistently, while the server runs",
    )
    backup_parser.add_argument("file", type=Path, metavar="FILE", help="the new backup file")
    _add_store_flags(backup_parser)

    add_inspect_parser(commands)
    add_loadsim_parser(commands)
    bench_parser = commands.add_parser(
        "bench",
        help="run a benchmark: assignment (the assignment actor in-process), ws (/ws against a raw "
        "echo server), socketio (the Socket.IO endpoint with the stock Node client), cluster "
        "(throughput at 1, 2, 3 nodes beside one process), forgot, oracle (someone else's chat "
        "against an unknown id over /ws), "
        "register (a registration flood: the server's RSS, CPU and health latency)",
    )
    bench_parser.add_argument("benchmark", choices=sorted(BENCHMARKS))
    bench_parser.add_argument(
        "options", nargs=argparse.REMAINDER, help="the benchmark's own flags (see its --help)"
    )
    commands.add_parser("version", help="print the version")
    return parser


# What a person can act on from one line: a bad setting, flag or store URL, an unreachable store.
# A bus that cannot be used at start (unreachable, an untrusted certificate) is the operator's
# to fix, as a store that cannot be opened is: one line, no traceback.
USER_ERRORS = (ConfigError, ValidationError, ValueError, StoreError, BusError, CannotListen)


def _refuse(error: BaseException) -> int:
    print(f"switchboard: error: {error}", file=sys.stderr)
    return 2


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        match args.command:
            case "serve":
                settings = _settings(args, ["host", "port", "store", "data_dir", "mode"])
                if args.seed_if_empty:
                    _no_demo_accounts_in(settings, "--seed-if-empty")
                trio.run(_serve, settings, args.seed_if_empty)
            case "seed" if args.admin is not None:
                settings = _settings(args, ["store", "data_dir"])
                trio.run(_seed_admin, settings, args.admin, args.name, _password())
            case "seed":
                settings = _settings(args, ["store", "data_dir"])
                _no_demo_accounts_in(settings, "`switchboard seed`")
                trio.run(_seed, settings)
            case "unlock":
                trio.run(_unlock, _settings(args, ["store", "data_dir"]), args.email)
            case "backup":
                settings = _settings(args, ["store", "data_dir"])
                print(backup(sqlite_path(settings.store_url), args.file))
            case "migrate":
                return trio.run(migrate, args.source, args.target)
            case "bench":
                return BENCHMARKS[args.benchmark](args.options)
            case "inspect":
                return inspect_command(args)
            case "loadsim":
                return loadsim_command(args)
            case "version":
                print(f"switchboard {package_version('switchboard')}")
    except BaseExceptionGroup as group:
        # Raised inside the server's or a store's nursery: reported as itself when it is one.
        error = sole_error(group)
        if not isinstance(error, USER_ERRORS):
            raise
        return _refuse(error)
    except USER_ERRORS as error:
        return _refuse(error)
    return 0


def run() -> None:
    sys.exit(main())


if __name__ == "__main__":
    run()
