"""`switchboard inspect`'s tables (rich) and JSON."""

from __future__ import annotations

import dataclasses
import json
from typing import assert_never

from rich import box
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from tools._inspect_views import (
    CHAT_ACTOR_PREFIX,
    ActivityRow,
    ActorRow,
    AgentDetail,
    AgentRow,
    ChatDetail,
    ClusterInfo,
    ConversationRow,
    InspectView,
    Overview,
    QueueRow,
)

STATUS_STYLE = {"available": "green", "busy": "yellow", "away": "dim"}
# Ids are time-ordered and share their first digits: cut with an ellipsis, every id of a table
# reads alike. An id column folds instead (the whole id, on two lines when narrow), and tables
# are compact enough for 80 columns.
ID_COLUMNS = {"id", "chat", "customer", "open chats"}
ID_MIN_WIDTH = 12


def _table(title: str, columns: tuple[str, ...], right: tuple[str, ...] = ()) -> Table:
    table = Table(
        title=title,
        title_justify="left",
        box=box.SIMPLE_HEAD,
        collapse_padding=True,
        show_edge=False,
    )
    for column in columns:
        table.add_column(
            column,
            justify="right" if column in right else "left",
            overflow="fold",
            min_width=ID_MIN_WIDTH if column in ID_COLUMNS else None,
        )
    return table


# --- showing it ---------------------------------------------------------------------------------


