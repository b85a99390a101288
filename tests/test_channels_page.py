"""Push channels on the page, in Chromium: the channels panel, "Send to" in the reminder form, a failed push's warning.

Channels that must really send point at a local webhook receiver (`json://127.0.0.1:<port>/…`) started here.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import requests
from playwright.sync_api import Locator, Page, expect

from scheduler import leader_pid
from tests.support.browser import PHONE, screenshot
from tests.support.client import app_env
from tests.support.push_service import PushService
from tests.support.servers import Gunicorn
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.browser]  # (Apprise's imghdr warning is ignored in pyproject.toml)
ZONE = ZoneInfo("Asia/Shanghai")  # app_env's TIMEZONE
IN_SHANGHAI = {"timezone_id": "Asia/Shanghai"}
SECRET = "SECRETTOKEN123"
BARK = f"bark://api.day.app/{SECRET}"


class Receiver:
    """A webhook on 127.0.0.1 that records each POST's path and JSON body and answers `status`."""

    def __init__(self) -> None:
        self.posts: list[tuple[str, dict]] = []
        self.status = 200
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                receiver.posts.append((self.path, json.loads(body or b"{}")))
                self.send_response(receiver.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def url(self, path: str) -> str:
        return f"json://127.0.0.1:{self.server.server_port}/{path}"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    hook = Receiver()
    hook.thread.start()
    yield hook
    hook.server.shutdown()
    hook.server.server_close()


def add_channel(api, name: str, url: str) -> dict:
    response = api.post("/api/channels", json={"name": name, "url": url})
    assert response.status_code == 201, response.text
    return response.json()["channel"]


def user_channels(api) -> list[dict]:
    return [c for c in api.get("/api/channels").json()["channels"] if c["source"] == "user"]


def stored_urls(api) -> dict[str, str]:
    """The URLs as the server keeps them (the API only shows them masked)."""
    data = json.loads((Path(api.settings.data_dir) / "channels.json").read_text())
    return {c["name"]: c["url"] for c in data["channels"]}


def open_channels(page: Page) -> Locator:
    page.click("#channels-open")
    panel = page.locator("#channels-panel")
    expect(panel).to_be_visible()
    return panel


def channel_item(page: Page, name: str) -> Locator:
    return page.locator(".channel-item", has=page.locator(".channel-name", has_text=re.compile(f"^{name}$")))


def in_a_while(**delta: float) -> str:
    return (datetime.now(ZONE) + timedelta(**delta)).replace(tzinfo=None).isoformat(timespec="seconds")


# ---- the channels panel ------------------------------------------------------------------------


def test_a_channel_is_added_renamed_re_pointed_and_deleted_through_the_panel(serve, upstream, open_page):
    api = serve()
    page = open_page(api.base_url)
    open_channels(page)
    assert page.evaluate("document.activeElement.id") == "channel-new", "focus moves into the panel"
    expect(page.locator("#channel-list .reminder-empty")).to_contain_text("还没有推送通道")

    page.click("#channel-new")
    expect(page.locator("#channel-name")).to_be_focused()
    expect(page.locator("#channel-url-help a")).to_have_attribute("href", "https://github.com/caronc/apprise/wiki")
    page.fill("#channel-name", "手机")
    page.fill("#channel-url", BARK)
    page.click("#channel-save")
    row = channel_item(page, "手机")
    expect(row.locator(".tag.service")).to_have_text("Bark")
    expect(row.locator(".channel-url")).to_have_text("bark://api.day.app/•••")
    expect(page.locator("#channel-form")).to_be_hidden()
    (created,) = user_channels(api)
    assert (created["name"], created["url"]) == ("手机", "bark://api.day.app/•••")
    assert stored_urls(api) == {"手机": BARK}
    assert SECRET not in page.content(), "the URL's token never stays in the page"

    row.get_by_role("button", name="修改").click()
    expect(page.locator("#channel-form-title")).to_have_text("修改通道")
    expect(page.locator("#channel-name")).to_have_value("手机")
    expect(page.locator("#channel-url")).to_have_value("")  # the page never had the real URL to fill in
    page.fill("#channel-name", "我的手机")
    page.click("#channel-save")
    expect(channel_item(page, "我的手机")).to_be_visible()
    assert stored_urls(api) == {"我的手机": BARK}, "an empty URL field keeps the URL"

    channel_item(page, "我的手机").get_by_role("button", name="修改").click()
    page.fill("#channel-url", "ntfys://ntfy.sh/private-topic-77")
    page.click("#channel-save")
    expect(channel_item(page, "我的手机").locator(".tag.service")).to_have_text("ntfy")
    assert stored_urls(api) == {"我的手机": "ntfys://ntfy.sh/private-topic-77"}
    assert SECRET not in page.content() and "private-topic-77" not in page.content()

    page.once("dialog", lambda dialog: dialog.dismiss())
    channel_item(page, "我的手机").get_by_role("button", name="删除").click()
    expect(channel_item(page, "我的手机")).to_be_visible()
    assert len(user_channels(api)) == 1, "a dismissed confirm deletes nothing"
    page.once("dialog", lambda dialog: dialog.accept())
    channel_item(page, "我的手机").get_by_role("button", name="删除").click()
    expect(page.locator("#channel-list .reminder-empty")).to_be_visible()
    assert user_channels(api) == []

    page.keyboard.press("Escape")
    expect(page.locator("#channels-panel")).to_be_hidden()
    expect(page.locator("#channels-open")).to_be_focused()


@pytest.mark.parametrize("url", ["bark://", "nosuchservice://example.com/x", "just some words"])
def test_a_bad_url_shows_the_servers_sentence_under_the_field_and_saves_nothing(serve, upstream, open_page, url):
    api = serve()
    refused = api.post("/api/channels", json={"name": "手机", "url": url})
    assert refused.status_code == 400 and refused.json()["code"] == "invalid_channel_url"
    page = open_page(api.base_url)
    open_channels(page)
    page.click("#channel-new")
    page.fill("#channel-name", "手机")
    page.fill("#channel-url", url)
    page.click("#channel-save")
    error = page.locator("#channel-url-error")
    expect(error).to_have_text(refused.json()["error"])
    expect(page.locator("#channel-url")).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#channel-url")).to_be_focused()
    expect(page.locator("#channel-form-error")).to_be_hidden()
    assert "[object Object]" not in page.content() and "Traceback" not in page.content()
    assert user_channels(api) == []
    page.fill("#channel-url", "bark://api.day.app/KEY")  # fixing it clears the sentence
    expect(error).to_be_hidden()


def test_test_shows_delivered_then_the_receivers_refusal(serve, upstream, open_page, receiver):
    api = serve()
    add_channel(api, "群机器人", receiver.url("hook"))
    page = open_page(api.base_url)
    open_channels(page)
    row = channel_item(page, "群机器人")
    expect(row.locator(".tag.service")).to_have_text("Webhook")
    row.get_by_role("button", name="测试").click()
    answer = row.locator(".channel-answer")
    expect(answer).to_have_class(re.compile(r"\bdelivered\b"))
    expect(answer).to_contain_text("✓ 已送达")
    assert [path for path, _ in receiver.posts] == ["/hook"]
    assert "测试" in receiver.posts[0][1]["title"]

    receiver.status = 500
    row.get_by_role("button", name="测试").click()
    expect(answer).to_have_class(re.compile(r"\brefused\b"))
    expect(answer).to_contain_text("✗ 被拒绝")
    expect(answer).to_contain_text("500")
    assert len(receiver.posts) == 2


def test_notify_urls_channels_are_listed_read_only(serve, upstream, open_page, receiver):
    api = serve(NOTIFY_URLS=receiver.url("env-hook"))
    page = open_page(api.base_url)
    open_channels(page)
    row = page.locator(".channel-item[data-id='env-1']")
    expect(row.locator(".tag", has_text="NOTIFY_URLS · 只读")).to_be_visible()
    expect(row.locator(".channel-url")).to_have_text(f"json://127.0.0.1:{receiver.server.server_port}/•••")
    expect(row.get_by_role("button")).to_have_count(1)
    expect(row.get_by_role("button", name="测试")).to_be_visible()
    expect(row.get_by_role("button", name="修改")).to_have_count(0)
    expect(row.get_by_role("button", name="删除")).to_have_count(0)
    row.get_by_role("button", name="测试").click()  # it can still be tested
    expect(row.locator(".channel-answer")).to_contain_text("✓ 已送达")
    assert [path for path, _ in receiver.posts] == ["/env-hook"]
    assert "env-hook" not in page.content()


def test_a_browser_subscription_is_listed_and_can_be_deleted_but_not_renamed(serve, upstream, open_page):
    api = serve()
    push_service = PushService(contact=api.settings.push_contact).start()
    try:
        body = {"subscription": push_service.subscriber().subscription(), "name": "丢了的手机"}
        assert api.post("/api/push/subscriptions", json=body).status_code == 201
    finally:
        push_service.stop()
    page = open_page(api.base_url)
    open_channels(page)
    row = page.locator(".channel-item[data-id='push-1']")
    expect(row.locator(".channel-name")).to_have_text("丢了的手机")
    expect(row.get_by_role("button", name="修改")).to_have_count(0)
    page.once("dialog", lambda dialog: dialog.accept())
    row.get_by_role("button", name="删除").click()
    expect(row).to_have_count(0)
    assert api.get("/api/channels").json()["channels"] == []


# ---- the reminder form's "Send to" ---------------------------------------------------------------


def test_the_reminder_forms_channel_choice_is_saved_and_shown_again_on_edit(serve, upstream, open_page):
    api = serve()
    phone = add_channel(api, "手机", BARK)
    group = add_channel(api, "工作群", "wecombot://ABCDEFGHIJKLMN")
    page = open_page(api.base_url, **IN_SHANGHAI)
    page.click("#reminders-open")
    page.click("#reminder-new")
    send_to = page.locator("#reminder-send-to")
    expect(send_to).to_be_visible()
    expect(send_to.locator("input[value=all]")).to_be_checked()
    expect(page.locator("#reminder-channels")).to_be_hidden()
    page.fill("#reminder-text", "交水费")
    at = in_a_while(days=1)[:16]
    page.fill("#reminder-at", at)
    expect(page.locator("#reminder-preview-list li").first).to_have_attribute("data-time", re.compile(f"^{at}"))
    send_to.get_by_role("radio", name="选择的通道").check()
    expect(page.locator("#reminder-channels")).to_be_visible()
    page.locator("#reminder-channels").get_by_label("工作群").check()
    screenshot(page, "reminder-form-channels-zh-CN")
    page.click("#reminder-save")
    expect(page.locator("#reminder-form")).to_be_hidden()
    (reminder,) = [r for r in api.get("/api/reminders").json()["reminders"] if r["source"] == "user"]
    assert reminder["channels"] == [group["id"]]

    item = page.locator(".reminder-item", has=page.locator(".reminder-text", has_text="交水费"))
    item.get_by_role("button", name="编辑").click()
    expect(send_to.locator("input[value=chosen]")).to_be_checked()
    expect(page.locator("#reminder-channels").get_by_label("工作群")).to_be_checked()
    expect(page.locator("#reminder-channels").get_by_label("手机")).not_to_be_checked()
    page.locator("#reminder-channels").get_by_label("手机").check()
    page.click("#reminder-save")
    expect(page.locator("#reminder-form")).to_be_hidden()
    changed = api.get("/api/reminders").json()["reminders"][1]
    assert sorted(changed["channels"]) == sorted([phone["id"], group["id"]])

    item.get_by_role("button", name="编辑").click()
    expect(page.locator("#reminder-channels").get_by_label("手机")).to_be_checked()
    send_to.get_by_role("radio", name="全部通道").check()
    page.click("#reminder-save")
    expect(page.locator("#reminder-form")).to_be_hidden()
    assert api.get("/api/reminders").json()["reminders"][1]["channels"] is None
    item.get_by_role("button", name="编辑").click()
    expect(send_to.locator("input[value=all]")).to_be_checked()


def test_without_channels_the_reminder_form_shows_no_send_to_field(serve, upstream, open_page):
    api = serve()
    page = open_page(api.base_url, **IN_SHANGHAI)
    page.click("#reminders-open")
    page.click("#reminder-new")
    expect(page.locator("#reminder-text")).to_be_focused()
    page.wait_for_load_state("networkidle")
    expect(page.locator("#reminder-send-to")).to_be_hidden()


# ---- a failed push in the reminders list -------------------------------------------------------------


def gunicorn(upstream, tmp_path: Path, **env: str) -> Gunicorn:
    """Gunicorn with reminders on, so the elected leader pushes (the .env reminder set to a day that never comes)."""
    environment = app_env(
        upstream,
        tmp_path / "data",
        SCHEDULER_ENABLED="true",
        CRON_MONTH="2",
        CRON_DAY="29",
        DOTENV_PATH=str(tmp_path / "no.env"),
        **env,
    )
    server = Gunicorn(environment, [], tmp_path / "gunicorn.log")
    server.args = ["-w", "2", "-k", "gthread", "--threads", "4", "-b", f"127.0.0.1:{server.port}"]
    return server


@pytest.mark.slow
def test_a_channel_that_refuses_the_push_shows_its_warning_in_the_reminders_list(
    upstream, tmp_path, open_page, receiver
):
    receiver.status = 500
    with gunicorn(upstream, tmp_path, PUSH_RETRY_SECONDS="1") as server:
        wait_until(lambda: leader_pid(tmp_path / "data"), 20, message="a leader")
        base = server.base_url
        channel = requests.post(base + "/api/channels", json={"name": "手机", "url": receiver.url("hook")}, timeout=10)
        assert channel.status_code == 201, channel.text
        channel_id = channel.json()["channel"]["id"]
        made = requests.post(
            base + "/api/reminders", json={"text": "收快递", "at": in_a_while(seconds=4), "mode": "plain"}, timeout=10
        )
        assert made.status_code == 201, made.text
        reminder_id = made.json()["reminder"]["id"]

        def outcome() -> dict | None:
            reminders = requests.get(base + "/api/reminders", timeout=10).json()["reminders"]
            run = next(r for r in reminders if r["id"] == reminder_id)["last_run"] or {}
            pushed = (run.get("channels") or {}).get(channel_id)
            return pushed if pushed and pushed["status"] == "failed" else None

        failed = wait_until(outcome, 60, interval=0.5, message="the push recorded as failed")
        assert len(receiver.posts) == failed["attempts"] == 2  # the first try and one retry

        page = open_page(base, **IN_SHANGHAI)
        page.click("#reminders-open")
        item = page.locator(".reminder-item", has=page.locator(".reminder-text", has_text="收快递"))
        warning = item.locator(".push-warning")
        expect(warning).to_have_text(f"推送到 手机 失败：{failed['answer']}")
        expect(warning).to_contain_text("500")
        expect(item).to_have_class(re.compile(r"\bfailed\b"))
        expect(item.locator(".push-sent")).to_have_count(0)
        item.scroll_into_view_if_needed()
        screenshot(page, "reminders-push-failed-zh-CN")


# ---- layout, languages, dark mode -----------------------------------------------------------------


def seed_channels(api, receiver: Receiver) -> None:
    add_channel(api, "手机 Bark", BARK)
    add_channel(api, "工作群（企业微信）" + "很长的名字" * 6, "wecombot://ABCDEFGHIJKLMN")
    add_channel(api, "钉钉", "dingtalk://ABCDEFGHIJKLMNOP/")
    add_channel(api, "Webhook", receiver.url("hook/" + "x" * 90))
    add_channel(api, "Gateway", "json://notifications-gateway-for-the-whole-team.internal.example.com/hook")


@pytest.mark.parametrize("locale", ["zh-CN", "en-US"])
def test_the_panel_speaks_the_browsers_language_and_never_scrolls_sideways_at_phone_width(
    serve, upstream, open_page, receiver, locale
):
    api = serve(NOTIFY_URLS=receiver.url("env-hook"))
    seed_channels(api, receiver)
    english = locale == "en-US"
    page = open_page(api.base_url, locale=locale)
    panel = open_channels(page)
    expect(panel.locator("#channels-title")).to_have_text("Push channels" if english else "推送通道")
    expect(page.locator("#channel-new")).to_have_text("Add channel" if english else "添加通道")
    expect(channel_item(page, "钉钉").locator(".tag.service")).to_have_text("DingTalk" if english else "钉钉")
    expect(page.locator(".channel-item[data-id='env-1'] .tag").last).to_have_text(
        "NOTIFY_URLS · read-only" if english else "NOTIFY_URLS · 只读"
    )
    wecom = page.locator(".channel-item").nth(2)
    expect(wecom.locator(".tag.service")).to_have_text("WeCom" if english else "企业微信")
    assert page.locator("#channels-open").evaluate(
        "b => b.previousElementSibling && b.previousElementSibling.id === 'reminders-open'"
    ), "the channels button sits right of the reminders button"
    screenshot(page, f"channels-panel-desktop-{locale}")

    page.set_viewport_size(PHONE)
    box = panel.bounding_box()
    assert box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"]
    page.click("#channel-new")
    page.fill("#channel-name", "手机")
    page.fill("#channel-url", "bark://")
    page.click("#channel-save")
    expect(page.locator("#channel-url-error")).to_be_visible()
    screenshot(page, f"channels-form-refused-phone-{locale}")
    channel_item(page, "Webhook").get_by_role("button", name="Test" if english else "测试").click()
    expect(channel_item(page, "Webhook").locator(".channel-answer")).to_contain_text(
        "✓ Delivered" if english else "✓ 已送达"
    )
    assert page.evaluate("document.scrollingElement.scrollWidth") <= PHONE["width"]
    body = page.locator("#channels-panel .drawer-body")
    assert body.evaluate("b => b.scrollWidth <= b.clientWidth"), "the panel itself never scrolls sideways"
    screenshot(page, f"channels-panel-phone-{locale}")
    assert SECRET not in page.content()

    page.keyboard.press("Escape")
    page.click("#reminders-open")
    page.click("#reminder-new")
    page.locator("#reminder-send-to input[value=chosen]").check()
    expect(page.locator("#reminder-channels input")).to_have_count(6)
    page.locator("#reminder-send-to").scroll_into_view_if_needed()
    assert page.evaluate("document.scrollingElement.scrollWidth") <= PHONE["width"]
    body = page.locator("#reminders-panel .drawer-body")
    assert body.evaluate("b => b.scrollWidth <= b.clientWidth"), "the reminder form never scrolls sideways"
    screenshot(page, f"reminder-form-channels-phone-{locale}")


def brightness(css_color: str) -> float:
    """0 (black) … 255 (white), weighted as the eye sees (Rec. 709 luma)."""
    red, green, blue = map(float, re.findall(r"[\d.]+", css_color)[:3])
    return 0.2126 * red + 0.7152 * green + 0.0722 * blue


def test_the_panel_follows_dark_mode(serve, upstream, open_page, receiver):
    api = serve(NOTIFY_URLS=receiver.url("env-hook"))
    seed_channels(api, receiver)
    page = open_page(api.base_url, color_scheme="dark")
    panel = open_channels(page)
    expect(page.locator(".channel-item")).to_have_count(6)
    assert brightness(panel.evaluate("e => getComputedStyle(e).backgroundColor")) < 60
    assert brightness(page.locator(".channel-name").first.evaluate("e => getComputedStyle(e).color")) > 150
    screenshot(page, "channels-panel-dark-zh-CN")
