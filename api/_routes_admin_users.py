"""Accounts, for admins: list, create agents, edit, approve users as agents, demote, delete.

Becoming or ceasing to be an agent is the assignment actor's decision: it writes the role with
the agent's routing in one transaction (a new agent starts away; a former agent is stored away,
their open chats re-queued), so an approval or demotion that fails (503) changed nothing and can
be made again. The role is read from the store on every request, so it takes effect at once; a
former agent's live connections are then closed. Deleting an agent demotes them first.
"""

from __future__ import annotations

import dataclasses

from quart import Blueprint, Response
from quart_schema import document_response, validate_querystring, validate_request

from api._access import ask, store_profile
from api._errors import ApiError
from api._forms import takes_forms
from api._guard import current_principal, requires
from api._pages import PageHeaders, page_response
from api._payloads import AdminUserUpdate, ApproveBody, CreateAgentBody, UserList, UserListQuery
from api._respond import respond
from api._schemas import MessageOut, UserOut
from api._services import services
from api._uploads import forget_image
from store import ActedBy, AgentStatus, DuplicateEmail, Role, User, new_id, utcnow

admin_users = Blueprint("admin_users", __name__)

# Only these accounts are managed here: admins manage each other elsewhere, and customers
# belong to the shop, which creates them.
MANAGED_ROLES = frozenset({Role.USER, Role.AGENT})


def _email_taken(error: DuplicateEmail) -> ApiError:
    return ApiError(409, "email_taken", f"another account uses this email: {error}")


async def _managed_user(user_id: str) -> User:
    user = await services().store.get_user(user_id)
    if user is None:
        raise ApiError(404, "user_not_found", f"no user {user_id}")
    if user.role not in MANAGED_ROLES:
        raise ApiError(
            409,
            "role_not_managed",
            f"user {user_id} is {user.role.value}; only users and agents are managed here",
        )
    return user


async def _make_agent(user: User) -> User:
    """The assignment actor takes the user on as an agent (away) and stores the role with their
    routing; answers the record as it then stands."""
    found = services()
    await ask(None, found.system.add_agent(user.id, user.max_load))
    return await found.store.get_user(user.id) or user


async def _make_user(agent: User) -> User:
    """The assignment actor re-queues the agent's chats and stores them a user, away; then their
    connections close."""
    found = services()
    await ask(None, found.system.remove_agent(agent.id))
    found.system.sign_out(agent.id, "you are no longer an agent")
    return await found.store.get_user(agent.id) or agent


@admin_users.get("/admin/users")
@requires(Role.ADMIN)
@validate_querystring(UserListQuery)
@document_response(UserList, 200, PageHeaders)
async def list_users(query_args: UserListQuery) -> Response:
    """Accounts by id (creation order): users and agents, as the original listed them, or the
    accounts of the one `role` asked for (admins and customers too)."""
    store = services().store
    roles = (query_args.role,) if query_args.role is not None else tuple(sorted(MANAGED_ROLES))
    # A page of each role, merged by id: the first `size` of them are this page, and there is
    # another if any were left over or any role has more.
    merged: list[User] = []
    more = False
    for role in roles:
        page = await store.list_users(role=role, limit=query_args.size, cursor=query_args.cursor)
        merged += page.items
        more = more or page.next_cursor is not None
    users = sorted(merged, key=lambda user: user.id)[: query_args.size]
    more = more or len(merged) > len(users)
    return page_response(
        UserList([UserOut.of(user) for user in users]), users[-1].id if more else None
    )


