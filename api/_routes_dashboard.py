"""Dashboards: an agent's own figures and recent chats, and the admin's view of everything."""

from __future__ import annotations

import dataclasses

from quart import Blueprint, Response
from quart_schema import document_response, validate_querystring

from api._access import ask
from api._guard import current_principal, requires
from api._pages import PageHeaders, RecentQuery
from api._payloads import (
    AdminStatistics,
    AdminStatisticsBody,
    AgentStatistics,
    AgentStatisticsBody,
    ChatCounts,
    ChatList,
    UserCounts,
)
from api._respond import respond
from api._routes_chats import chat_page
from api._services import services
from store import AgentStatus, ChatFilter, ChatStatus, Role

dashboard = Blueprint("dashboard", __name__)


async def _chat_counts(base: ChatFilter) -> ChatCounts:
    store = services().store

    async def count(status: ChatStatus | None) -> int:
        return await store.count_chats(dataclasses.replace(base, status=status))

    return ChatCounts(
        total=await count(None),
        resolved=await count(ChatStatus.RESOLVED),
        pending=await count(ChatStatus.PENDING),
        open=await count(ChatStatus.OPEN),
        new=await count(ChatStatus.NEW),
    )


@dashboard.get("/dashboard/statistics")
@requires(Role.AGENT)
@document_response(AgentStatistics)
async def agent_statistics() -> Response:
    """Your status, max load and chat counts: the chats assigned to you now, and the resolved
    ones you handled last (a chat set pending has no agent until it is assigned again)."""
    me = current_principal().user
    store = services().store
    user = await store.get_user(me.id) or me
    chats = await _chat_counts(ChatFilter(agent_id=me.id))
    return respond(
        AgentStatistics(
            statistics=AgentStatisticsBody(chat=chats),
            status=user.status,
            max_load=user.max_load,
            open_chats=chats.open,
            resolved_chats=chats.resolved,
            total_chats=chats.total,
        )
    )


@dashboard.get("/dashboard/recent-chats")
@requires(Role.AGENT)
@validate_querystring(RecentQuery)
@document_response(ChatList, 200, PageHeaders)
async def agent_recent_chats(query_args: RecentQuery) -> Response:
    """Your chats, newest first (4 without `limit`, as the original's)."""
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

    chats = await _chat_counts(ChatFilter())
    users = await store.count_users(role=Role.USER)
    agent_accounts = await store.count_users(role=Role.AGENT)
    return respond(
        AdminStatistics(
            statistics=AdminStatisticsBody(
                user=UserCounts(total_agents=agent_accounts, total_users=users), chat=chats
            ),
            users=users,
            agents=agent_accounts,
            admins=await store.count_users(role=Role.ADMIN),
            customers=await store.count_users(role=Role.CUSTOMER),
            total_chats=chats.total,
            new_chats=chats.new,
            open_chats=chats.open,
            pending_chats=chats.pending,
            resolved_chats=chats.resolved,
            queued_chats=len(snapshot.core.queue),
            agents_online=sum(1 for agent in agents if agent.connections),
            agents_available=agents_with(AgentStatus.AVAILABLE),
            agents_busy=agents_with(AgentStatus.BUSY),
            agents_away=agents_with(AgentStatus.AWAY),
        )
    )


@dashboard.get("/admin/dashboard/recent-chats")
@requires(Role.ADMIN)
@validate_querystring(RecentQuery)
@document_response(ChatList, 200, PageHeaders)
async def admin_recent_chats(query_args: RecentQuery) -> Response:
    """Every chat, newest first (4 without `limit`, as the original's)."""
    return await chat_page(ChatFilter(), query_args)
