"""The console: the web pages the server ships, and `/`, which links what is enabled.

- `/console`: the admin floor view; `/console/agent`: the agent's desk; `/console/customer`: a
  demo shop customer (development mode only). Plain HTML, CSS and JavaScript modules from
  `api/console/`, served as they are: no build step, nothing from another server.
- `SWITCHBOARD_CONSOLE=false` turns the pages off (404), and `/` then does not link them.
- Every page and asset carries a strict Content-Security-Policy: scripts, styles, images and
  connections from this server only, no inline script or style, no forms posted anywhere, no
  framing, and Trusted Types, so markup can never be built from strings.
"""

from __future__ import annotations

from html import escape
from pathlib import Path

from quart import Blueprint, Response, current_app, send_from_directory
from quart_schema import hide

from api._errors import ApiError
from api._seed import DEMO_CUSTOMERS, DEMO_STAFF
from api._services import services

console = Blueprint("console", __name__)

CONSOLE_DIR = Path(__file__).parent / "console"
PAGES = {"admin": "admin.html", "agent": "agent.html", "customer": "customer.html"}
ASSETS = frozenset(
    {
        "console.css",
        "icon.svg",
        "common.js",
        "conversation.js",
        "admin.js",
        "agent.js",
        "customer.js",
    }
)

CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self'",
        "connect-src 'self'",
        "form-action 'none'",
        "base-uri 'none'",
        "frame-ancestors 'none'",
        "require-trusted-types-for 'script'",
        "trusted-types 'none'",
    )
)
HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Cache-Control": "no-cache",
}


def _secured(response: Response) -> Response:
    response.headers.update(HEADERS)
    return response


def _enabled(page: str) -> bool:
    settings = services().settings
    if not settings.console:
        return False
    return page != "customer" or not settings.production


def _not_found(what: str) -> ApiError:
    return ApiError(404, "not_found", f"{what} is not enabled on this server")


async def _page(page: str) -> Response:
    if not _enabled(page):
        raise _not_found(f"the {page} console")
    return _secured(await send_from_directory(CONSOLE_DIR, PAGES[page]))


@console.get("/console")
@hide
async def admin_page() -> Response:
    return await _page("admin")


@console.get("/console/agent")
@hide
async def agent_page() -> Response:
    return await _page("agent")


@console.get("/console/customer")
@hide
async def customer_page() -> Response:
    return await _page("customer")


@console.get("/console/assets/<name>")
@hide
async def asset(name: str) -> Response:
    if not services().settings.console:
        raise _not_found("the console")
    if name not in ASSETS:
        raise ApiError(404, "not_found", f"no console asset {name}")
    return _secured(await send_from_directory(CONSOLE_DIR, name))


@console.get("/")
@hide
async def index() -> Response:
    return _secured(Response(index_html(), content_type="text/html; charset=utf-8"))


def index_html() -> str:
    """The links to what this server has enabled; in development, the demo logins too."""
    settings = services().settings
    links: list[tuple[str, str, str]] = []
    if _enabled("admin"):
        links.append(("/console", "Admin console", "the floor: agents, load, the queue"))
        links.append(("/console/agent", "Agent desk", "take chats, reply, resolve"))
    if _enabled("customer"):
        links.append(("/console/customer", "Demo customer", "open a chat as a shop customer"))
    if _has_endpoint("docs.docs_page"):
        links.append(("/docs", "API docs", "every REST operation, tried from the page"))
    items = "\n".join(
        f'    <li><a href="{href}">{escape(label)}</a> <span>{escape(about)}</span></li>'
        for href, label, about in links
    )
    logins = "" if settings.production else _demo_logins()
    return f"""<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>Switchboard</title>
  <link rel="icon" href="/console/assets/icon.svg" type="image/svg+xml">
  <link rel="stylesheet" href="/console/assets/console.css">
</head>
<body class="index">
<main>
  <h1>Switchboard</h1>
  <p>A customer-support chat router.</p>
  <ul class="links">
{items}
  </ul>
{logins}</main>
</body>
</html>
"""


def _has_endpoint(endpoint: str) -> bool:
    return any(rule.endpoint == endpoint for rule in current_app.url_map.iter_rules())


def _demo_logins() -> str:
    rows = "\n".join(
        f"      <tr><td>{escape(account.role.value)}</td><td>{escape(account.email)}</td>"
        f"<td>{escape(account.password)}</td></tr>"
        for account in DEMO_STAFF
    )
    customers = ", ".join(escape(external_id) for external_id, _ in DEMO_CUSTOMERS)
    return f"""  <h2>Demo logins (development mode)</h2>
  <table>
    <thead>
      <tr><th scope="col">role</th><th scope="col">email</th><th scope="col">password</th></tr>
    </thead>
    <tbody>
{rows}
    </tbody>
  </table>
  <p>Demo shop customers: {customers} (the demo customer page signs you in as one).</p>
"""
