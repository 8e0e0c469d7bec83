"""The routing state, for admins: agents with their presence and load, the queue, an agent's
status and max load, their activity history, and the whole actor system. Read from and changed
through the assignment actor, the single writer of that state."""

from __future__ import annotations

import socket

import trio
from quart import Blueprint, Response
from quart_schema import document_response, validate_querystring, validate_request

from actors import AgentView
from api._access import ask
from api._errors import ApiError
from api._guard import current_principal, requires
from api._pages import NumberedPageQuery, PageHeaders, PageQuery, page_after, page_response
from api._payloads import (
    ActivityList,
    ActivityOut,
    ActorOut,
    AgentList,
    AgentOut,
    AgentStateOut,
    AgentStatusBody,
    ClusterOut,
    MaxLoadBody,
    QueueEntryOut,
    QueueList,
    SystemOut,
)
from api._respond import respond
from api._services import services
from cluster import ClusterSystem, ClusterView
from store import ActedBy, ActivityFilter, Role

admin_routing = Blueprint("admin_routing", __name__)


async def _agent_out(view: AgentView) -> AgentOut:
    user = await services().store.get_user(view.agent_id)
    return AgentOut.of_user(view, user, trio.current_time())


@admin_routing.get("/admin/agents")
@requires(Role.ADMIN)
@validate_querystring(PageQuery)
@document_response(AgentList, 200, PageHeaders)
async def list_agents(query_args: PageQuery) -> Response:
    """Every agent by id: status, live connections, load, max load, idle time."""
    snapshot = await ask(None, services().system.snapshot())
    page, next_cursor = page_after(
        snapshot.core.agents, lambda agent: agent.agent_id, query_args.cursor, query_args.size
    )
    return page_response(AgentList([await _agent_out(view) for view in page]), next_cursor)


@admin_routing.put("/admin/agents/<id:agent_id>/max-load")
@requires(Role.ADMIN)
@validate_request(MaxLoadBody)
@document_response(AgentOut)
async def set_max_load(agent_id: str, data: MaxLoadBody) -> Response:
    """Set how many open chats the agent may have. Lowering it below their load takes no chat
    away; they get no new one until their load is below it."""
    admin_id = current_principal().user.id
    view = await ask(
        None, services().system.set_max_load(agent_id, data.max_load, actor_id=admin_id)
    )
    return respond(await _agent_out(view))


@admin_routing.put("/admin/agents/<id:agent_id>/status")
@requires(Role.ADMIN)
@validate_request(AgentStatusBody)
@document_response(AgentOut)
async def set_status(agent_id: str, data: AgentStatusBody) -> Response:
    """Force an agent away (their open chats are re-queued) or make them available."""
    admin_id = current_principal().user.id
    view = await ask(
        None,
        services().system.set_agent_status(
            agent_id, data.status, by=ActedBy.ADMIN, actor_id=admin_id
        ),
    )
    return respond(await _agent_out(view))


@admin_routing.get("/admin/agents/<id:agent_id>/history")
@requires(Role.ADMIN)
@validate_querystring(PageQuery)
@document_response(ActivityList, 200, PageHeaders)
async def agent_history(agent_id: str, query_args: PageQuery) -> Response:
    """The agent's status changes and the assignments they took part in, oldest first."""
    store = services().store
    if await store.get_user(agent_id) is None:
        raise ApiError(404, "agent_not_found", f"no agent {agent_id}")
    page = await store.list_activity(
        ActivityFilter(agent_id=agent_id), limit=query_args.size, cursor=query_args.cursor
    )
    return page_response(
        ActivityList([ActivityOut.model_validate(e, from_attributes=True) for e in page.items]),
        page.next_cursor,
    )


@admin_routing.get("/admin/queue")
@requires(Role.ADMIN)
@validate_querystring(NumberedPageQuery)
@document_response(QueueList, 200, PageHeaders)
async def queue(query_args: NumberedPageQuery) -> Response:
    """The waiting chats in serving order. The queue moves while you page through it: the
    cursor is a position, so a page shows whichever chats hold the next positions by then."""
    snapshot = await ask(None, services().system.snapshot())
    page, next_cursor = page_after(
        snapshot.core.queue, lambda entry: entry.position, query_args.after, query_args.size
    )
    return page_response(
        QueueList([QueueEntryOut.of(entry, snapshot.now) for entry in page]), next_cursor
    )


@admin_routing.get("/admin/system")
@requires(Role.ADMIN)
@document_response(SystemOut)
async def system_snapshot() -> Response:
    """The actor system now, as `switchboard inspect` shows it (one document, not paged)."""
    found = services()
    snapshot = await ask(None, found.system.snapshot())
    core, now = snapshot.core, snapshot.now
    system = found.system
    cluster = (
        system.cluster()
        if isinstance(system, ClusterSystem)
        else ClusterView.alone(found.settings.node_id or socket.gethostname(), snapshot.sessions)
    )
    return respond(
        SystemOut(
            agents=[AgentStateOut.of(view, now) for view in core.agents],
            queue=[QueueEntryOut.of(entry, now) for entry in core.queue],
            parked=list(core.parked),
            actors=[
                ActorOut.model_validate(info, from_attributes=True) for info in snapshot.actors
            ],
            sessions=snapshot.sessions,
            cluster=ClusterOut.of(cluster),
        )
    )
