"""The evidence: what the clients recorded, and what the store holds once the server is gone."""

from __future__ import annotations

from store import (
    Activity,
    ActivityFilter,
    Chat,
    Message,
    Role,
    User,
    open_store,
    pages,
)
from tools.chaos._peers import AgentPeer, CustomerPeer
from tools.chaos._plan import ChaosError
from tools.chaos._run import ChaosRun
from tools.chaos_check import (
    AssignmentState,
    ClientView,
    Evidence,
)

# --- the evidence --------------------------------------------------------------------------------


async def _evidence(
    store_url: str,
    run: ChaosRun,
    agents: list[AgentPeer],
    customers: list[CustomerPeer],
    assignment_actor: AssignmentState,
) -> Evidence:
    """What the clients recorded, and what the store holds now the server is gone."""
    async with open_store(store_url) as store:
        chats: list[Chat] = []
        transcripts: dict[str, list[Message]] = {}
        for plan in run.chats:
            if plan.chat_id is None:
                raise ChaosError(f"chat {plan.index} was never opened")
            chat = await store.get_chat(plan.chat_id)
            if chat is None:
                raise ChaosError(f"chat {plan.chat_id} is not stored")
            chats.append(chat)
            messages: list[Message] = []
            transcripts[chat.id] = messages
            while batch := await store.list_messages(chat.id, after_seq=_last(messages), limit=500):
                messages += batch
        activity: list[Activity] = [
            entry
            async for entries in pages(
                lambda c: store.list_activity(ActivityFilter(), limit=500, cursor=c)
            )
            for entry in entries
        ]
        stored_agents: list[User] = [
            user
            async for users in pages(
                lambda c: store.list_users(role=Role.AGENT, limit=500, cursor=c)
            )
            for user in users
        ]
    owner = {chat.id: chat.agent_id for chat in chats}
    views = [
        ClientView(customer.name, chat_id, tuple(view.seen), complete=True)
        for customer in customers
        for chat_id, view in customer.views.items()
    ] + [
        ClientView(
            agent.name, chat_id, tuple(view.seen), complete=owner.get(chat_id) == agent.user_id
        )
        for agent in agents
        for chat_id, view in agent.views.items()
    ]
    return Evidence(
        acks=run.acks,
        transcripts=transcripts,
        views=views,
        activity=activity,
        agents=stored_agents,
        chats=chats,
        assignment_actor=assignment_actor,
    )


def _last(messages: list[Message]) -> int:
    return messages[-1].seq if messages else 0
