"""Review of issue 14's page and review fixes: failing tests for what the review found (Chromium against real
Gunicorn and the fake upstream, as tests/test_conversations_page.py)."""

from __future__ import annotations

import time
from typing import Any

import pytest
from playwright.sync_api import Page, Route, expect

from history_store import HistoryStore
from tests.test_conversations_page import entry, open_id, server  # noqa: F401  (the fixture)


def hold_history(page: Page, conversation_id: str, *, polling: bool) -> list[Route]:
    """Hold the page's /api/history requests for `conversation_id` (polls: those with `after=`) until released."""
    held: list[Route] = []

    def handle(route: Route) -> None:
        url = route.request.url
        if f"conversation_id={conversation_id}" in url and (("after=" in url) == polling):
            held.append(route)
        else:
            route.continue_()

    page.route("**/api/history?*", handle)
    return held


def wait_for(page: Page, condition: Any, seconds: float = 15) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        page.wait_for_timeout(50)


def settle(page: Page) -> None:
    """Let a late answer's consequences (a fallback to main: a replaceState and a load) happen, if they will."""
    page.wait_for_timeout(1500)
    page.wait_for_load_state("networkidle")


@pytest.mark.browser
def test_a_late_not_found_for_a_conversation_left_does_not_take_the_user_off_the_one_chosen(server, open_page):  # noqa: F811
    """Click a conversation deleted in another tab, then at once another one: the first one's 404 arriving last
    must not replace the chosen conversation with main (address, heading and thread all switch to main today)."""
    gone = server.create("另一个标签页删掉的")
    chosen = server.create("用户选的")
    server.chat("选中对话里的话", chosen)
    page = open_page(server.base_url, "?poll=3600000")  # no polling: only the clicks load anything
    expect(entry(page, gone)).to_have_count(1)
    server.call("DELETE", f"/api/conversations/{gone}")  # another tab; this page's list still shows it
    held = hold_history(page, gone, polling=False)
    entry(page, gone).locator("a").click()
    wait_for(page, lambda: held)
    entry(page, chosen).locator("a").click()
    expect(page.locator("#message-list")).to_contain_text("选中对话里的话")
    assert open_id(page) == chosen
    with page.expect_response(lambda r: f"conversation_id={gone}" in r.url):
        held.pop().continue_()
    settle(page)
    assert open_id(page) == chosen
    expect(page.locator("#conversation-heading")).to_have_text("用户选的")
    expect(page.locator("#message-list")).to_contain_text("选中对话里的话")
    expect(page.locator("#conversation-notice")).to_be_hidden()


@pytest.mark.browser
def test_a_poll_of_a_conversation_left_answering_not_found_does_not_open_main(server, open_page):  # noqa: F811
    """A poll of conversation A is in flight; A is deleted in another tab and the user opens B. The poll's 404 is
    about A, not B: B must stay open (pollAll falls back to main whenever the open one is not main)."""
    left = server.create("正在轮询的")
    chosen = server.create("用户选的")
    server.chat("选中对话里的话", chosen)
    page = open_page(server.base_url, f"?poll=3600000&c={left}")
    expect(page.locator("#conversation-heading")).to_have_text("正在轮询的")
    held = hold_history(page, left, polling=True)
    page.evaluate("window.dispatchEvent(new Event('focus'))")  # a poll now
    wait_for(page, lambda: held)
    server.call("DELETE", f"/api/conversations/{left}")
    entry(page, chosen).locator("a").click()
    expect(page.locator("#message-list")).to_contain_text("选中对话里的话")
    with page.expect_response(lambda r: f"conversation_id={left}" in r.url):
        held.pop().continue_()
    settle(page)
    assert open_id(page) == chosen
    expect(page.locator("#conversation-heading")).to_have_text("用户选的")
    expect(page.locator("#conversation-notice")).to_be_hidden()


@pytest.mark.browser
def test_the_first_load_finishing_after_the_user_chose_another_conversation_does_not_allow_sending_early(
    server,  # noqa: F811
    open_page,
):
    """The user opens B while the page's first load (main) is still on its way. When main's load lands, start()
    sets chatReady although B's messages are not on screen yet, so Enter sends a turn that B's load then wipes
    from the thread (the comment on chatReady: "no sending until the history is on screen")."""
    chosen = server.create("用户选的")
    server.chat("选中对话里的话", chosen)
    page = open_page(server.base_url, "?poll=3600000")
    held: dict[str, list[Route]] = {"main": [], chosen: []}

    def handle(route: Route) -> None:
        url = route.request.url
        named = next((cid for cid in held if f"conversation_id={cid}" in url), None)
        if named is not None and "after=" not in url:
            held[named].append(route)
        else:
            route.continue_()

    page.route("**/api/history?*", handle)
    streams: list[str] = []
    page.on("request", lambda r: streams.append(r.url) if r.url.endswith("/api/chat/stream") else None)
    page.reload(wait_until="domcontentloaded")  # the first load of main is held
    wait_for(page, lambda: held["main"])
    entry(page, chosen).locator("a").click()
    wait_for(page, lambda: held[chosen])
    held["main"].pop().continue_()  # main's load lands: start() goes on, though B is the one open now
    page.wait_for_selector("html[data-ready]", state="attached", timeout=15_000)
    page.fill("#input", "还没看到历史就发了")
    page.press("#input", "Enter")
    page.wait_for_timeout(1500)  # a sent turn's request would start at once; B's load is still held
    assert streams == [], "a turn was sent before the open conversation's messages were on screen"
    held[chosen].pop().continue_()
    expect(page.locator("#message-list")).to_contain_text("选中对话里的话")


