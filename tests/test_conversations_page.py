"""Several conversations on the page, in Chromium against real Gunicorn and the fake upstream: the sidebar (new,
switch, rename, pin, delete), the address naming the open one, the unread dot, search, import, the drawer at 390 px."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
from playwright.sync_api import Locator, Page, expect

from tests.support.browser import PHONE, screenshot, wait_ready
from tests.support.client import app_env
from tests.support.servers import Gunicorn, GunicornUser

pytestmark = pytest.mark.browser
ID = re.compile(r"^[0-9a-f]{12}$")


class Server(GunicornUser):
    """The app under Gunicorn (2 workers, threads), and a user of its API beside the page."""

    def conversations(self) -> list[dict]:
        return self.call("GET", "/api/conversations")["conversations"]

    def create(self, title: str = "") -> str:
        body = {"title": title} if title else {}
        return self.call("POST", "/api/conversations", 201, json=body)["conversation"]["id"]

    def reminder(self, text: str, conversation_id: str) -> dict:
        """A daily reminder that speaks in `conversation_id` (run it now to get its message)."""
        fields = {"text": text, "cron": "0 9 * * *", "mode": "plain", "conversation_id": conversation_id}
        return self.call("POST", "/api/reminders", 201, json=fields)["reminder"]

    def chat(self, text: str, conversation_id: str = "main") -> None:
        self.call("POST", "/api/chat", json={"message": text, "conversation_id": conversation_id})

    def contents(self, conversation_id: str = "main", **params: Any) -> list[str]:
        query = {"conversation_id": conversation_id, "limit": 500, **params}
        return [m["content"] for m in self.call("GET", "/api/history", params=query)["messages"]]


@pytest.fixture
def server(upstream, tmp_path: Path) -> Iterator[Server]:
    """Gunicorn as in production (two workers with threads), its data in tmp_path."""
    gunicorn = Gunicorn(app_env(upstream, tmp_path / "data", HISTORY_PAGE_SIZE="8"), [], tmp_path / "gunicorn.log")
    gunicorn.args = ["-w", "2", "-k", "gthread", "--threads", "4", "-b", f"127.0.0.1:{gunicorn.port}"]
    with gunicorn:
        app = Server(gunicorn)
        yield app
        app.session.close()


def send(page: Page, text: str) -> None:
    """Type into the composer, press Enter, and wait until the reply (the fake upstream's echo) is stored."""
    count = page.locator("article.message.assistant[data-id]").count()
    page.fill("#input", text)
    page.press("#input", "Enter")
    expect(page.locator("article.message.assistant[data-id]")).to_have_count(count + 1, timeout=15_000)
    expect(page.locator("#send")).to_be_visible()


def entry(page: Page, conversation_id: str) -> Locator:
    return page.locator(f'#conversation-list li.conversation[data-id="{conversation_id}"]')


def open_id(page: Page) -> str:
    """The conversation the address names (main when none)."""
    return parse_qs(urlparse(page.url).query).get("c", ["main"])[0]


def thread_texts(page: Page) -> list[str]:
    return [text.strip() for text in page.locator("#message-list article .bubble").all_inner_texts()]


def menu_item(page: Page, conversation_id: str, name: str) -> Locator:
    """Open the entry's menu and return its item called `name`."""
    entry(page, conversation_id).hover()
    entry(page, conversation_id).locator(".conversation-more").click()
    return page.get_by_role("menu").get_by_role("menuitem", name=name)


# ---- switching, the address, back and forward ----------------------------------------------------


def test_two_conversations_keep_their_own_messages_and_the_address_names_the_open_one(server, open_page):
    page = open_page(server.base_url, "?poll=500")
    streamed: list[dict] = []
    page.on("request", lambda r: streamed.append(r.post_data_json) if r.url.endswith("/api/chat/stream") else None)
    expect(entry(page, "main")).to_have_count(1)
    expect(entry(page, "main").locator("a")).to_have_attribute("aria-current", "page")
    expect(page.locator("#conversation-heading")).to_have_text("主对话")

    page.click("#conversation-new")
    expect(page).to_have_url(re.compile(r"\?poll=500&c=[0-9a-f]{12}$"))
    first = open_id(page)
    send(page, "苹果的问题")
    # polling brings the title the server gave it after the first exchange, and the count
    expect(entry(page, first).locator(".conversation-title")).not_to_have_text("新对话", timeout=15_000)
    expect(entry(page, first).locator(".conversation-count")).to_have_text("2 条消息")
    page.click("#new-chat")  # the header's New does the same as the sidebar's
    expect(page).not_to_have_url(re.compile(first))
    second = open_id(page)
    assert ID.match(second) and second != first
    expect(page.locator("article.message")).to_have_count(0)
    count = len(server.conversations())
    page.click("#conversation-new")  # an empty new one open: New keeps it rather than making another
    send(page, "香蕉的问题")
    assert open_id(page) == second and len(server.conversations()) == count

    assert [body["conversation_id"] for body in streamed] == [first, second]
    assert server.contents(first) == ["苹果的问题", "收到：苹果的问题"]
    assert server.contents(second) == ["香蕉的问题", "收到：香蕉的问题"]
    assert server.contents("main") == []

    entry(page, first).locator("a").click()
    expect(page).to_have_url(re.compile(f"c={first}"))
    expect(page.locator("#message-list")).to_contain_text("苹果的问题")
    assert thread_texts(page) == ["苹果的问题", "收到：苹果的问题"]
    expect(entry(page, first).locator("a")).to_have_attribute("aria-current", "page")

    page.reload()
    wait_ready(page)
    assert open_id(page) == first
    expect(page.locator("#message-list")).to_contain_text("苹果的问题")
    assert thread_texts(page) == ["苹果的问题", "收到：苹果的问题"]

    page.go_back()
    expect(page.locator("#message-list")).to_contain_text("香蕉的问题")
    assert open_id(page) == second and thread_texts(page) == ["香蕉的问题", "收到：香蕉的问题"]
    page.go_back()
    expect(page.locator("#message-list")).to_contain_text("苹果的问题")
    page.go_back()
    expect(page.locator("article.message")).to_have_count(0)
    assert open_id(page) == "main"
    page.go_forward()
    expect(page.locator("#message-list")).to_contain_text("苹果的问题")
    assert open_id(page) == first

    send(page, "苹果的第二个问题")  # a reply to the open one lands there, the list moves it up
    assert server.contents(first)[-2:] == ["苹果的第二个问题", "收到：苹果的第二个问题"]
    assert server.contents(second) == ["香蕉的问题", "收到：香蕉的问题"]
    expect(page.locator("#conversation-list li.conversation").first).to_have_attribute("data-id", first)


@pytest.mark.slow
def test_switching_while_a_reply_streams_lets_it_finish_in_its_own_conversation(server, upstream, open_page):
    slow = server.create("慢的回答")
    quick = server.create("快的")
    # long enough (16 s) that the other conversation is used while this reply still streams
    upstream.script({"pieces": [f"第{i}段。" for i in range(16)], "chunk_delay": 1.0})
    page = open_page(server.base_url, f"?c={slow}&poll=500")
    page.fill("#input", "说得慢一点")
    page.press("#input", "Enter")
    expect(page.locator("#message-list")).to_contain_text("第1段")
    expect(page.locator("#stop")).to_be_visible()

    entry(page, quick).locator("a").click()
    expect(page).to_have_url(re.compile(f"c={quick}"))
    expect(page.locator("article.message")).to_have_count(0)  # nothing of the other one streams in here
    expect(page.locator("#send")).to_be_visible()  # the composer is free for this conversation at once
    send(page, "这里问别的")
    assert "段" not in page.locator("#message-list").inner_text()
    meanwhile = server.call("GET", "/api/history", params={"conversation_id": slow})["messages"]
    assert meanwhile[-1]["streaming"] is True, "the other reply was still streaming meanwhile"

    entry(page, slow).locator("a").click()  # the reply still being written is followed again there, to its end
    expect(page.locator("#message-list")).to_contain_text("第15段。", timeout=40_000)
    expect(page.locator("#send")).to_be_visible(timeout=10_000)  # the terminal event came: the reply is stored
    assert server.contents(slow) == ["说得慢一点", "".join(f"第{i}段。" for i in range(16))]
    assert server.contents(quick) == ["这里问别的", "收到：这里问别的"]


def test_an_address_naming_a_conversation_that_is_gone_opens_main_with_a_notice(server, open_page):
    gone = server.create("要删除的")
    server.chat("在主对话里")
    server.call("DELETE", f"/api/conversations/{gone}")
    page = open_page(server.base_url, f"?c={gone}", locale="en-US")
    expect(page.locator("#conversation-notice")).to_contain_text("no longer exists")
    expect(page.locator("#message-list")).to_contain_text("在主对话里")
    assert open_id(page) == "main"
    page.goto(server.base_url + "/?c=not-an-id")
    wait_ready(page)
    expect(page.locator("#conversation-notice")).to_be_visible()
    expect(page.locator("#message-list")).to_contain_text("在主对话里")


# ---- rename, pin, delete ---------------------------------------------------------------------------


def test_rename_in_place_pin_to_the_top_and_delete_after_confirming(server, open_page):
    older = server.create("较早的对话")
    newer = server.create("")
    page = open_page(server.base_url, f"?c={newer}")
    expect(entry(page, newer).locator(".conversation-title")).to_have_text("新对话")
    order = page.locator("#conversation-list li.conversation")
    expect(order.first).to_have_attribute("data-id", newer)

    menu_item(page, newer, "重命名").click()
    field = entry(page, newer).locator("input.rename-input")
    expect(field).to_be_focused()
    field.fill("周末计划")
    field.press("Enter")
    expect(entry(page, newer).locator(".conversation-title")).to_have_text("周末计划")
    expect(page.locator("#conversation-heading")).to_have_text("周末计划")
    assert {c["id"]: c["title"] for c in server.conversations()}[newer] == "周末计划"
    menu_item(page, newer, "重命名").click()
    entry(page, newer).locator("input.rename-input").fill("不要这个")
    entry(page, newer).locator("input.rename-input").press("Escape")  # cancels
    expect(entry(page, newer).locator(".conversation-title")).to_have_text("周末计划")

    menu_item(page, older, "置顶").click()
    expect(order.first).to_have_attribute("data-id", older)
    expect(entry(page, older).locator(".conversation-pin")).to_be_visible()
    assert server.conversations()[0] == {**server.conversations()[0], "id": older, "pinned": True}
    expect(menu_item(page, older, "取消置顶")).to_be_visible()
    page.keyboard.press("Escape")
    expect(entry(page, older).locator(".conversation-more")).to_be_focused()  # the menu gives focus back

    menu_item(page, "main", "重命名")
    assert page.get_by_role("menu").get_by_role("menuitem", name="删除对话").count() == 0  # main cannot be deleted
    page.keyboard.press("Escape")

    page.once("dialog", lambda dialog: dialog.dismiss())
    menu_item(page, newer, "删除对话").click()
    expect(entry(page, newer)).to_have_count(1)
    page.once("dialog", lambda dialog: dialog.accept())
    menu_item(page, newer, "删除对话").click()
    expect(entry(page, newer)).to_have_count(0)
    expect(page).not_to_have_url(re.compile("c="))  # the open one was deleted: main opens
    expect(entry(page, "main").locator("a")).to_have_attribute("aria-current", "page")
    assert page.locator("#conversation-notice").is_hidden(), "main opens at once, not as for one found gone later"
    assert newer not in {c["id"] for c in server.conversations()}


def test_the_menu_works_from_the_keyboard(server, open_page):
    other = server.create("键盘")
    page = open_page(server.base_url)
    more = entry(page, other).locator(".conversation-more")
    more.focus()
    page.keyboard.press("Enter")
    menu = page.get_by_role("menu")
    expect(menu.get_by_role("menuitem").first).to_be_focused()
    page.keyboard.press("ArrowDown")
    expect(menu.get_by_role("menuitem", name="置顶")).to_be_focused()
    page.keyboard.press("Enter")
    expect(entry(page, other)).to_have_class(re.compile(r"\bpinned\b"))
    expect(menu).to_have_count(0)


# ---- reminders: a dot on the entry of a conversation not open, the form's default ---------------------


def test_a_reminder_in_another_conversation_shows_a_dot_until_that_one_is_opened(server, open_page):
    other = server.create("吃药提醒")
    page = open_page(server.base_url, "?poll=500")
    dot = entry(page, other).locator(".unread-dot")
    expect(dot).to_be_hidden()
    reminder = server.reminder("吃药", other)
    assert reminder["conversation_id"] == other
    server.call("POST", f"/api/reminders/{reminder['id']}/run", json={})
    expect(dot).to_be_visible(timeout=15_000)
    expect(entry(page, other)).to_have_class(re.compile(r"\bunread\b"))
    assert "吃药" not in page.locator("#message-list").inner_text(), "the main conversation does not show it"
    assert server.contents("main") == [] and server.contents(other) == ["吃药"]

    entry(page, other).locator("a").click()
    expect(page.locator("article.message.scheduled")).to_contain_text("吃药")
    expect(dot).to_be_hidden()
    page.reload()
    wait_ready(page)
    expect(entry(page, other).locator(".unread-dot")).to_be_hidden()  # remembered as seen
    entry(page, "main").locator("a").click()
    page.wait_for_timeout(1200)  # two polls: still no dot once another is open
    expect(entry(page, other).locator(".unread-dot")).to_be_hidden()


def test_done_and_snooze_on_a_reminder_message_name_the_conversation_it_is_in(server, open_page):
    other = server.create("药")
    reminder = server.reminder("吃药", other)
    message = server.call("POST", f"/api/reminders/{reminder['id']}/run", json={})["message"]
    server.call("PATCH", f"/api/reminders/{reminder['id']}", json={"conversation_id": "main"})  # speaks in main now
    page = open_page(server.base_url, f"?c={other}")
    article = page.locator(f'article.message.scheduled[data-id="{message["id"]}"]')
    article.get_by_role("button", name="10 分钟后再提醒").click()
    expect(article.locator(".reminder-snoozed")).to_be_visible()
    article.get_by_role("button", name="完成").click()
    expect(article.locator(".reminder-done-state")).to_be_visible()
    done = server.call("GET", "/api/history", params={"conversation_id": other})["messages"]
    assert [m.get("done_at") is not None for m in done] == [True]


def test_the_list_refreshes_when_the_window_regains_focus(server, open_page):
    page = open_page(server.base_url, "?poll=3600000")  # no polling to wait for
    made = server.create("在别的标签页里新建的")
    page.wait_for_timeout(500)
    expect(entry(page, made)).to_have_count(0)
    page.evaluate("window.dispatchEvent(new Event('focus'))")
    expect(entry(page, made)).to_have_count(1)


def test_a_reminder_made_in_the_form_speaks_in_the_open_conversation(server, open_page):
    other = server.create("工作")
    page = open_page(server.base_url, f"?c={other}", timezone_id="Asia/Shanghai")
    page.click("#reminders-open")
    page.click("#reminder-new")
    page.fill("#reminder-text", "交周报")
    page.click("#reminder-save")
    expect(page.locator("#reminder-list")).to_contain_text("交周报")
    made = [r for r in server.call("GET", "/api/reminders")["reminders"] if r["text"] == "交周报"]
    assert [r["conversation_id"] for r in made] == [other]


# ---- search -------------------------------------------------------------------------------------


def test_search_marks_the_words_and_opens_the_conversation_at_the_message(server, open_page):
    other = server.create("健康")
    tall = "\n".join(f"第{line}行" for line in range(12))  # tall messages: the match is far down its page
    for turn in range(4):
        server.chat(f"早先的第{turn}个问题\n{tall}", other)
    server.chat("记得<b>吃药</b>，一天三次", other)
    for turn in range(12):  # the match is far from the newest page (HISTORY_PAGE_SIZE=8)
        server.chat(f"后来的第{turn}个问题", other)
    server.chat("主对话里也说吃药")
    page = open_page(server.base_url)

    page.fill("#conversation-search", "吃药")
    results = page.locator("#search-results .search-result")
    expect(results.first).to_be_visible()
    expect(page.locator("#conversation-list")).to_be_hidden()
    found = results.filter(has_text="一天三次").first
    expect(found.locator(".search-title")).to_have_text("健康")
    expect(found.locator("mark")).to_have_text(["吃药"])
    assert found.locator("b").count() == 0 and "<b>" in found.inner_text(), "the snippet is text, never HTML"

    answer = server.call("GET", "/api/search", params={"q": "吃药"})["results"]
    hit = [r for r in answer if r["conversation_id"] == other]
    found.locator("a").click()
    expect(page).to_have_url(re.compile(f"c={other}&m={hit[0]['message_id']}$"))
    message = page.locator(f'#message-list article[data-id="{hit[0]["message_id"]}"]')
    expect(message).to_be_in_viewport()
    expect(message).to_have_class(re.compile(r"\bfound\b"))
    expect(message).not_to_have_class(re.compile(r"\bfound\b"), timeout=10_000)  # marked for a moment only
    expect(page.locator("#message-list")).to_contain_text("后来的第11个问题")  # and the newer ones follow it
    texts = thread_texts(page)
    assert texts.index("后来的第0个问题") > texts.index("记得<b>吃药</b>，一天三次")

    page.fill("#conversation-search", "")
    expect(page.locator("#conversation-list")).to_be_visible()
    page.fill("#conversation-search", "没有这个词")
    expect(page.locator("#search-results")).to_contain_text("没有找到匹配的消息")


# ---- export and import --------------------------------------------------------------------------


CHATGPT_EXPORT = [
    {
        "id": "6a1f0c2e-chatgpt",
        "conversation_id": "6a1f0c2e-chatgpt",
        "title": "从 ChatGPT 导入",
        "create_time": 1764000000.0,
        "update_time": 1764000100.0,
        "current_node": "m2",
        "mapping": {
            "root": {"id": "root", "message": None, "parent": None, "children": ["m1"]},
            "m1": {
                "id": "m1",
                "parent": "root",
                "children": ["m2"],
                "message": {
                    "id": "m1",
                    "author": {"role": "user"},
                    "create_time": 1764000000.0,
                    "content": {"content_type": "text", "parts": ["导入前的问题"]},
                },
            },
            "m2": {
                "id": "m2",
                "parent": "m1",
                "children": [],
                "message": {
                    "id": "m2",
                    "author": {"role": "assistant"},
                    "create_time": 1764000050.0,
                    "content": {"content_type": "text", "parts": ["导入前的回答"]},
                },
            },
        },
    }
]


def test_import_through_the_file_picker_then_again_skips_it_and_export_all_is_a_download(server, open_page, tmp_path):
    export = tmp_path / "conversations.json"
    export.write_text(json.dumps(CHATGPT_EXPORT, ensure_ascii=False), encoding="utf-8")
    page = open_page(server.base_url, "?poll=3600000")  # no polling: the import itself refreshes the list
    for expected in ("已导入 1 个对话，跳过 0 个。", "已导入 0 个对话，跳过 1 个。"):
        with page.expect_file_chooser() as chooser:
            page.click("#import-open")
        chooser.value.set_files(str(export))
        expect(page.locator("#transfer-status")).to_have_text(expected)
    imported = page.locator("#conversation-list li.conversation", has_text="从 ChatGPT 导入")
    expect(imported).to_have_count(1)
    imported.locator("a").click()
    expect(page.locator("#message-list")).to_contain_text("导入前的回答")
    assert thread_texts(page) == ["导入前的问题", "导入前的回答"]

    bad = tmp_path / "bad.json"
    bad.write_text("{not json", encoding="utf-8")
    with page.expect_file_chooser() as chooser:
        page.click("#import-open")
    chooser.value.set_files(str(bad))
    expect(page.locator("#transfer-status")).to_have_class(re.compile(r"\bfailed\b"))
    assert page.locator("#transfer-status").inner_text().strip()

    with page.expect_download() as download:
        page.click("#export-all")
    exported = json.loads(Path(download.value.path()).read_text(encoding="utf-8"))
    assert any(c.get("title") == "从 ChatGPT 导入" for c in exported)


# ---- the drawer at 390 px, and how it all looks ----------------------------------------------------


def test_at_phone_width_the_sidebar_is_a_drawer_closed_by_escape_a_tap_outside_or_a_choice(server, open_page):
    other = server.create("手机上的对话")
    server.chat("在手机上", other)
    page = open_page(server.base_url, viewport=PHONE)
    sidebar = page.locator("#sidebar")
    opener = page.locator("#sidebar-open")
    expect(sidebar).not_to_be_in_viewport()
    expect(opener).to_have_attribute("aria-expanded", "false")

    opener.click()
    expect(sidebar).to_be_in_viewport(ratio=1)
    expect(opener).to_have_attribute("aria-expanded", "true")
    expect(entry(page, "main").locator("a")).to_be_focused()
    page.keyboard.press("Escape")
    expect(sidebar).not_to_be_in_viewport()
    expect(opener).to_be_focused()

    opener.click()
    expect(sidebar).to_be_in_viewport(ratio=1)
    page.mouse.click(370, 400)  # the dimmed page beside the drawer
    expect(sidebar).not_to_be_in_viewport()

    opener.click()
    entry(page, other).locator("a").click()
    expect(sidebar).not_to_be_in_viewport()
    expect(page.locator("#message-list")).to_contain_text("在手机上")
    assert page.evaluate("document.documentElement.scrollWidth") <= 390


@pytest.mark.parametrize("locale", ["zh-CN", "en-US"])
def test_screenshots_light_dark_and_the_drawer(server, upstream, open_page, locale):
    pinned = server.create("旅行计划：去云南的十天行程安排和预算")
    server.call("PATCH", f"/api/conversations/{pinned}", json={"pinned": True})
    server.chat("昆明到大理怎么走？", pinned)
    work = server.create("Python asyncio")
    server.chat("What is an event loop?", work)
    server.chat("你好")
    reminder = server.reminder("喝水", work)
    suffix = "zh" if locale == "zh-CN" else "en"

    page = open_page(server.base_url, "?poll=500", locale=locale)
    server.call("POST", f"/api/reminders/{reminder['id']}/run", json={})
    expect(entry(page, work).locator(".unread-dot")).to_be_visible(timeout=15_000)
    title = "主对话" if locale == "zh-CN" else "Main conversation"
    expect(entry(page, "main").locator(".conversation-title")).to_have_text(title)
    page.fill("#conversation-search", "event")
    expect(page.locator("#search-results mark").first).to_be_visible()
    screenshot(page, f"conversations-desktop-light-search-{suffix}")
    page.fill("#conversation-search", "")
    screenshot(page, f"conversations-desktop-light-{suffix}")

    dark = open_page(server.base_url, f"?c={pinned}", locale=locale, color_scheme="dark")
    expect(dark.locator("#message-list")).to_contain_text("昆明到大理怎么走？")
    background = dark.locator("#sidebar").evaluate("e => getComputedStyle(e).backgroundColor")
    assert max(int(c) for c in re.findall(r"\d+", background)[:3]) < 60, background
    screenshot(dark, f"conversations-desktop-dark-{suffix}")

    phone = open_page(server.base_url, locale=locale, viewport=PHONE)
    phone.click("#sidebar-open")
    expect(phone.locator("#sidebar")).to_be_in_viewport(ratio=1)
    phone.wait_for_timeout(300)  # the slide-in transition
    assert phone.evaluate("document.documentElement.scrollWidth") <= 390
    screenshot(phone, f"conversations-390-drawer-{suffix}")