@admin_users.post("/admin/users")
@requires(Role.ADMIN)
@takes_forms(CreateAgentBody)
@validate_request(CreateAgentBody)
@document_response(UserOut, 201)
async def create_agent(data: CreateAgentBody) -> Response:
    """Create an agent account (it starts away), or with `role` user a plain user."""
    found = services()
    now = utcnow()
    try:
        # Made a user, then approved: an approval that fails leaves a user to approve again.
        account = await found.store.create_user(
            User(
                id=new_id(),
                email=data.email,
                name=data.name,
                role=Role.USER,
                password_hash=await found.passwords.hash(data.password),
                phone=data.phone,
                avatar=data.avatar,
                status=AgentStatus.AWAY,
                max_load=data.max_load,
                created_at=now,
                updated_at=now,
            )
        )
    except DuplicateEmail as error:
        raise _email_taken(error) from error
    if data.role is Role.AGENT:
        account = await _make_agent(account)
    return respond(UserOut.of(account), 201)


@admin_users.put("/admin/users/approve")
@requires(Role.ADMIN)
@validate_request(ApproveBody)
@document_response(UserOut)
async def approve(data: ApproveBody) -> Response:
    """Make a user (role user) an agent; they start away."""
    user = await services().store.get_user_by_email(data.email)
    if user is None:
        raise ApiError(404, "user_not_found", f"no account with email {data.email}")
    if user.role is not Role.USER:
        raise ApiError(
            409, "not_a_user", f"{data.email} is {user.role.value}; only a user can be approved"
        )
    return respond(UserOut.of(await _make_agent(user)))


@admin_users.get("/admin/users/<id:user_id>")
@requires(Role.ADMIN)
@document_response(UserOut)
async def get_user(user_id: str) -> Response:
    """One account."""
    user = await services().store.get_user(user_id)
    if user is None:
        raise ApiError(404, "user_not_found", f"no user {user_id}")
    return respond(UserOut.of(user))


@admin_users.put("/admin/users/<id:user_id>")
@requires(Role.ADMIN)
@takes_forms(AdminUserUpdate)
@validate_request(AdminUserUpdate)
@document_response(UserOut)
async def update_user(user_id: str, data: AdminUserUpdate) -> Response:
    """Edit a user's or agent's profile, change their role between user and agent, or an
    agent's availability (`status`, as /admin/agents/{agentId}/status).

    Fields left out stay as they are; phone and avatar are cleared with null. An agent's max load
    has its own route (/admin/agents/{agentId}/max-load).
    """
    user = await _managed_user(user_id)
    if data.status is AgentStatus.AVAILABLE and Role.AGENT not in (user.role, data.role):
        raise ApiError(
            409, "not_an_agent", f"user {user_id} is not an agent; only agents become available"
        )
    # The profile first: a taken email refuses the request before the role has changed.
    changes = data.model_dump(exclude_unset=True, exclude={"role", "status"})
    if changes.get("email", user.email) != user.email:
        changes["email_verified_at"] = None  # a new address is not verified
    if changes:
        try:
            updated = await store_profile(dataclasses.replace(user, **changes, updated_at=utcnow()))
        except DuplicateEmail as error:
            raise _email_taken(error) from error
        await forget_image(user.avatar, updated.avatar)
        user = updated
    if data.role is Role.AGENT and user.role is Role.USER:
        user = await _make_agent(user)
    elif data.role is Role.USER and user.role is Role.AGENT:
        user = await _make_user(user)
    if data.status is not None and user.role is Role.AGENT:
        admin_id = current_principal().user.id
        system = services().system
        await ask(
            None, system.set_agent_status(user.id, data.status, by=ActedBy.ADMIN, actor_id=admin_id)
        )
        user = await services().store.get_user(user.id) or user
    return respond(UserOut.of(user))


@admin_users.delete("/admin/users/<id:user_id>")
@requires(Role.ADMIN)
@document_response(MessageOut)
async def delete_user(user_id: str) -> Response:
    """Delete a user or agent; an agent's open chats are re-queued first."""
    user = await _managed_user(user_id)
    found = services()
    if user.role is Role.AGENT:
        await ask(None, found.system.remove_agent(user.id))  # stored a user: deleting again works
        found.system.sign_out(user.id, "your account was deleted")
    await found.store.delete_user(user.id)
    await forget_image(user.avatar, None)
    return respond(MessageOut(message=f"user {user.id} deleted"))
