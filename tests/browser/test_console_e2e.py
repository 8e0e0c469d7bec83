"""The console end to end in a real browser: an admin, two agents and a customer on their pages
at once against a live server. Messages go both ways; the admin sees load change, reassigns the
chat (a refusal shows its reason; only eligible agents are offered) and both agents' pages
follow; an agent's network drops and comes back, and their page shows the messages it missed, in
order, once, and delivers what they wrote meanwhile."""

from __future__ import annotations

import os
import re
import shutil

import httpx
from playwright.sync_api import APIResponse, Locator, Page, Route, expect

from api import DEMO_PASSWORD
from tests.browser.conftest import ARTIFACTS, ROOT, Pages, Server
from tests.browser.proxy import Proxy

ADMIN = "admin@switchboard.example"
SCREENSHOT = ROOT / "docs" / "console.png"


def sign_in(page: Page, email: str) -> None:
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(DEMO_PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("#connection")).to_have_text("Live")


def send(page: Page, text: str) -> None:
    page.get_by_role("textbox", name="Message").fill(text)
    page.get_by_role("button", name="Send").click()


def shown(page: Page) -> list[str]:
    """The stored messages the page shows, top to bottom (not those still being sent)."""
    return page.locator(".message:not(.pending) .body").all_inner_texts()


def card(admin: Page, name: str) -> Locator:
    return admin.locator(".agent-card").filter(has=admin.get_by_role("heading", name=name))


def test_admin_agents_and_customer_live(server: Server, proxy: Proxy, pages: Pages) -> None:
    admin = pages.open("admin", f"{server.url}/console")
    sign_in(admin, ADMIN)
    ann = pages.open("ann", f"{server.url}/console/agent")
    sign_in(ann, "ann@switchboard.example")
    # Bob's page reaches the server through a proxy the test can cut.
    bob = pages.open("bob", f"{proxy.url}/console/agent")
    sign_in(bob, "bob@switchboard.example")
    ann_card, bob_card = card(admin, "Ann Agent"), card(admin, "Bob Agent")
    expect(ann_card.locator(".presence")).to_have_text("1 connection")

    ann.get_by_text("Available", exact=True).click()
    expect(ann_card.locator(".badge")).to_have_text("available")

    customer = pages.open("customer", f"{server.url}/console/customer")
    customer.get_by_label("What is it about?").fill("Broken kettle")
    customer.get_by_role("button", name="Start chat").click()
    expect(customer.locator("#chat-state")).to_have_text("You are chatting with Ann Agent.")

    # Messages both ways, with seen receipts.
    send(customer, "Hello, my kettle is broken")
    expect(ann.locator(".message.theirs .body")).to_have_text(["Hello, my kettle is broken"])
    send(ann, "Sorry to hear that. Which model?")
    expect(customer.locator(".message.theirs .body")).to_have_text(
        ["Sorry to hear that. Which model?"]
    )
    expect(customer.locator(".message.mine .receipt")).to_have_text(["Seen"])
    expect(ann.locator(".message.mine .receipt")).to_have_text(["Seen"])

    # The admin sees the load go up, and the chat on Ann's card.
    expect(ann_card.locator(".load-label")).to_have_text("Load 1 / 3")
    expect(ann_card.locator(".agent-chats li")).to_have_text(re.compile("Broken kettle"))
    expect(admin.locator('[data-counter="openChats"] dd')).to_have_text("1")

    # Only eligible agents are offered: Bob is away, Cy is offline, Ann has the chat.
    ann_card.get_by_role("button", name="Reassign").click()
    dialog = admin.locator("#reassign-dialog")
    expect(dialog.locator("#reassign-none")).to_be_visible()
    dialog.get_by_role("button", name="Cancel").click()

    bob.get_by_text("Available", exact=True).click()
    expect(bob_card.locator(".badge")).to_have_text("available")
    ann_card.get_by_role("button", name="Reassign").click()
    expect(dialog.get_by_role("combobox").locator("option")).to_have_text(["Bob Agent (0/4)"])
    # Bob goes away before the admin confirms: the refusal and its reason show in the dialog.
    token = httpx.post(
        f"{server.url}/admin/auth/login", json={"email": ADMIN, "password": DEMO_PASSWORD}
    ).json()["token"]
    bob_id = bob_card.get_attribute("data-agent-id")
    httpx.put(
        f"{server.url}/admin/agents/{bob_id}/status",
        json={"status": "away"},
        headers={"Authorization": f"Bearer {token}"},
    ).raise_for_status()
    expect(bob.locator("#status-text")).to_contain_text("You are away")
    dialog.get_by_role("button", name="Reassign").click()
    expect(dialog.locator("#reassign-error")).to_have_text("Refused: agent Bob Agent is away")
    dialog.get_by_role("button", name="Cancel").click()

    bob.get_by_text("Available", exact=True).click()
    expect(bob_card.locator(".badge")).to_have_text("available")
    ann_card.get_by_role("button", name="Reassign").click()
    dialog.get_by_role("button", name="Reassign").click()
    expect(dialog).to_be_hidden()

    # Both agents' pages follow: the chat leaves Ann's, arrives on Bob's with its history.
    expect(ann.locator("#notices")).to_contain_text('"Broken kettle" was reassigned')
    expect(ann.locator("#chat-list li")).to_have_count(0)
    expect(bob.locator("#chat-list li")).to_have_count(1)
    expect(bob.locator("#chat-title")).to_have_text("Broken kettle")
    expect(bob.locator(".message .body")).to_have_text(
        ["Hello, my kettle is broken", "Sorry to hear that. Which model?"]
    )
    expect(bob_card.locator(".load-label")).to_have_text("Load 1 / 4")
    expect(ann_card.locator(".load-label")).to_have_text("Load 0 / 3")
    expect(customer.locator("#chat-state")).to_have_text("You are chatting with Bob Agent.")
    _keep_screenshot(admin)

    # Bob's network drops: his page says so, the customer writes meanwhile, and so does Bob.
    proxy.drop()
    expect(bob.locator("#connection")).to_have_text(re.compile("^Reconnecting"))
    missed = ["It is the K-200", "Bought in May", "Still under warranty?"]
    for text in missed:
        send(customer, text)
    expect(customer.locator(".message.pending")).to_have_count(0)  # all acknowledged
    send(bob, "Looking it up now")
    expect(bob.locator(".message.pending .receipt")).to_have_text(["Sending…"])

    proxy.restore()
    expect(bob.locator("#connection")).to_have_text("Live")
    everything = [
        "Hello, my kettle is broken",
        "Sorry to hear that. Which model?",
        *missed,
        "Looking it up now",
    ]
    expect(bob.locator(".message:not(.pending) .body")).to_have_text(everything)
    expect(customer.locator(".message .body")).to_have_text(everything)
    seqs = [int(seq) for seq in bob.locator(".message").evaluate_all(
        "nodes => nodes.map((node) => node.dataset.seq)"
    )]  # fmt: skip
    assert seqs == list(range(1, len(everything) + 1)), "in order, each once"
    assert shown(bob) == everything

    # The admin's other actions: a chat's history, an agent's max load, forcing an agent away.
    bob_card.locator(".agent-chats").get_by_role("button", name="History").click()
    history = admin.locator("#history")
    expect(history).to_contain_text("Ann Agent → Bob Agent")
    expect(history).to_contain_text("least loaded")
    admin.get_by_role("button", name="Close", exact=True).last.click()
    ann_card.get_by_label("Max load").fill("5")
    ann_card.get_by_role("button", name="Set").click()
    expect(ann_card.locator(".load-label")).to_have_text("Load 0 / 5")
    ann_card.get_by_role("button", name="Force away").click()
    expect(ann.locator("#status-text")).to_contain_text("You are away")
    expect(ann_card.locator(".badge")).to_have_text("away")

    # The admin closes the chat: the customer is told, Bob's desk lets it go.
    close = bob_card.locator(".agent-chats").get_by_role("button", name="Close")
    close.click()
    admin.get_by_role("button", name="Confirm close").click()
    expect(customer.locator("#chat-state")).to_have_text("This chat is closed. Thank you!")
    expect(bob.locator("#chat-list li")).to_have_count(0)
    expect(bob_card.locator(".load-label")).to_have_text("Load 0 / 4")
    assert pages.errors == []


