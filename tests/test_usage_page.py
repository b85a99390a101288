"""Token usage on the page, in real headless Chromium: a reply's tokens on hover, this month's in the header."""

from __future__ import annotations

import re
from datetime import datetime, timedelta

import pytest
from playwright.sync_api import Page, expect

from conversations import Conversations
from tests.support.browser import PHONE, screenshot
from tests.test_reminders import ZONE

pytestmark = pytest.mark.browser


def send_and_wait(page: Page, text: str):
    """Send `text` and return the stored reply's element once its stream ended."""
    before = page.locator("article.message.assistant[data-id]").count()
    page.fill("#input", text)
    page.press("#input", "Enter")
    reply = page.locator("article.message.assistant[data-id]").nth(before)
    reply.wait_for()
    expect(page.locator("#send")).to_be_visible()
    return reply


def grouped(number: int) -> str:
    return f"{number:,}"


def open_usage(page: Page):
    page.click("#usage-open")
    popover = page.locator("#usage-popover")
    expect(popover).to_be_visible()
    expect(page.locator("#usage-open")).to_have_attribute("aria-expanded", "true")
    return popover


def test_a_replys_tokens_show_on_hover_and_the_month_total_in_the_header(serve, upstream, open_page):
    api = serve()
    page = open_page(api.base_url)
    reply = send_and_wait(page, "你好")
    [usage] = upstream.usages_sent
    line = (
        f"输入 {grouped(usage['prompt_tokens'])} · 输出 {grouped(usage['completion_tokens'])} · "
        f"共 {grouped(usage['total_tokens'])} tokens"
    )
    time = reply.locator(".meta time")
    assert time.get_attribute("title").endswith("\n" + line), time.get_attribute("title")
    assert reply.locator(".meta").get_attribute("title") == line
    assert page.locator("article.message.user .meta").get_attribute("title") in (None, "")

    popover = open_usage(page)
    total = upstream.usages_sent[0]["total_tokens"]
    expect(page.locator("#usage-total")).to_have_text(f"{grouped(total)} tokens")
    expect(page.locator("#usage-replies")).to_have_text("1 次回复")
    month = datetime.now(ZONE)
    expect(page.locator("#usage-month")).to_have_text(f"{month.year}年{month.month}月用量（按 Asia/Shanghai 计）")
    page.keyboard.press("Escape")
    expect(popover).to_be_hidden()
    expect(page.locator("#usage-open")).to_have_attribute("aria-expanded", "false")

    send_and_wait(page, "再说一次")  # reopened, the popover asks again and counts the new turn
    open_usage(page)
    total = sum(u["total_tokens"] for u in upstream.usages_sent)
    expect(page.locator("#usage-total")).to_have_text(f"{grouped(total)} tokens")
    expect(page.locator("#usage-replies")).to_have_text("2 次回复")
    page.mouse.click(5, 700)  # a click elsewhere closes it
    expect(popover).to_be_hidden()


def test_escape_closes_the_popover_without_stopping_a_reply(serve, upstream, open_page):
    api = serve()
    upstream.script({"pieces": ["一", "二", "三", "四", "五", "六"], "chunk_delay": 0.4})
    page = open_page(api.base_url)
    page.fill("#input", "数到六")
    page.press("#input", "Enter")
    expect(page.locator("article.message.assistant .bubble").last).to_contain_text("一")
    popover = open_usage(page)
    page.keyboard.press("Escape")
    expect(popover).to_be_hidden()
    reply = page.locator("article.message.assistant[data-id]").last
    expect(reply.locator(".bubble")).to_have_text("一二三四五六", timeout=15_000)
    assert "stopped" not in (reply.get_attribute("class") or "")
    page.keyboard.press("Escape")  # with the popover closed, Escape is the page's own again (nothing to stop)


def test_the_month_is_the_servers_even_when_the_browser_is_still_in_the_last_one(serve, open_page):
    api = serve()
    # A reply stored an hour before this month began in the server's zone, and one now.
    now = datetime.now(ZONE)
    month_start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    last_month = month_start - timedelta(hours=1)
    usage = {"prompt_tokens": 90_000, "completion_tokens": 9_000, "total_tokens": 99_000}
    Conversations(api.settings).create(
        "上个月",
        messages=[
            {"role": "assistant", "content": "旧的", "timestamp": last_month.isoformat(), "usage": usage},
            {"role": "assistant", "content": "新的", "timestamp": now.isoformat(), "usage": {"total_tokens": 12}},
        ],
    )
    # The browser's clock says it is still last month (a phone a zone behind, or one just before midnight).
    page = open_page(api.base_url, locale="en-US", timezone_id="Asia/Shanghai")
    page.clock.set_fixed_time(last_month)
    open_usage(page)
    expect(page.locator("#usage-total")).to_have_text("12 tokens")
    expect(page.locator("#usage-replies")).to_have_text("Replies: 1")
    expect(page.locator("#usage-month")).to_have_text(re.compile(rf"^{now.strftime('%B %Y')} usage"))


def test_the_popover_is_dark_in_dark_mode_and_english_in_english(serve, open_page):
    api = serve()
    page = open_page(api.base_url, locale="en-US", color_scheme="dark")
    expect(page.locator("#usage-open")).to_have_attribute("aria-label", "Token usage this month")
    popover = open_usage(page)
    expect(page.locator("#usage-status")).to_have_text("No usage recorded this month yet.")
    expect(page.locator("#usage-total")).to_have_text("0 tokens")
    background = popover.evaluate("e => getComputedStyle(e).backgroundColor")
    assert max(int(c) for c in re.findall(r"\d+", background)[:3]) < 60, background
    colour = page.locator("#usage-total").evaluate("e => getComputedStyle(e).color")
    assert min(int(c) for c in re.findall(r"\d+", colour)[:3]) > 150, colour
    expect(page.locator("#usage-replies")).to_be_hidden()
    screenshot(page, "usage-popover-dark-en")


def test_on_a_phone_the_usage_button_fits_and_its_popover_stays_on_screen(serve, upstream, open_page):
    api = serve()
    page = open_page(api.base_url, viewport=PHONE)
    send_and_wait(page, "你好")
    expect(page.locator("#usage-open")).to_be_in_viewport(ratio=1)
    expect(page.locator("#new-chat")).to_be_in_viewport(ratio=1)
    popover = open_usage(page)
    expect(page.locator("#usage-total")).to_have_text(f"{grouped(upstream.usages_sent[0]['total_tokens'])} tokens")
    expect(popover).to_be_in_viewport(ratio=1)
    screenshot(page, "usage-popover-phone-zh-CN")
