"""The console's pages load nothing from outside the server, and their Content-Security-Policy
holds in the browser: no inline or foreign script, no markup from strings (Trusted Types), no
foreign image or connection, and a chat message written as HTML is shown as text, running
nothing and loading nothing."""

from __future__ import annotations

import re
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Page, expect

from api import DEMO_STAFF
from store import Role
from tests.browser.conftest import Pages, Server, serving
from tests.browser.test_console_e2e import sign_in

SEEDED_AGENTS = sum(account.role is Role.AGENT for account in DEMO_STAFF)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One server for this module: its tests change nothing another one looks at."""
    with serving(tmp_path_factory.mktemp("console-security")) as running:
        yield running


# TEST-NET-3 (RFC 5737): never routed, so nothing here could reach a real host.
OUTSIDE = "http://203.0.113.7"

WATCH_VIOLATIONS = """() => {
  window.violations = [];
  document.addEventListener("securitypolicyviolation",
    (event) => window.violations.push(event.effectiveDirective));
}"""

ATTACKS = f"""async () => {{
  const outcome = {{}};
  try {{ document.body.innerHTML = "<b>markup</b>"; outcome.innerHTML = "ran"; }}
  catch (error) {{ outcome.innerHTML = error.name; }}
  const inline = document.createElement("script");
  try {{ inline.text = "window.pwned = 'inline'"; document.head.append(inline); }}
  catch (error) {{ outcome.inline = error.name; }}
  const foreign = document.createElement("img");
  foreign.src = "{OUTSIDE}/pixel.png";
  document.body.append(foreign);
  const loaded = await new Promise((done) => {{
    foreign.onload = () => done("loaded");
    foreign.onerror = () => done("blocked");
  }});
  outcome.image = loaded;
  try {{ await fetch("{OUTSIDE}/data.json"); outcome.fetch = "ran"; }}
  catch (error) {{ outcome.fetch = error.name; }}
  outcome.pwned = window.pwned ?? null;
  return outcome;
}}"""


def _local_only(pages: Pages, server: Server) -> None:
    origin = urlsplit(server.url).netloc
    foreign = [url for url in pages.requests if urlsplit(url).netloc != origin]
    assert foreign == [], "every request the pages made went to the server itself"
    assert pages.requests, "the test watched the page's requests"


def _none_escaped(pages: Pages) -> None:
    assert pages.escaped == [], "the CSP stopped every request for another host"


def test_the_pages_load_nothing_from_outside_the_server(server: Server, pages: Pages) -> None:
    index = pages.open("index", f"{server.url}/")
    links = index.get_by_role("link").evaluate_all("links => links.map((a) => a.href)")
    assert {urlsplit(link).path for link in links} == {
        "/console",
        "/console/agent",
        "/console/customer",
        "/docs",
    }
    admin = pages.open("admin", f"{server.url}/console")
    sign_in(admin, "admin@switchboard.example")
    expect(admin.locator(".agent-card")).to_have_count(SEEDED_AGENTS)
    customer = pages.open("customer", f"{server.url}/console/customer", phone=True)
    customer.get_by_role("button", name="Start chat").click()
    expect(customer.locator("#chat-state")).to_contain_text("number 1 in the queue")
    agent = pages.open("agent", f"{server.url}/console/agent", phone=True)
    sign_in(agent, "cy@switchboard.example")
    agent.get_by_text("Available", exact=True).click()
    expect(customer.locator("#chat-state")).to_have_text(re.compile("chatting with Cy Agent"))

    # A message written as HTML is shown as text: it runs nothing and loads nothing.
    attack = f'<img src="{OUTSIDE}/x.png" onerror="window.pwned=1"><script>window.pwned=2</script>'
    customer.get_by_role("textbox", name="Message").fill(attack)
    customer.get_by_role("button", name="Send").click()
    expect(agent.locator(".message.theirs .body")).to_have_text([attack])
    assert agent.locator(".message img, .message script").count() == 0
    assert agent.evaluate("() => window.pwned ?? null") is None

    _local_only(pages, server)
    assert any(url.startswith("ws://") for url in pages.requests), "the /ws socket was seen"
    _none_escaped(pages)
    assert pages.errors == []


def _attacked(page: Page) -> dict[str, str | None]:
    page.evaluate(WATCH_VIOLATIONS)
    outcome: dict[str, str | None] = page.evaluate(ATTACKS)
    return outcome


def test_the_content_security_policy_holds(server: Server, pages: Pages) -> None:
    for name, path in (
        ("index", "/"),
        ("admin", "/console"),
        ("agent", "/console/agent"),
        ("customer", "/console/customer"),
    ):
        page = pages.open(name, f"{server.url}{path}")
        outcome = _attacked(page)
        assert outcome == {
            "innerHTML": "TypeError",  # Trusted Types: no markup from a string
            "inline": "TypeError",  # a script's text is a Trusted Types sink too
            "image": "blocked",
            "fetch": "TypeError",
            "pwned": None,
        }, name
        violations = page.evaluate("() => window.violations")
        assert {"img-src", "connect-src", "require-trusted-types-for"} <= set(violations), name
    # (Chromium reports CSP-blocked requests to its tools too, so `requests` lists them.)
    _none_escaped(pages)
