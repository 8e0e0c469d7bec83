"""`switchboard inspect`: the live actor system of a running server, for an operator's terminal.

    switchboard inspect                 agents, queue, conversations, assignment actor, restarts
    switchboard inspect agent ID|EMAIL  one agent and their activity history
    switchboard inspect chat ID         one chat, its actor and its history ("why this agent")
    switchboard inspect EMAIL|ID        the same, for an agent's email, or an agent's or chat's id

Everything comes from the admin API (/admin/system for the actors and the assignment state, which
the assignment actor answers in one consistent snapshot; /admin/agents for names; /admin/chats
for a conversation's participants and last seq). `--watch` redraws every `--interval` seconds
until Ctrl-C, in place on a terminal and as one frame after another when piped; `--json` prints
the same data as JSON (one document per refresh).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Awaitable, Callable
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

import trio
from rich.console import Console, Group
from rich.live import Live
from rich.text import Text

from tools._inspect_tables import as_json, render
from tools._inspect_views import (
    DEFAULT_MAX_CHATS,
    InspectView,
    fetch_agent,
    fetch_chat,
    fetch_either,
    fetch_overview,
)
from tools._remote import (
    Credentials,
    RemoteError,
    Server,
    Unreachable,
    add_server_flags,
    admin_server,
)


@dataclass(frozen=True, slots=True)
class InspectOptions:
    url: str
    credentials: Credentials
    agent: str | None = None
    """An agent's id or email: that agent instead of the overview."""
    chat: str | None = None
    """A chat's id: that chat instead of the overview."""
    either: str | None = None
    """An id that may be an agent's or a chat's: whichever it is."""
    json: bool = False
    watch: bool = False
    interval: float = 2.0
    count: int | None = None
    history: int = 20
    max_chats: int = DEFAULT_MAX_CHATS


def _fetcher(options: InspectOptions, server: Server) -> Callable[[], Awaitable[InspectView]]:
    agent, chat, either = options.agent, options.chat, options.either
    if agent is not None:
        return lambda: fetch_agent(server, agent, options.history)
    if chat is not None:
        return lambda: fetch_chat(server, chat, options.history)
    if either is not None:
        return lambda: fetch_either(server, either, options.history)
    return lambda: fetch_overview(server, options.max_chats)


async def inspect(options: InspectOptions, console: Console) -> int:
    """Show the view once, or keep refreshing it with --watch; 0, or 2 with one error line."""
    try:
        async with admin_server(options.url, options.credentials) as server:
            fetch = _fetcher(options, server)
            view = await fetch()
            if not options.watch:
                _print(console, options, view)
                return 0
            await _watch(console, options, fetch, view)
    except RemoteError as error:
        print(f"switchboard: error: {error}", file=sys.stderr)
        return 2
    return 0


def _print(console: Console, options: InspectOptions, view: InspectView) -> None:
    if options.json:
        console.out(as_json(view), highlight=False)
    else:
        console.print(render(view))


async def _watch(
    console: Console,
    options: InspectOptions,
    fetch: Callable[[], Awaitable[InspectView]],
    view: InspectView,
) -> None:
    """Redraw every interval until Ctrl-C (or --count refreshes). A server that stops answering
    is shown and retried: it may be restarting. Refused credentials end the watch."""
    shown = 1
    # Redrawn in place only on a terminal; piped, every refresh is printed after the last.
    in_place = console.is_terminal and not options.json
    if not in_place:
        _print(console, options, view)
    live = Live(render(view), console=console, auto_refresh=False) if in_place else None
    with live or nullcontext():
        while options.count is None or shown < options.count:
            await trio.sleep(options.interval)
            try:
                view = await fetch()
            except Unreachable as error:
                if live is not None:
                    live.update(Group(Text(str(error), style="red"), render(view)), refresh=True)
                else:
                    print(f"switchboard: {error}", file=sys.stderr)
                continue
            shown += 1
            if live is None:
                _print(console, options, view)
            else:
                live.update(render(view), refresh=True)


def add_inspect_parser(commands: Any) -> None:
    parser: argparse.ArgumentParser = commands.add_parser(
        "inspect",
        help="show a running server's agents, queue, conversations and actors",
        description="Show the live actor system of a running server: agents, the queue, "
        "conversations, the supervisor's mailbox and restarts; or one agent or chat with its "
        "activity history.",
    )
    parser.add_argument(
        "target",
        nargs="*",
        metavar="agent ID|EMAIL / chat ID / EMAIL|ID",
        help="one agent or one chat, with its activity history (an email alone is an agent's; "
        "an id alone, whichever has it); nothing for the overview",
    )
    add_server_flags(parser)
    parser.add_argument("--json", action="store_true", help="print JSON instead of tables")
    parser.add_argument("--watch", action="store_true", help="refresh until Ctrl-C")
    parser.add_argument(
        "--interval", type=float, default=2.0, help="seconds between refreshes (default 2)"
    )
    parser.add_argument("--count", type=int, help="with --watch: stop after this many refreshes")
    parser.add_argument(
        "--history", type=int, default=20, help="activity entries shown, the latest (default 20)"
    )
    parser.add_argument(
        "--max-chats",
        dest="max_chats",
        type=int,
        default=DEFAULT_MAX_CHATS,
        help=f"conversations shown with details, busiest first (default {DEFAULT_MAX_CHATS})",
    )


def inspect_command(args: argparse.Namespace) -> int:
    target = args.target
    if len(target) == 1 and target[0] not in ("agent", "chat"):
        target = ["agent" if "@" in target[0] else "either", target[0]]
    if target and (len(target) != 2 or target[0] not in ("agent", "chat", "either")):
        print(
            "switchboard: error: inspect takes nothing, `agent ID|EMAIL`, `chat ID`, or an "
            "agent's email or an agent's or chat's id alone",
            file=sys.stderr,
        )
        return 2
    kind, wanted = target if target else (None, None)
    options = InspectOptions(
        url=args.url,
        credentials=Credentials.of(args),
        agent=wanted if kind == "agent" else None,
        chat=wanted if kind == "chat" else None,
        either=wanted if kind == "either" else None,
        json=args.json,
        watch=args.watch,
        interval=args.interval,
        count=args.count,
        history=args.history,
        max_chats=args.max_chats,
    )
    console = Console()
    try:
        return trio.run(inspect, options, console)
    except KeyboardInterrupt:
        return 0