# ---- the review fixes on the server side ---------------------------------------------------------


def test_polling_from_far_behind_reads_only_the_archives_a_page_needs(tmp_path, monkeypatch):
    """newer(after, limit) from an old id (the page does this after a search jump: newerPages() from the found
    message up to the newest) must not parse every archive above `after` for each page: that makes catching up
    quadratic in the conversation's length. Before the review fix it stopped once the page was full."""
    store = HistoryStore(tmp_path / "c.jsonl", live_limit=4)
    for number in range(120):
        store.append("user", f"m{number}")
    archives = sorted(p.name for p in store.archive_dir.glob("*.json"))
    assert len(archives) > 20
    read: list[str] = []
    original = store._read_archive
    monkeypatch.setattr(store, "_read_archive", lambda name: read.append(name) or original(name))
    messages, more = store.newer(0, 3)
    assert [m["content"] for m in messages] == ["m0", "m1", "m2"] and more
    assert len(read) <= 2, f"one page of 3 messages parsed {len(read)} of {len(archives)} archive files"


@pytest.mark.browser
def test_a_list_answered_before_a_delete_but_arriving_after_it_does_not_bring_the_entry_back(server, open_page):  # noqa: F811
    """A poll's GET /api/conversations is answered, then the user deletes a conversation, then that answer
    arrives: Sidebar.refresh() takes it as the list, so the deleted entry comes back (until the next poll; a click
    on it then opens main with "that conversation no longer exists")."""
    doomed = server.create("要删除的")
    page = open_page(server.base_url, "?poll=3600000")
    expect(entry(page, doomed)).to_have_count(1)
    held: list[tuple[Route, Any]] = []

    def handle(route: Route) -> None:
        if route.request.method == "GET":
            held.append((route, route.fetch()))  # the server answers now, before the delete
        else:
            route.continue_()

    page.route("**/api/conversations", handle)
    page.evaluate("window.dispatchEvent(new Event('focus'))")  # a poll: it refreshes the list
    wait_for(page, lambda: held)
    page.on("dialog", lambda dialog: dialog.accept())
    entry(page, doomed).hover()
    entry(page, doomed).locator(".conversation-more").click()
    page.get_by_role("menu").get_by_role("menuitem", name="删除").click()
    expect(entry(page, doomed)).to_have_count(0)
    route, response = held.pop()
    route.fulfill(response=response)
    page.wait_for_timeout(1500)
    expect(entry(page, doomed)).to_have_count(0)


@pytest.mark.browser
def test_importing_an_old_conversation_with_reminder_messages_shows_no_unread_dot(server, open_page):  # noqa: F811
    """A backup of a conversation whose reminders were read long ago is imported (our own export, after deleting
    it): the import sets reminder_at from the old reminder messages, and the page takes that as a new reminder."""
    old = server.create("吃药提醒")
    reminder = server.reminder("吃药", old)
    server.call("POST", f"/api/reminders/{reminder['id']}/run", json={})
    server.call("DELETE", f"/api/reminders/{reminder['id']}")
    page = open_page(server.base_url, "?poll=500")
    entry(page, old).locator("a").click()
    expect(page.locator("article.message.scheduled")).to_contain_text("吃药")  # read here
    entry(page, "main").locator("a").click()
    expect(entry(page, old).locator(".unread-dot")).to_be_hidden()
    backup = server.session.get(server.base_url + "/api/export", timeout=30).json()
    server.call("DELETE", f"/api/conversations/{old}")
    expect(entry(page, old)).to_have_count(0)
    imported = server.call("POST", "/api/import", json=backup)["conversations"]
    assert len(imported) == 1
    again = imported[0]["id"]
    expect(entry(page, again)).to_have_count(1, timeout=15_000)
    page.wait_for_timeout(1200)  # two more polls
    expect(entry(page, again).locator(".unread-dot")).to_be_hidden()