def _seconds(value: float) -> str:
    whole = int(value)
    if whole < 60:
        return f"{value:.1f}s"
    minutes, seconds = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes}m{seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def _status(status: str) -> Text:
    return Text(status, style=STATUS_STYLE.get(status, ""))


def _agent_name(agent: AgentRow) -> Text:
    if agent.name is None:
        return Text("(deleted)", style="dim")
    return Text.assemble(agent.name, (f" <{agent.email}>", "dim"))


def agents_table(agents: tuple[AgentRow, ...]) -> Table:
    columns = ("agent", "id", "status", "conn", "load/max", "idle", "open chats")
    table = _table(f"Agents ({len(agents)})", columns, right=("conn", "idle"))
    for agent in agents:
        over = agent.load >= agent.max_load
        table.add_row(
            _agent_name(agent),
            Text(agent.id, style="dim"),
            _status(agent.status),
            str(agent.connections),
            Text(f"{agent.load}/{agent.max_load}", style="yellow" if over else ""),
            _seconds(agent.idle_seconds),
            Text("\n".join(agent.chat_ids)),
        )
    return table


def _priority(entry: QueueRow) -> Text:
    if entry.effective_priority == entry.priority:
        return Text(entry.priority)
    return Text.assemble(entry.effective_priority, (f" (was {entry.priority})", "dim"))


def queue_table(queue: tuple[QueueRow, ...]) -> Table:
    columns = ("#", "chat", "priority", "status", "waiting", "requeued")
    table = _table(f"Queue ({len(queue)} waiting)", columns, right=("#", "waiting"))
    for entry in queue:
        table.add_row(
            str(entry.position),
            Text(entry.chat_id),
            _priority(entry),
            entry.status,
            _seconds(entry.waiting_seconds),
            "yes" if entry.requeued else "",
        )
    return table


def conversations_table(rows: tuple[ConversationRow, ...], not_shown: int) -> Table:
    more = f", {not_shown} more not shown" if not_shown else ""
    columns = ("chat", "status", "customer", "agent", "last seq", "mailbox", "restarts")
    table = _table(f"Conversations ({len(rows)}{more})", columns, right=("last seq", "mailbox"))
    for row in rows:
        chat = row.chat
        table.add_row(
            Text(row.actor.name.removeprefix(CHAT_ACTOR_PREFIX)),
            chat.status if chat else Text("gone", style="dim"),
            Text(chat.customer if chat else ""),
            Text(chat.agent or "-" if chat else ""),
            str(chat.last_seq) if chat else "",
            str(row.actor.mailbox_depth),
            str(row.actor.restarts),
        )
    return table


def actors_table(title: str, actors: tuple[ActorRow, ...]) -> Table:
    table = _table(title, ("actor", "alive", "mailbox", "restarts"))
    for actor in actors:
        table.add_row(
            Text(actor.name),
            Text("yes") if actor.alive else Text("no", style="red"),
            str(actor.mailbox_depth),
            Text(str(actor.restarts), style="red" if actor.restarts else ""),
        )
    return table


def cluster_part(cluster: ClusterInfo) -> RenderableType:
    if not cluster.clustered:
        return Text(
            f"Single node {cluster.node} (no SWITCHBOARD_BUS_URL): it runs the supervisor "
            "and every chat.",
            style="dim",
        )
    if cluster.leader is None:
        lead = Text("no node leads now (a takeover is under way)", style="red")
    else:
        lead = Text(f"{cluster.leader} leads, fencing token {cluster.fencing_token}")
    summary = Text.assemble("Cluster: ", lead, f"; answered by {cluster.node}")
    table = _table(f"Nodes ({len(cluster.nodes)})", ("node", "role", "conn"), right=("conn",))
    for node in cluster.nodes:
        role = Text("arbiter", style="green") if node.leads else Text("edge")
        answered = " (this one)" if node.id == cluster.node else ""
        table.add_row(Text(node.id + answered), role, str(node.connections))
    return Group(summary, table)


def history_table(
    rows: tuple[ActivityRow, ...], total: int, names: dict[str, str], *, show_chat: bool
) -> Table:
    """The activity log, agent ids replaced by names: the reasons name the candidates."""

    def named(text: str) -> Text:
        for agent_id, name in names.items():
            text = text.replace(agent_id, name)
        return Text(text)

    shown = f"last {len(rows)} of {total}" if len(rows) < total else f"{total}"
    table = _table(f"Activity ({shown}, oldest first)", ("at", "kind", "change", "by", "reason"))
    for row in rows:
        change = f"{row.from_value or '-'} -> {row.to_value or '-'}"
        if show_chat and row.chat_id:
            change += f" (chat {row.chat_id})"
        table.add_row(
            row.at.replace("T", " ").removesuffix("Z")[:23],
            row.kind,
            named(change),
            named(row.by),
            named(row.reason),
        )
    return table


def render(view: InspectView) -> RenderableType:
    match view:
        case Overview():
            assignment_actor = view.supervisor
            header = Text.assemble(
                ("Switchboard ", "bold"),
                f"at {view.url}: {view.sessions} live connections, supervisor mailbox ",
                str(assignment_actor.mailbox_depth) if assignment_actor else "?",
                ", restarts ",
                str(assignment_actor.restarts) if assignment_actor else "?",
                f", {len(view.parked)} chats parked (pending, waiting for their customer)",
            )
            parts: list[RenderableType] = [
                header,
                cluster_part(view.cluster),
                agents_table(view.agents),
                queue_table(view.queue),
                conversations_table(view.conversations, view.conversations_not_shown),
            ]
            if view.restarted:
                parts.append(actors_table("Restarted or down", view.restarted))
            return Group(*parts)
        case AgentDetail(agent, history, total, names):
            return Group(
                agents_table((agent,)), history_table(history, total, names, show_chat=True)
            )
        case ChatDetail(chat, actor, queued, history, total, names):
            summary = Text.assemble(
                (f"Chat {chat.id}", "bold"),
                f"  {chat.title!r}  status {chat.status}, priority {chat.priority}, "
                f"customer {chat.customer}, agent {chat.agent or '-'}, last seq {chat.last_seq}, "
                f"created {chat.created_at}",
            )
            parts = [summary]
            parts.append(
                actors_table("Conversation actor", (actor,))
                if actor
                else Text("No conversation actor running (passivated or resolved).", style="dim")
            )
            if queued:
                parts.append(queue_table((queued,)))
            parts.append(history_table(history, total, names, show_chat=False))
            return Group(*parts)
        case _ as unreachable:
            assert_never(unreachable)


def as_json(view: InspectView) -> str:
    kind = {Overview: "overview", AgentDetail: "agent", ChatDetail: "chat"}[type(view)]
    return json.dumps({"view": kind, **dataclasses.asdict(view)})
