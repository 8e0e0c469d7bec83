"""The API docs page (/docs, Swagger UI) in the browser: it works under its Content-Security-Policy
(no violation while it loads, lists the operations, and tries one with a token), and the token
typed into "Authorize" is not kept in the browser's storage, so it is gone with the tab."""

from __future__ import annotations

import json

from playwright.sync_api import ConsoleMessage, expect

from tests.browser.conftest import Pages, Server

WATCH_VIOLATIONS = """() => {
  window.violations = [];
  document.addEventListener("securitypolicyviolation",
    (event) => window.violations.push(`${event.effectiveDirective} ${event.blockedURI}`));
}"""

STORAGE = "() => JSON.stringify({local: {...localStorage}, session: {...sessionStorage}})"


def test_the_docs_page_works_under_its_policy_and_keeps_no_token(
    server: Server, pages: Pages
) -> None:
    page = pages.open("docs", f"{server.url}/docs")
    refused: list[str] = []

    def on_console(message: ConsoleMessage) -> None:
        if "Content Security Policy" in message.text:
            refused.append(message.text)

    page.on("console", on_console)
    page.add_init_script(f"({WATCH_VIOLATIONS})()")
    page.reload()  # watched from its first script on
    expect(page.locator(".opblock").first).to_be_visible()
    assert page.locator(".opblock").count() > 50

    login = page.request.post(
        f"{server.url}/admin/auth/login",
        data={"email": "admin@switchboard.example", "password": "switchboard-demo"},
    )
    token = login.json()["token"]
    page.get_by_role("button", name="Authorize").first.click()
    page.locator(".modal-ux input").fill(token)
    page.locator(".modal-ux button.authorize").click()
    page.locator(".modal-ux button.btn-done").click()
    # The token works from the page: an admin-only operation, tried out.
    operation = page.locator("[id$=get_dashboard_admin_statistics]")
    operation.locator(".opblock-summary").click()
    operation.get_by_role("button", name="Try it out").click()
    operation.get_by_role("button", name="Execute").click()
    expect(
        operation.locator(".live-responses-table tbody .response-col_status").first
    ).to_have_text("200")

    stored = page.evaluate(STORAGE)
    assert token not in stored, json.loads(stored)
    page.reload()
    expect(page.locator(".opblock").first).to_be_visible()
    assert token not in page.evaluate(STORAGE)
    # After a reload the page holds no token: the lock is open again.
    expect(page.locator(".auth-wrapper .authorize.unlocked")).to_be_visible()

    assert page.evaluate("window.violations") == []
    assert refused == []
    assert pages.errors == []
    assert pages.escaped == []