def _keep_screenshot(admin: Page) -> None:
    """The README's picture of the console: taken on every run, kept in the repository when
    missing or when SWITCHBOARD_UPDATE_SCREENSHOTS=1."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    taken = ARTIFACTS / "console.png"
    admin.screenshot(path=taken, full_page=True)
    if os.environ.get("SWITCHBOARD_UPDATE_SCREENSHOTS") == "1" or not SCREENSHOT.exists():
        SCREENSHOT.parent.mkdir(exist_ok=True)
        shutil.copyfile(taken, SCREENSHOT)


def test_a_chat_assigned_while_the_desk_reloads_is_not_taken_away_by_the_older_list(
    server: Server, pages: Pages
) -> None:
    """The desk asks for its open chats when it connects; a chat pushed to it while that answer
    is on its way is newer than the answer, which must not drop it."""
    customer = pages.open("customer", f"{server.url}/console/customer", phone=True)
    customer.get_by_role("button", name="Start chat").click()
    expect(customer.locator("#chat-state")).to_contain_text("number 1 in the queue")

    agent = pages.open("agent", f"{server.url}/console/agent", phone=True)
    held: list[tuple[Route, APIResponse]] = []

    def hold(route: Route) -> None:
        # The server answers now (no chat yet); the page gets that answer only when released.
        held.append((route, route.fetch()))

    agent.route(re.compile(r"/chats/agent\?status=open"), hold)
    sign_in(agent, "cy@switchboard.example")
    for _ in range(1_000):  # each call to the page lets Playwright run the handler due
        if held:
            break
        agent.evaluate("0")
    assert len(held) == 1  # the list was answered before the chat was assigned
    agent.get_by_text("Available", exact=True).click()
    expect(customer.locator("#chat-state")).to_have_text(re.compile("chatting with Cy Agent"))
    expect(agent.locator("#notices")).to_contain_text("New chat")

    route, older = held[0]
    route.fulfill(response=older)
    send(customer, "is my parcel on its way?")
    expect(agent.locator(".message.theirs .body")).to_have_text(["is my parcel on its way?"])
    expect(agent.locator("#notices")).not_to_contain_text("no longer yours")
