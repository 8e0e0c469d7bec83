"""Every chat, for admins: list with filters, read, reassign, park, close, delete, and each
chat's activity history. Changes go to the assignment actor, which refuses what it cannot do
(the agent is away, offline or at max load; the chat is resolved) with 409 and the reason."""

from __future__ import annotations

from quart import Blueprint, Response
from quart_schema import document_response, validate_querystring, validate_request

from api._access import ask, chat_not_found
from api._errors import ApiError
from api._guard import current_principal, requires
from api._pages import PageHeaders, PageQuery, page_response
from api._payloads import (
    ActivityList,
    ActivityOut,
    AdminChatQuery,
    AdminChatUpdate,
    ChatList,
    ReassignBody,
)
from api._respond import respond
from api._routes_chats import chat_page
from api._schemas import ChatOut, MessageOut
from api._services import services
from api._shapes import chat_out
from router import Refused
from store import ActedBy, ActivityFilter, Chat, ChatFilter, ChatStatus, Role, utcnow

admin_chats = Blueprint("admin_chats", __name__)


async def _chat(chat_id: str) -> Chat:
    chat = await services().store.get_chat(chat_id)
    if chat is None:
        raise chat_not_found(chat_id)
    return chat


async def _reassign(chat: Chat, agent_id: str) -> Chat:
    admin_id = current_principal().user.id
    return await ask(None, services().system.reassign_chat(chat.id, agent_id, actor_id=admin_id))


# The refusals meaning "this agent cannot take a chat now", which the original answered as
# NOT_AVAILABLE on the route the admin panel's edit form calls.
UNAVAILABLE_AGENT = frozenset({"agent_away", "agent_offline", "agent_at_max_load"})
# The panel compares the answer's message with these words: on a match it warns and clears its
# agent field (so the admin picks another) instead of closing the form with an error.
NOT_AVAILABLE = "The selected agent is not available"


async def _resolve(chat: Chat) -> Chat:
    admin_id = current_principal().user.id
    system = services().system
    return await ask(None, system.resolve_chat(chat.id, by=ActedBy.ADMIN, actor_id=admin_id))


@admin_chats.get("/admin/chats")
@requires(Role.ADMIN)
@validate_querystring(AdminChatQuery)
@document_response(ChatList, 200, PageHeaders)
async def list_chats(query_args: AdminChatQuery) -> Response:
    """Chats, newest first, filtered by status, agent, customer, priority and creation time."""
    chat_filter = ChatFilter(
        status=query_args.status,
        agent_id=query_args.agent_id,
        customer_id=query_args.customer_id,
        priority=query_args.priority,
        created_from=query_args.created_from,
        created_to=query_args.created_to,
    )
    return await chat_page(chat_filter, query_args)


@admin_chats.get("/admin/chats/<id:chat_id>")
@requires(Role.ADMIN)
@document_response(ChatOut)
async def get_chat(chat_id: str) -> Response:
    """One chat."""
    return respond(await chat_out(services().store, await _chat(chat_id)))


@admin_chats.put("/admin/chats/<id:chat_id>")
@requires(Role.ADMIN)
@validate_request(AdminChatUpdate)
@document_response(ChatOut)
async def update_chat(chat_id: str, data: AdminChatUpdate) -> Response:
    """Reassign (`agentId`; the chat's own agent changes nothing), set the status: pending
    (waiting for the customer: an open chat frees its agent's slot, a waiting one leaves the
    queue; the customer's next message queues it again) or resolved, and change the title and
    description. An empty body changes nothing. An agent who cannot take the chat is refused
    409 in the original's words ("The selected agent is not available"), the reason in
    `details.reason`."""
    chat = await _chat(chat_id)
    # The admin panel's edit form always sends the agent: its own agent is no change (the
    # original took it too), so editing a title does not fail as `already_assigned`.
    if data.agent_id is not None and data.agent_id != chat.agent_id:
        try:
            chat = await _reassign(chat, data.agent_id)
        except Refused as refusal:
            if refusal.code not in UNAVAILABLE_AGENT:
                raise
            # The original's words, the reason beside them; the code stays the precise one.
            raise ApiError(409, refusal.code, NOT_AVAILABLE, {"reason": refusal.message}) from None
    if data.status is ChatStatus.RESOLVED:
        chat = await _resolve(chat)
    elif data.status is ChatStatus.PENDING:
        admin_id = current_principal().user.id
        chat = await ask(
            None, services().system.park_chat(chat.id, by=ActedBy.ADMIN, actor_id=admin_id)
        )
    title = data.title if data.title is not None else chat.title
    description = data.description if data.description is not None else chat.description
    if (title, description) != (chat.title, chat.description):
        chat = (
            await services().store.set_chat_details(
                chat.id, title=title, description=description, at=utcnow()
            )
            or chat
        )
        # The assignment actor keeps each active chat's record to answer and push without a read.
        await ask(None, services().system.chat_details_changed(chat.id, title, description))
    return respond(await chat_out(services().store, chat))


@admin_chats.delete("/admin/chats/<id:chat_id>")
@requires(Role.ADMIN)
@document_response(MessageOut)
async def delete_chat(chat_id: str) -> Response:
    """Delete a chat and its messages; an active chat is resolved first. Its activity history
    stays."""
    chat = await _chat(chat_id)
    admin_id = current_principal().user.id
    if not await ask(None, services().system.delete_chat(chat.id, actor_id=admin_id)):
        raise chat_not_found(chat.id)
    return respond(MessageOut(message=f"chat {chat.id} deleted"))


@admin_chats.post("/admin/chats/<id:chat_id>/reassign")
@requires(Role.ADMIN)
@validate_request(ReassignBody)
@document_response(ChatOut)
async def reassign(chat_id: str, data: ReassignBody) -> Response:
    """Give an active chat to an agent who is available, connected and below max load."""
    chat = await _reassign(await _chat(chat_id), data.agent_id)
    return respond(await chat_out(services().store, chat))


@admin_chats.post("/admin/chats/<id:chat_id>/close")
@requires(Role.ADMIN)
@document_response(ChatOut)
async def close(chat_id: str) -> Response:
    """Resolve an active chat."""
    chat = await _resolve(await _chat(chat_id))
    return respond(await chat_out(services().store, chat))


@admin_chats.get("/admin/chats/<id:chat_id>/history")
@requires(Role.ADMIN)
@validate_querystring(PageQuery)
@document_response(ActivityList, 200, PageHeaders)
async def chat_history(chat_id: str, query_args: PageQuery) -> Response:
    """The chat's status changes and assignments, with who caused them and why, oldest first."""
    chat = await _chat(chat_id)
    page = await services().store.list_activity(
        ActivityFilter(chat_id=chat.id), limit=query_args.size, cursor=query_args.cursor
    )
    return page_response(
        ActivityList([ActivityOut.model_validate(e, from_attributes=True) for e in page.items]),
        page.next_cursor,
    )
