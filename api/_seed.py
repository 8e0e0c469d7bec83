"""Demo data: an admin, agents with max loads, a plain user and two shop customers, and the Node
backend's seeded accounts (its front ends' login forms refuse the demo addresses). Idempotent.
And the operator's own admin, for production, which never creates the demo accounts."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from pydantic import ValidationError

from actors import System
from api._auth import Passwords, customer_id
from api._schemas import RegisterBody
from store import AgentStatus, DuplicateEmail, EdgeStore, Role, User, new_id, utcnow

DEMO_PASSWORD = "switchboard-demo"
# The Node backend's seeder's password for its accounts: a team moving over signs in as before.
ORIGINAL_PASSWORD = "123456zZ"


@dataclass(frozen=True, slots=True)
class DemoAccount:
    email: str
    name: str
    role: Role
    max_load: int = 3
    password: str = DEMO_PASSWORD


DEMO_STAFF = (
    DemoAccount("admin@switchboard.example", "Ada Admin", Role.ADMIN),
    DemoAccount("ann@switchboard.example", "Ann Agent", Role.AGENT, max_load=3),
    DemoAccount("bob@switchboard.example", "Bob Agent", Role.AGENT, max_load=4),
    DemoAccount("cy@switchboard.example", "Cy Agent", Role.AGENT, max_load=2),
    DemoAccount("uma@switchboard.example", "Uma User", Role.USER),
    # The Node backend's seeder (src/database/seeders/user.seeder.js): same emails, roles, names.
    DemoAccount("ziad.gamal.tech@gmail.com", "Ziad Gamal", Role.ADMIN, password=ORIGINAL_PASSWORD),
    DemoAccount("user@example.com", "User", Role.USER, password=ORIGINAL_PASSWORD),
    DemoAccount("sarakhaled@example.com", "Sara Khaled", Role.AGENT, password=ORIGINAL_PASSWORD),
    DemoAccount("ahmedfrag@example.com", "Ahmed Frag", Role.AGENT, password=ORIGINAL_PASSWORD),
)
DEMO_CUSTOMERS = (
    ("shop-customer-1", "Carla Customer"),
    ("shop-customer-2", "Dan Customer"),
    # An ObjectId, as the original shop's customer ids are: the original widget knows its own
    # messages by comparing senderId with it, which holds only for such ids (README, "What still
    # differs, and why").
    ("64f1c2a3b4c5d6e7f8a9b0c1", "Omar Shopper"),
)


@dataclass(frozen=True, slots=True)
class SeedReport:
    created: int
    existing: int


class Hashing(Protocol):
    """What seeding needs of `Passwords`."""

    async def hash(self, password: str) -> str: ...


async def seed_demo_data(store: EdgeStore, passwords: Hashing, system: System) -> SeedReport:
    """Create what is missing. A running system is told of each new agent: its assignment actor
    read the agents when it started, before these existed."""
    created = existing = 0
    hashes: dict[str, str] = {}
    for account in DEMO_STAFF:
        if await store.get_user_by_email(account.email) is not None:
            existing += 1
            continue
        if account.password not in hashes:
            hashes[account.password] = await passwords.hash(account.password)
        now = utcnow()
        user = await store.create_user(
            User(
                id=new_id(),
                email=account.email,
                name=account.name,
                role=account.role,
                password_hash=hashes[account.password],
                status=AgentStatus.AWAY,
                max_load=account.max_load,
                email_verified_at=now,
                created_at=now,
                updated_at=now,
            )
        )
        if user.role is Role.AGENT:
            await system.add_agent(user.id, user.max_load)
        created += 1
    for external_id, name in DEMO_CUSTOMERS:
        if await store.get_customer_by_external_id(external_id) is not None:
            existing += 1
            continue
        now = utcnow()
        await store.create_user(
            User(
                id=customer_id(external_id),
                email=f"{external_id}@customers.switchboard.invalid",
                name=name,
                role=Role.CUSTOMER,
                external_id=external_id,
                created_at=now,
                updated_at=now,
            )
        )
        created += 1
    return SeedReport(created=created, existing=existing)


def demo_logins() -> str:
    lines = [
        (
            f"  {a.role.value:<6} {a.email:<28} password: {a.password:<16}"
            + (
                "  the Node backend's, for its front ends"
                if a.password == ORIGINAL_PASSWORD
                else ""
            )
        ).rstrip()
        for a in DEMO_STAFF
    ]
    lines += [
        f"  customer shop id {external_id!r}: mint a token with POST /dev/customer-token"
        + (
            "  an ObjectId, for the original widget"
            if customer_id(external_id) == external_id
            else ""
        )
        for external_id, _ in DEMO_CUSTOMERS
    ]
    return "\n".join(lines)


async def create_admin(
    store: EdgeStore, passwords: Passwords, email: str, name: str, password: str
) -> User:
    """An admin with the operator's own email and password: how a production store gets its
    first admin (production never creates the demo ones). The email, name and password follow
    the rules of registration; an email that has an account is refused (ValueError)."""
    try:
        checked = RegisterBody(
            name=name, email=email, password=password, confirmed_password=password
        )
    except ValidationError as error:
        problem = error.errors(include_url=False)[0]
        raise ValueError(f"{problem['loc'][0]}: {problem['msg']}") from None
    now = utcnow()
    admin = User(
        id=new_id(),
        email=checked.email,
        name=checked.name,
        role=Role.ADMIN,
        password_hash=await passwords.hash(checked.password),
        created_at=now,
        updated_at=now,
    )
    try:
        return await store.create_user(admin)
    except DuplicateEmail:
        raise ValueError(f"{checked.email} already has an account") from None
