"""Dashboards: an agent's own figures and recent chats, and the admin's view of everything."""

from __future__ import annotations

from quart import Blueprint, Response
from quart_schema import document_response, validate_querystring

from api._access import ask
from api._guard import current_principal, requires
from api._pages import PageHeaders, PageQuery
from api._payloads import AdminStatistics, AgentStatistics, ChatList
from api._respond import respond
from api._routes_chats import chat_page
from api._services import services
from store import AgentStatus, ChatFilter, ChatStatus, Role

dashboard = Blueprint("dashboard", __name__)


@dashboard.get("/dashboard/statistics")
@requires(Role.AGENT)
@document_response(AgentStatistics)
async def agent_statistics() -> Response:
    """Your status, max load and chat counts."""
    me = current_principal().user
    store = services().store
    user = await store.get_user(me.id) or me
    return respond(
        AgentStatistics(
            status=user.status,
            max_load=user.max_load,
            open_chats=await store.count_chats(ChatFilter(agent_id=me.id, status=ChatStatus.OPEN)),
            resolved_chats=await store.count_chats(
                ChatFilter(agent_id=me.id, status=ChatStatus.RESOLVED)
            ),
            total_chats=await store.count_chats(ChatFilter(agent_id=me.id)),
        )
    )


@dashboard.get("/dashboard/recent-chats")
@requires(Role.AGENT)
@validate_querystring(PageQuery)
@document_response(ChatList, 200, PageHeaders)
async def agent_recent_chats(query_args: PageQuery) -> Response:
    """Your chats, newest first."""
    return await chat_page(ChatFilter(agent_id=current_principal().user.id), query_args)


@dashboard.get("/admin/dashboard/statistics")
@requires(Role.ADMIN)
@document_response(AdminStatistics)
async def admin_statistics() -> Response:
    """Accounts by role, chats by status, the queue, and agents by status and presence."""
    found = services()
    store = found.store
    snapshot = await ask(None, found.system.snapshot())
    agents = snapshot.core.agents

    def agents_with(status: AgentStatus) -> int:
        return sum(1 for agent in agents if agent.status is status)

    async def chats_with(status: ChatStatus) -> int:
        return await store.count_chats(ChatFilter(status=status))

    return respond(
        AdminStatistics(
            users=await store.count_users(role=Role.USER),
            agents=await store.count_users(role=Role.AGENT),
            admins=await store.count_users(role=Role.ADMIN),
            customers=await store.count_users(role=Role.CUSTOMER),
            total_chats=await store.count_chats(),
            new_chats=await chats_with(ChatStatus.NEW),
            open_chats=await chats_with(ChatStatus.OPEN),
            pending_chats=await chats_with(ChatStatus.PENDING),
            resolved_chats=await chats_with(ChatStatus.RESOLVED),
            queued_chats=len(snapshot.core.queue),
            agents_online=sum(1 for agent in agents if agent.connections),
            agents_available=agents_with(AgentStatus.AVAILABLE),
            agents_busy=agents_with(AgentStatus.BUSY),
            agents_away=agents_with(AgentStatus.AWAY),
        )
    )


@dashboard.get("/admin/dashboard/recent-chats")
@requires(Role.ADMIN)
@validate_querystring(PageQuery)
@document_response(ChatList, 200, PageHeaders)
async def admin_recent_chats(query_args: PageQuery) -> Response:
    """Every chat, newest first."""
    return await chat_page(ChatFilter(), query_args)
