"""Chats as agents and customers see them, and an agent's own availability (which decides what
they are assigned): the original backend's paths."""

from __future__ import annotations

from quart import Blueprint, Response
from quart_schema import document_response, validate_querystring, validate_request

from actors import Speaker
from api._access import ask, visible_chat
from api._guard import current_principal, requires
from api._pages import PageHeaders, PageQuery, page_response
from api._paths import choice
from api._payloads import ChatList, ChatListQuery, OpenChatBody
from api._respond import respond
from api._schemas import ChatOut, UserOut
from api._services import services
from api._shapes import chat_out
from store import ActedBy, AgentStatus, ChatFilter, ChatStatus, MessageStatus, Role

chats = Blueprint("chats", __name__)

SETTABLE = (AgentStatus.AVAILABLE, AgentStatus.AWAY)


async def chat_page(chat_filter: ChatFilter, query: PageQuery) -> Response:
    """One page of the chats matching the filter, newest first: the lists of every role."""
    store = services().store
    page = await store.list_chats(
        chat_filter, limit=query.size, cursor=query.cursor, newest_first=True
    )
    items = [await chat_out(store, chat) for chat in page.items]
    return page_response(ChatList(items), page.next_cursor)


@chats.put("/profile/agent/<oneof(available, away):status>")
@requires(Role.AGENT)
@document_response(UserOut)
async def set_own_status(status: str) -> Response:
    """Set your availability: available (assign me chats) or away (re-queue my open chats).

    Busy is not settable: the system shows it while you are at your max load.
    """
    me = current_principal().user
    # Busy is a status, only not one to choose: the domain refuses it with its reason.
    wanted = AgentStatus.BUSY if status == AgentStatus.BUSY else choice("status", status, SETTABLE)
    found = services()
    await ask(None, found.system.set_agent_status(me.id, wanted, by=ActedBy.SELF, actor_id=me.id))
    return respond(UserOut.of(await found.store.get_user(me.id) or me))


@chats.get("/chats/agent")
@requires(Role.AGENT)
@validate_querystring(ChatListQuery)
@document_response(ChatList, 200, PageHeaders)
async def agent_chats(query_args: ChatListQuery) -> Response:
    """Your chats (open, and the resolved ones you handled), newest first."""
    me = current_principal().user
    return await chat_page(ChatFilter(agent_id=me.id, status=query_args.status), query_args)


@chats.get("/chats/agent/show/<id:chat_id>")
@requires(Role.AGENT)
@document_response(ChatOut)
async def agent_chat(chat_id: str) -> Response:
    """One of your chats."""
    return respond(await chat_out(services().store, await visible_chat(chat_id)))


async def _read(chat_id: str) -> Response:
    """Mark everything the other side wrote so far as seen; answers the chat with its counts."""
    chat = await visible_chat(chat_id)
    me = current_principal().user
    found = services()
    await ask(
        chat.id,
        found.system.mark_read(
            chat.id, Speaker(me.id, me.role), seq=chat.last_seq, status=MessageStatus.SEEN
        ),
    )
    return respond(await chat_out(found.store, await found.store.get_chat(chat.id) or chat))


@chats.put("/chats/agent/read/<id:chat_id>")
@requires(Role.AGENT)
@document_response(ChatOut)
async def agent_read(chat_id: str) -> Response:
    """Mark the customer's messages so far as seen."""
    return await _read(chat_id)


@chats.put("/chats/agent/<id:chat_id>/<oneof(pending, resolved):status>")
@requires(Role.AGENT)
@document_response(ChatOut)
async def agent_chat_status(chat_id: str, status: str) -> Response:
    """Set your chat pending (wait for the customer; frees your slot) or resolved (close it).

    A pending chat goes back to the queue when its customer writes.
    """
    wanted = choice("status", status, (ChatStatus.PENDING, ChatStatus.RESOLVED))
    chat = await visible_chat(chat_id)
    me = current_principal().user
    found = services()
    change = found.system.park_chat if wanted is ChatStatus.PENDING else found.system.resolve_chat
    changed = await ask(chat.id, change(chat.id, by=ActedBy.SELF, actor_id=me.id))
    return respond(await chat_out(found.store, changed))


@chats.post("/chats/customer")
@requires(Role.CUSTOMER)
@validate_request(OpenChatBody)
@document_response(ChatOut, 201)
@document_response(ChatOut, 200)
async def customer_chat(data: OpenChatBody) -> Response:
    """Your open chat, or a new one (201) queued for the next available agent."""
    me = current_principal().user
    found = services()
    opened = await ask(
        None,
        found.system.open_chat(
            me.id,
            title=data.title or f"Chat with {me.name}",
            description=data.description,
            priority=data.priority,
        ),
    )
    return respond(await chat_out(found.store, opened.chat), 201 if opened.created else 200)


@chats.put("/chats/customer/read/<id:chat_id>")
@requires(Role.CUSTOMER)
@document_response(ChatOut)
async def customer_read(chat_id: str) -> Response:
    """Mark the agent's messages so far as seen."""
    return await _read(chat_id)
