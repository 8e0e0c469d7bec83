"""Browser tests: Debian's chromium driven headless by Playwright (the `playwright` package from
PyPI, pointed at the system browser; nothing is downloaded), against `switchboard serve` run as a
subprocess on a free port and a fresh SQLite store.

One browser per test session, shared; each test opens its own contexts (one per user, so their
storage is apart) and gets a fresh server. When a test fails, every page it opened is saved as a
PNG under `.artifacts/browser/<test>/` (the path is printed).

These tests are plain (sync) functions: Playwright's sync API runs its own event loop, which
cannot share a thread with a running trio loop, and the server runs in its own process anyway.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import Generator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import (
    Browser,
    BrowserContext,
    Page,
    Playwright,
    Route,
    ViewportSize,
    sync_playwright,
)

from tests.browser.proxy import Proxy
from tests.conftest import TEST_CUSTOMER_SECRET, TEST_SECRET

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / ".artifacts" / "browser"
CHROMIUM = Path(os.environ.get("SWITCHBOARD_CHROMIUM", "/usr/bin/chromium"))
# Flags that make chromium work in a container without a display and keep it off the network
# (Playwright adds --headless and a fresh temporary --user-data-dir itself).
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
START_SECONDS = 60
STOP_SECONDS = 15
# How long an expectation waits for the page (Playwright's default is 5 s; the machine is shared).
EXPECT_MS = 15_000
_SERVING = re.compile(r"serving on (http://\S+)")


@pytest.fixture(scope="session")
def playwright() -> Iterator[Playwright]:
    if not CHROMIUM.exists():
        pytest.fail(
            f"{CHROMIUM} is missing: the browser tests need Debian's chromium. `make test` "
            "installs it when it can (as root, with apt-get); else run "
            "`sudo apt-get install chromium`, or set SWITCHBOARD_CHROMIUM to a chromium binary.",
            pytrace=False,
        )
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="session")
def browser(playwright: Playwright) -> Iterator[Browser]:
    from playwright.sync_api import expect

    expect.set_options(timeout=EXPECT_MS)
    launched = playwright.chromium.launch(
        executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS, headless=True
    )
    # The system's browser, not one of Playwright's own builds.
    assert (
        launched.version
        in subprocess.run(
            [str(CHROMIUM), "--version"], capture_output=True, text=True, check=True
        ).stdout
    )
    yield launched
    launched.close()


@dataclass
class Server:
    url: str
    process: subprocess.Popen[bytes]
    log: Path


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    with serving(tmp_path) as running:
        yield running


@contextmanager
def serving(tmp_path: Path) -> Iterator[Server]:
    """`switchboard serve` on a free port, seeded, in development mode; stopped with SIGINT."""
    log = tmp_path / "server.log"
    env = {
        **os.environ,
        "SWITCHBOARD_JWT_SECRET": TEST_SECRET,
        "SWITCHBOARD_CUSTOMER_JWT_SECRET": TEST_CUSTOMER_SECRET,
    }
    command = [
        sys.executable, "-m", "tools.cli", "serve", "--host", "127.0.0.1", "--port", "0",
        "--mode", "development", "--seed-if-empty", "--data-dir", str(tmp_path),
        "--store", f"sqlite:///{tmp_path / 'browser.db'}",
    ]  # fmt: skip
    with log.open("wb") as sink:
        process = subprocess.Popen(
            command, stdout=sink, stderr=subprocess.STDOUT, cwd=ROOT, env=env
        )
        try:
            yield Server(_wait_for_url(process, log), process, log)
        finally:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(STOP_SECONDS)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _wait_for_url(process: subprocess.Popen[bytes], log: Path) -> str:
    import time

    deadline = time.monotonic() + START_SECONDS
    while time.monotonic() < deadline:
        found = _SERVING.search(log.read_text(errors="replace"))
        if found:
            return found.group(1)
        if process.poll() is not None:
            break
        time.sleep(0.05)  # polling a file another process writes; nothing to wait on instead
    raise AssertionError(f"the server did not start:\n{log.read_text(errors='replace')[-3000:]}")


@pytest.fixture
def proxy(server: Server) -> Iterator[Proxy]:
    port = int(server.url.rsplit(":", 1)[1])
    with Proxy(port) as running:
        yield running


@dataclass
class Pages:
    """The pages a test opens, each in a context of its own (a user of their own)."""

    browser: Browser
    contexts: list[BrowserContext] = field(default_factory=list)
    opened: dict[str, Page] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    # Requests for another host that got past the page's CSP (stopped here, never sent).
    escaped: list[str] = field(default_factory=list)

    def open(self, name: str, url: str, *, phone: bool = False) -> Page:
        size: ViewportSize = (
            {"width": 390, "height": 844} if phone else {"width": 1280, "height": 900}
        )
        context = self.browser.new_context(viewport=size, device_scale_factor=1)
        origin = urlsplit(url).netloc
        context.route(lambda target: urlsplit(target).netloc != origin, self._stop)
        self.contexts.append(context)
        page = context.new_page()
        page.on("pageerror", lambda error: self.errors.append(f"{name}: {error}"))
        page.on("request", lambda request: self.requests.append(request.url))
        page.on("websocket", lambda socket: self.requests.append(socket.url))
        self.opened[name] = page
        page.goto(url)
        return page

    def _stop(self, route: Route) -> None:
        self.escaped.append(route.request.url)
        route.abort()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if report.when == "call":
        item.stash[_FAILED] = report.failed
    return report


_FAILED = pytest.StashKey[bool]()


@pytest.fixture
def pages(browser: Browser, request: pytest.FixtureRequest) -> Iterator[Pages]:
    opened = Pages(browser)
    yield opened
    if request.node.stash.get(_FAILED, False):
        folder = ARTIFACTS / re.sub(r"[^\w.-]+", "_", request.node.name)
        folder.mkdir(parents=True, exist_ok=True)
        for name, page in opened.opened.items():
            try:
                page.screenshot(path=folder / f"{name}.png", full_page=True)
            except Exception as error:  # a crashed page must not hide the test's own failure
                print(f"no screenshot of {name}: {error}")
        print(f"\nscreenshots of the failed test's pages: {folder}")
    for context in opened.contexts:
        context.close()
