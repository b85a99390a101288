"""Headless Debian Chromium driven by Playwright: one browser per session, a fresh context per page.

The page is always served with the production Content-Security-Policy (added here if the app does
not send it yet), and any script error or CSP violation fails the test that caused it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, Route, expect, sync_playwright

from security import CONTENT_SECURITY_POLICY

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = "/usr/bin/chromium"
# Without the background-networking flags Chromium keeps calling home, which a closed network punishes.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
DESKTOP = {"width": 1280, "height": 800}
# Other suites may run beside these on a 2-core machine; Playwright's 5 s default is too tight there.
expect.set_options(timeout=10_000)
PHONE = {"width": 390, "height": 844}


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    """Debian's Chromium, headless; Playwright never downloads a browser of its own here."""
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def _with_csp(route: Route) -> None:
    """Serve the document with the production CSP, so the page is tested under it."""
    response = route.fetch()
    headers = dict(response.headers)
    headers.setdefault("content-security-policy", CONTENT_SECURITY_POLICY)
    route.fulfill(response=response, headers=headers)


class PageProblems:
    """Uncaught script errors and CSP violations seen on one page.

    With `expect_blocked_handlers`, reports of blocked inline event handlers are expected: Chromium
    reports them even while DOMPurify parses hostile HTML in its inert document, where nothing runs.
    """

    def __init__(self, page: Page, expect_blocked_handlers: bool = False):
        self.expect_blocked_handlers = expect_blocked_handlers
        self.errors: list[str] = []
        page.on("pageerror", lambda error: self.errors.append(f"script error: {error}"))
        page.on("console", self._console)

    def _console(self, message: Any) -> None:
        if message.type != "error" or "Content Security Policy" not in message.text:
            return
        if not (self.expect_blocked_handlers and "inline event handler" in message.text):
            self.errors.append(f"CSP violation: {message.text}")


@pytest.fixture
def open_page(browser: Browser) -> Iterator[Callable[..., Page]]:
    """Open the chat page of a running app in a fresh context and wait until it has loaded.

    `open_page(base_url, query="?poll=300", locale="en-US", viewport=PHONE, color_scheme="dark")`;
    `expect_blocked_handlers=True` for a test that feeds the page hostile HTML on purpose.
    """
    opened: list[tuple[Any, PageProblems]] = []

    def open_(
        base_url: str,
        query: str = "",
        *,
        locale: str = "zh-CN",
        viewport: dict | None = None,
        color_scheme: str = "light",
        expect_blocked_handlers: bool = False,
        **options: Any,
    ) -> Page:
        context = browser.new_context(locale=locale, viewport=viewport or DESKTOP, color_scheme=color_scheme, **options)
        page = context.new_page()
        problems = PageProblems(page, expect_blocked_handlers)
        opened.append((context, problems))
        page.route(f"{base_url}/", _with_csp)
        page.goto(f"{base_url}/{query}")
        wait_ready(page)
        return page

    yield open_
    problems = [error for _, seen in opened for error in seen.errors]
    for context, _ in opened:
        context.close()
    assert not problems, problems


def wait_ready(page: Page) -> None:
    """Wait until the page script finished its first load (history, health)."""
    page.wait_for_selector("html[data-ready]", state="attached", timeout=10_000)


def screenshot(page: Page, name: str) -> Path:
    """Save a full-window screenshot into test-artifacts/ for a human to look at."""
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path))
    return path
