"""Reminders on the page: the routes it uses (preview, snooze, done) and the panel, cards and buttons in Chromium."""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from playwright.sync_api import Locator, Page, expect

from history_store import HistoryStore
from tests.support.browser import PHONE, screenshot, wait_ready
from tests.support.client import main_history
from tests.support.waiting import wait_until

ZONE = ZoneInfo("Asia/Shanghai")  # app_env's TIMEZONE


def local(moment: datetime) -> str:
    """A naive local `at` in the app's zone."""
    return moment.astimezone(ZONE).replace(tzinfo=None).isoformat(timespec="seconds")


def in_a_while(**delta: float) -> str:
    return local(datetime.now(ZONE) + timedelta(**delta))


def create(api, **fields) -> dict:
    response = api.post("/api/reminders", json=fields)
    assert response.status_code == 201, response.text
    return response.json()["reminder"]


def run_now(api, reminder_id: str) -> dict:
    response = api.post(f"/api/reminders/{reminder_id}/run", json={})
    assert response.status_code == 200, response.text
    return response.json()["message"]


# ---- preview -----------------------------------------------------------------------------------


def test_preview_gives_the_next_three_times_of_a_cron_or_the_one_of_an_at(api):
    response = api.get("/api/schedule/preview", params={"cron": "0 8 * * 1-5"})
    assert response.status_code == 200, response.text
    runs = [datetime.fromisoformat(run) for run in response.json()["next_runs"]]
    assert len(runs) == 3 and runs == sorted(runs)
    assert all(run.hour == 8 and run.minute == 0 and run.isoweekday() <= 5 for run in runs)
    assert all(run.utcoffset() == timedelta(hours=8) for run in runs)

    at = in_a_while(hours=2)
    response = api.get("/api/schedule/preview", params={"at": at, "timezone": "Europe/Paris"})
    assert response.json() == {"success": True, "next_runs": [datetime.fromisoformat(at).isoformat() + "+01:00"]}
    assert api.get("/api/reminders").json()["reminders"] == [api.get("/api/reminders").json()["reminders"][0]]


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"cron": "0 8 * *"}, "invalid_cron"),
        ({"cron": "0 25 * * *"}, "invalid_cron"),
        ({"at": "2020-01-01T08:00"}, "at_in_past"),
        ({"at": "tomorrow"}, "invalid_at"),
        ({"cron": "0 8 * * *", "timezone": "Mars/Base"}, "invalid_timezone"),
        ({}, "invalid_schedule"),
        ({"at": "", "cron": ""}, "invalid_schedule"),
    ],
)
def test_preview_refuses_what_create_refuses_with_the_same_sentence(api, params, code):
    preview = api.get("/api/schedule/preview", params=params)
    created = api.post("/api/reminders", json={"text": "x", **{k: v for k, v in params.items() if v}})
    assert preview.status_code == 400 and created.status_code == 400
    assert preview.json()["code"] == code == created.json()["code"]

    # The two requests may straddle a second, and the at_in_past sentence names the clock.
    def sentence(response):
        return re.sub(r"it is now [0-9T:-]+", "it is now …", response.json()["error"])

    assert sentence(preview) == sentence(created)


# ---- snooze and done ---------------------------------------------------------------------------


def test_snooze_creates_one_one_off_reminder_ten_minutes_later_with_the_same_text_and_mode(api, upstream):
    reminder = create(api, text="喝水", cron="0 9 * * *", mode="plain", timezone="Europe/Paris")
    message = run_now(api, reminder["id"])
    before = datetime.now(ZoneInfo("Europe/Paris")).replace(tzinfo=None)
    response = api.post(f"/api/reminders/{reminder['id']}/snooze", json={"message_id": message["id"]})
    after = datetime.now(ZoneInfo("Europe/Paris")).replace(tzinfo=None)
    assert response.status_code == 201, response.text
    snoozed = response.json()["reminder"]
    assert (snoozed["text"], snoozed["mode"], snoozed["timezone"], snoozed["cron"]) == (
        "喝水",
        "plain",
        "Europe/Paris",
        None,
    )
    at = datetime.fromisoformat(snoozed["at"])
    assert before + timedelta(minutes=10) - timedelta(seconds=1) <= at <= after + timedelta(minutes=10)
    assert snoozed["id"] != reminder["id"] and len(api.get("/api/reminders").json()["reminders"]) == 3

    later = api.post(f"/api/reminders/{reminder['id']}/snooze", json={"message_id": message["id"], "minutes": 60})
    assert datetime.fromisoformat(later.json()["reminder"]["at"]) >= before + timedelta(minutes=59)


def test_snoozing_the_env_reminder_repeats_its_message_as_plain_text(serve, upstream):
    api = serve(SCHEDULER_ENABLED="true", CRON_HOUR="9", CRON_MINUTE="30")  # wired, not started
    upstream.script({"content": "早上好，记得喝水"})
    message = api.post("/api/reminders/env/run", json={}).json()["message"]
    response = api.post("/api/reminders/env/snooze", json={"message_id": message["id"], "minutes": 5})
    assert response.status_code == 201, response.text
    snoozed = response.json()["reminder"]
    assert (snoozed["text"], snoozed["mode"], snoozed["source"]) == ("早上好，记得喝水", "plain", "user")


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({}, 400, "missing_message_id"),
        ({"message_id": "1"}, 400, "invalid_message_id"),
        ({"message_id": 1, "minutes": 0}, 400, "invalid_minutes"),
        ({"message_id": 1, "minutes": 1441}, 400, "invalid_minutes"),
        ({"message_id": 1, "minutes": True}, 400, "invalid_minutes"),
        ({"message_id": 999}, 404, "reminder_message_not_found"),
        ({"message_id": 1}, 404, "reminder_message_not_found"),  # the user's question, not a reminder message
    ],
)
def test_snooze_and_done_refuse_a_bad_body_or_a_message_that_is_not_the_reminders(api, upstream, body, status, code):
    api.chat("你好")
    reminder = create(api, text="喝水", cron="0 9 * * *", mode="plain")
    for action in ("snooze", "done"):
        if action == "done" and "minutes" in body:
            continue
        response = api.post(f"/api/reminders/{reminder['id']}/{action}", json=body)
        assert (response.status_code, response.json()["code"]) == (status, code), (action, response.text)
        assert response.json()["error"].endswith(".")


def test_a_message_of_another_reminder_is_refused(api):
    first = create(api, text="喝水", cron="0 9 * * *", mode="plain")
    second = create(api, text="吃药", cron="0 9 * * *", mode="plain")
    message = run_now(api, first["id"])
    for action in ("snooze", "done"):
        response = api.post(f"/api/reminders/{second['id']}/{action}", json={"message_id": message["id"]})
        assert response.status_code == 404 and response.json()["code"] == "reminder_message_not_found"


def test_done_marks_the_message_once_and_the_history_keeps_it(api):
    reminder = create(api, text="喝水", cron="0 9 * * *", mode="plain")
    message = run_now(api, reminder["id"])
    response = api.post(f"/api/reminders/{reminder['id']}/done", json={"message_id": message["id"]})
    assert response.status_code == 200, response.text
    done = response.json()["message"]
    assert done["id"] == message["id"] and done["content"] == "喝水"
    assert datetime.fromisoformat(done["done_at"]) >= datetime.fromisoformat(message["timestamp"])
    again = api.post(f"/api/reminders/{reminder['id']}/done", json={"message_id": message["id"]}).json()["message"]
    assert again["done_at"] == done["done_at"]
    stored = [m for m in api.history() if m["id"] == message["id"]]
    assert stored == [done]
    # A fresh store (another worker) reads it from the file, and later appends keep it.
    store = main_history(api.settings.data_dir)
    store.append("user", "之后的消息")
    assert next(m for m in store.recent(10) if m["id"] == message["id"])["done_at"] == done["done_at"]


def test_done_survives_a_later_append_by_another_worker_that_had_the_message_cached(tmp_path):
    path = tmp_path / "main.jsonl"
    worker_a, worker_b = HistoryStore(path), HistoryStore(path)
    message = worker_a.append("assistant", "喝水", is_scheduled=True, reminder_id="1", scheduled_for="manual-1")
    worker_a.append("user", "好的")  # worker A now holds the message's encoding from before it was done
    assert worker_b.mark_done(message["id"], "1")["done_at"]
    assert worker_b.mark_done(message["id"], "2") is None and worker_b.mark_done(message["id"] + 1, "1") is None
    worker_a.append("user", "之后")
    assert HistoryStore(path).recent(10)[0]["done_at"]


# ---- the page, in Chromium ---------------------------------------------------------------------

browser = pytest.mark.browser
IN_SHANGHAI = {"timezone_id": "Asia/Shanghai"}  # the browser's zone: a reminder made on the page fires in it


def open_panel(page: Page) -> Locator:
    page.click("#reminders-open")
    panel = page.locator("#reminders-panel")
    expect(panel).to_be_visible()
    return panel


def item(page: Page, text: str) -> Locator:
    return page.locator(".reminder-item", has=page.locator(".reminder-text", has_text=text))


def reminders_of(api) -> list[dict]:
    return [r for r in api.get("/api/reminders").json()["reminders"] if r["source"] == "user"]


@browser
def test_the_panel_creates_a_one_off_and_a_weekday_reminder_showing_the_next_times_while_typing(
    serve, upstream, open_page
):
    api = serve()
    page = open_page(api.base_url, **IN_SHANGHAI)
    panel = open_panel(page)
    assert page.evaluate("document.activeElement.id") == "reminder-new", "focus moves into the panel"

    page.click("#reminder-new")
    expect(page.locator("#reminder-text")).to_be_focused()
    page.fill("#reminder-text", "吃药")
    tomorrow = (datetime.now(ZONE) + timedelta(days=1)).replace(hour=8, minute=0, second=0, microsecond=0)
    page.fill("#reminder-at", tomorrow.strftime("%Y-%m-%dT%H:%M"))
    preview = page.locator("#reminder-preview-list li")
    expect(preview).to_have_count(1)
    expect(preview.first).to_have_attribute("data-time", tomorrow.isoformat())
    page.fill("#reminder-at", "2020-01-01T08:00")
    expect(page.locator("#reminder-preview-list .preview-error")).to_have_text("这个时间已经过去了，请选择将来的时间。")
    page.fill("#reminder-at", tomorrow.strftime("%Y-%m-%dT%H:%M"))
    expect(preview.first).to_have_attribute("data-time", tomorrow.isoformat())
    page.select_option("#reminder-mode", "plain")
    page.click("#reminder-save")
    expect(item(page, "吃药").locator(".reminder-next time")).to_have_attribute("datetime", tomorrow.isoformat())
    expect(page.locator("#reminder-form")).to_be_hidden()
    (created,) = reminders_of(api)
    assert (created["text"], created["at"], created["timezone"], created["mode"]) == (
        "吃药",
        tomorrow.replace(tzinfo=None).isoformat(),
        "Asia/Shanghai",
        "plain",
    )

    page.click("#reminder-new")
    page.fill("#reminder-text", "站会")
    page.check("input[name=kind][value=cron]")
    page.fill("#reminder-cron", "0 9 * *")
    expect(page.locator("#reminder-preview-list .preview-error")).to_contain_text("重复规则需要五个字段")
    page.get_by_role("button", name="工作日 09:00").click()
    expect(preview).to_have_count(3)
    page.fill("#reminder-cron", "30 9 * * 1-5")
    expect(preview.first).to_have_attribute("data-time", re.compile(r"T09:30:00\+08:00$"))
    times = [datetime.fromisoformat(preview.nth(i).get_attribute("data-time")) for i in range(3)]
    assert all(t.isoweekday() <= 5 and (t.hour, t.minute) == (9, 30) for t in times)
    page.click("#reminder-save")
    expect(item(page, "站会").locator(".reminder-schedule")).to_have_text("工作日 09:30 · 模型措辞")
    assert [r["cron"] for r in reminders_of(api)] == [None, "30 9 * * 1-5"]

    page.click("#reminder-new")  # a refused save says why, in the form, and keeps what was typed
    page.fill("#reminder-text", "   ")
    page.click("#reminder-save")
    expect(page.locator("#reminder-form-error")).to_have_text("请填写提醒内容。")
    expect(page.locator("#reminder-text")).to_have_attribute("aria-invalid", "true")
    page.fill("#reminder-text", "写周报")
    expect(page.locator("#reminder-form-error")).to_be_hidden()
    page.fill("#reminder-at", tomorrow.strftime("%Y-%m-%dT%H:%M"))
    expect(preview.first).to_have_attribute("data-time", tomorrow.isoformat())
    screenshot(page, "reminders-form-desktop-zh-CN")
    page.click("#reminder-cancel")

    page.keyboard.press("Escape")
    expect(panel).to_be_hidden()
    expect(page.locator("#reminders-open")).to_be_focused()


@browser
def test_pause_resume_run_now_then_snooze_and_done_on_the_message_and_delete(serve, upstream, open_page):
    api = serve()
    reminder = create(api, text="浇花", cron="0 9 * * *", mode="plain")
    page = open_page(api.base_url, "?poll=1000", **IN_SHANGHAI)
    open_panel(page)
    row = item(page, "浇花")
    expect(row.locator(".reminder-schedule")).to_have_text("每天 09:00 · 原文")

    row.get_by_role("button", name="暂停").click()
    expect(row).to_have_class(re.compile(r"\bpaused\b"))
    assert reminders_of(api)[0]["enabled"] is False
    row.get_by_role("button", name="恢复").click()
    expect(row).not_to_have_class(re.compile(r"\bpaused\b"))
    assert reminders_of(api)[0]["enabled"] is True

    row.get_by_role("button", name="立即发送").click()
    expect(page.locator("#reminders-status")).to_have_text("已发送到对话中。")
    expect(row.locator(".reminder-last")).to_contain_text("已发送")
    page.keyboard.press("Escape")
    message = page.locator("article.message.scheduled")
    expect(message.locator(".bubble")).to_have_text("浇花")
    expect(message.locator(".reminder-done")).to_have_text("完成")

    message.locator(".reminder-snooze").click()
    expect(message.locator(".reminder-snoozed")).to_contain_text("将在")
    snoozed = [r for r in reminders_of(api) if r["id"] != reminder["id"]]
    assert len(snoozed) == 1 and snoozed[0]["text"] == "浇花" and snoozed[0]["mode"] == "plain"
    wait = datetime.fromisoformat(snoozed[0]["next_runs"][0]) - datetime.now(ZONE)
    assert timedelta(minutes=9) < wait <= timedelta(minutes=10)

    message.locator(".reminder-done").click()
    expect(message.locator(".reminder-done-state")).to_have_text("✓ 已完成")
    page.reload()
    wait_ready(page)
    expect(page.locator("article.message.scheduled .reminder-done-state")).to_have_text("✓ 已完成")
    expect(page.locator("article.message.scheduled .reminder-done")).to_have_count(0)

    open_panel(page)
    page.once("dialog", lambda dialog: dialog.accept())
    item(page, "浇花").first.get_by_role("button", name="删除").click()
    expect(page.locator(".reminder-item")).to_have_count(2)  # the .env reminder and the snoozed one
    assert [r["id"] for r in reminders_of(api)] == [snoozed[0]["id"]]


@browser
def test_a_failed_run_shows_a_warning_in_the_panel_and_a_note_under_its_message(serve, upstream, open_page):
    api = serve()
    reminder = create(api, text="交房租", cron="0 9 1 * *", mode="generate")
    seed = main_history(api.settings.data_dir)
    seed.append("assistant", "该喝水了（补发）", is_scheduled=True, reminder_id=reminder["id"], late=True,
                scheduled_for="2026-01-01T09:00:00+08:00", generated=True)  # fmt: skip
    page = open_page(api.base_url, "?poll=1000", **IN_SHANGHAI)
    expect(page.locator(".reminder-note.late")).to_contain_text("迟发")

    upstream.script({"kind": "status", "status": 404, "body": {"error": {"message": "no such model"}}})
    open_panel(page)
    row = item(page, "交房租")
    expect(row.locator(".reminder-schedule")).to_have_text("每月 1 日 09:00 · 模型措辞")
    row.get_by_role("button", name="立即发送").click()
    expect(row.locator(".reminder-warning")).to_contain_text("HTTP 404 — check API_URL and MODEL.")
    expect(row.locator(".reminder-warning")).to_contain_text("模型出错")
    page.keyboard.press("Escape")
    sent = page.locator("article.message.scheduled").last
    expect(sent.locator(".bubble")).to_have_text("交房租")
    expect(sent.locator(".reminder-note.not-generated")).to_contain_text("HTTP 404 — check API_URL and MODEL.")

    page.reload()  # the note and the warning come from the server, not from this page's memory
    wait_ready(page)
    expect(page.locator("article.message.scheduled").last.locator(".reminder-note.not-generated")).to_contain_text(
        "模型没能生成这条提醒"
    )
    open_panel(page)
    expect(item(page, "交房租").locator(".reminder-warning")).to_be_visible()


def seed_reply_with_actions(api, actions: list[dict]) -> dict:
    """An assistant reply that ran reminder tool calls, stored as the chat service stores one."""
    store = main_history(api.settings.data_dir)
    question = store.append("user", "提醒我")
    return store.append("assistant", "好的，已经安排好了。", reply_to=question["id"], reminder_actions=actions)


@browser
@pytest.mark.parametrize("locale", ["zh-CN", "en-US"])
def test_confirmation_cards_render_from_the_stored_message_and_undo_each_action(serve, upstream, open_page, locale):
    api = serve()
    made = create(api, text="喝水", cron="0 8 * * *", mode="plain")
    changed = create(api, text="开会", at=in_a_while(days=2), mode="plain")
    before = {key: changed[key] for key in ("text", "at", "cron", "timezone", "mode", "enabled")}
    changed = api.session.patch(
        f"{api.base_url}/api/reminders/{changed['id']}", json={"cron": "0 9 * * 1-5"}, timeout=30
    ).json()["reminder"]
    gone = create(api, text="取快递", at=in_a_while(days=1), mode="generate")
    assert api.delete(f"/api/reminders/{gone['id']}").status_code == 200
    seed_reply_with_actions(
        api,
        [
            {"action": "created", "reminder": made},
            {"action": "updated", "reminder": changed, "previous": before},
            {"action": "cancelled", "reminder": gone},
        ],
    )
    english = locale == "en-US"
    page = open_page(api.base_url, locale=locale, **IN_SHANGHAI)
    cards = page.locator(".reminder-card")
    expect(cards).to_have_count(3)
    created, updated, cancelled = cards.nth(0), cards.nth(1), cards.nth(2)
    expect(created.locator(".reminder-card-title")).to_have_text("Reminder set" if english else "已设置提醒")
    expect(created.locator(".reminder-card-text")).to_have_text("喝水")
    expect(created.locator(".reminder-card-when")).to_have_text("Every day 08:00" if english else "每天 08:00")
    expect(created.locator(".reminder-card-next time")).to_have_count(3)
    assert created.locator(".reminder-card-next time").first.get_attribute("datetime") == made["next_runs"][0]
    expect(updated.locator(".reminder-card-when")).to_have_text("Weekdays 09:00" if english else "工作日 09:00")
    screenshot(page, f"reminder-card-{locale}")

    created.get_by_role("button", name="Undo" if english else "撤销").click()
    expect(created.locator(".reminder-card-title")).to_have_text(
        "Undone: the reminder was deleted" if english else "已撤销：提醒已删除"
    )
    expect(created.get_by_role("button")).to_have_count(0)
    updated.get_by_role("button", name="Undo" if english else "撤销").click()
    expect(updated).to_have_class(re.compile(r"\bundone\b"))
    cancelled.get_by_role("button", name="Undo" if english else "撤销").click()
    expect(cancelled).to_have_class(re.compile(r"\bundone\b"))

    listed = {r["text"]: r for r in reminders_of(api)}
    assert "喝水" not in listed, "Undo of a created reminder deletes it"
    assert (listed["开会"]["at"], listed["开会"]["cron"]) == (before["at"], None), "Undo of a change restores it"
    assert (listed["取快递"]["at"], listed["取快递"]["mode"]) == (gone["at"], "generate"), "Undo of a cancel re-creates"

    page.reload()
    wait_ready(page)
    expect(page.locator(".reminder-card.undone")).to_have_count(3)
    open_panel(page)
    expect(page.locator(".reminder-item")).to_have_count(3)  # the .env reminder and the two Undo brought back
    screenshot(page, f"reminders-panel-desktop-{locale}")


@browser
def test_an_undo_that_fails_says_why_on_the_card(serve, upstream, open_page):
    api = serve()
    past = create(api, text="交电费", at=in_a_while(seconds=2), mode="plain")
    assert api.delete(f"/api/reminders/{past['id']}").status_code == 200
    seed_reply_with_actions(api, [{"action": "cancelled", "reminder": past}])
    page = open_page(api.base_url, **IN_SHANGHAI)
    card = page.locator(".reminder-card")
    wait_until(lambda: datetime.fromisoformat(past["at"]).replace(tzinfo=ZONE) < datetime.now(ZONE), 10)
    card.get_by_role("button", name="撤销").click()
    expect(card.locator(".reminder-error")).to_have_text("这个时间已经过去了，请选择将来的时间。")
    expect(card.get_by_role("button", name="撤销")).to_be_enabled()


@browser
@pytest.mark.parametrize("locale", ["zh-CN", "en-US"])
def test_at_phone_width_the_panel_cards_and_reminder_messages_never_scroll_sideways(serve, upstream, open_page, locale):
    api = serve(SCHEDULER_ENABLED="true", CRON_HOUR="9", CRON_MINUTE="30")  # wired, not started
    long_text = "记得把" + "很长的提醒内容" * 12 + "https://example.com/" + "x" * 80
    made = create(api, text=long_text, cron="15 7 * * sat,sun", mode="plain")
    create(api, text="一次性", at=in_a_while(hours=5), mode="generate")
    run_now(api, made["id"])
    seed_reply_with_actions(api, [{"action": "created", "reminder": made}])
    page = open_page(api.base_url, locale=locale, viewport=PHONE, **IN_SHANGHAI)
    expect(page.locator(".reminder-card")).to_have_count(1)
    expect(page.locator("article.message.scheduled .reminder-snooze")).to_be_visible()
    assert page.evaluate("document.scrollingElement.scrollWidth") <= PHONE["width"]
    assert page.evaluate("document.getElementById('messages').scrollWidth") <= PHONE["width"]
    screenshot(page, f"reminder-message-phone-{locale}")

    panel = open_panel(page)
    box = panel.bounding_box()
    assert box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"]
    page.click("#reminder-new")
    page.check("input[name=kind][value=cron]")
    page.fill("#reminder-cron", "0 8 * *")
    expect(page.locator("#reminder-preview-list .preview-error")).to_have_text(
        "A repeat rule has five fields: minute hour day month weekday, e.g. 0 8 * * 1-5."
        if locale == "en-US"
        else "重复规则需要五个字段：分 时 日 月 星期，例如 0 8 * * 1-5。"
    )
    page.get_by_role("button", name="Weekdays 09:00" if locale == "en-US" else "工作日 09:00").click()
    expect(page.locator("#reminder-preview-list li")).to_have_count(3)
    assert page.evaluate("document.scrollingElement.scrollWidth") <= PHONE["width"]
    body = page.locator("#reminders-panel .drawer-body")
    assert body.evaluate("b => b.scrollWidth <= b.clientWidth"), "the panel itself never scrolls sideways"
    screenshot(page, f"reminders-panel-phone-{locale}")
    page.locator("#reminder-list").scroll_into_view_if_needed()
    screenshot(page, f"reminders-list-phone-{locale}")


@browser
def test_edit_changes_the_text_the_schedule_and_the_mode(serve, upstream, open_page):
    api = serve()
    reminder = create(api, text="买菜", at=in_a_while(days=1), mode="generate")
    page = open_page(api.base_url, **IN_SHANGHAI)
    open_panel(page)
    item(page, "买菜").get_by_role("button", name="编辑").click()
    expect(page.locator("#reminder-form-title")).to_have_text("编辑提醒")
    expect(page.locator("#reminder-text")).to_have_value("买菜")
    expect(page.locator("#reminder-at")).to_have_value(reminder["at"][:16])
    expect(page.locator("#reminder-preview-list li")).to_have_count(1)
    page.fill("#reminder-text", "买菜和水果")
    page.check("input[name=kind][value=cron]")
    page.get_by_role("button", name="每天 08:00").click()
    expect(page.locator("#reminder-preview-list li")).to_have_count(3)
    page.select_option("#reminder-mode", "plain")
    page.click("#reminder-save")
    expect(item(page, "买菜和水果").locator(".reminder-schedule")).to_have_text("每天 08:00 · 原文")
    (changed,) = reminders_of(api)
    assert (changed["id"], changed["text"], changed["cron"], changed["at"], changed["mode"]) == (
        reminder["id"],
        "买菜和水果",
        "0 8 * * *",
        None,
        "plain",
    )


def sse(*events: dict) -> str:
    return "".join(f"data: {json.dumps(event, ensure_ascii=False)}\n\n" for event in events)


# The page's fetch of /api/chat/stream answered by a stream the test feeds piece by piece (window.__push / __end).
HELD_STREAM = """
const realFetch = window.fetch;
window.fetch = (input, init) => {
  const url = typeof input === 'string' ? input : input.url;
  if (!url.includes('/api/chat/stream')) return realFetch(input, init);
  let controller;
  const body = new ReadableStream({ start(c) { controller = c; } });
  window.__push = text => controller.enqueue(new TextEncoder().encode(text));
  window.__end = () => controller.close();
  return Promise.resolve(new Response(body, { status: 200, headers: { 'Content-Type': 'text/event-stream' } }));
};
"""


@browser
def test_a_streamed_reminder_event_shows_its_card_before_the_reply_ends_and_undo_works(serve, upstream, open_page):
    """The server side of the stream's `reminder` event belongs to the chat service; here the page's half of the
    contract is checked by feeding the page the events the contract names, while the reply is still open."""
    api = serve()
    made = create(api, text="喝水", at=in_a_while(minutes=20), mode="plain")
    user = {"id": 901, "role": "user", "content": "20分钟后提醒我喝水", "timestamp": made["created_at"]}
    reply = {"id": 902, "role": "assistant", "content": "好的，20 分钟后提醒你喝水。", "reply_to": 901,
             "timestamp": made["created_at"], "is_scheduled": False}  # fmt: skip
    page = open_page(api.base_url, **IN_SHANGHAI)
    page.add_init_script(HELD_STREAM)
    page.reload()
    wait_ready(page)
    page.fill("#input", user["content"])
    page.press("#input", "Enter")
    page.wait_for_function("typeof window.__push === 'function'")
    page.evaluate("text => window.__push(text)", sse({"type": "start", "user_message": user}))
    page.evaluate("text => window.__push(text)", sse({"type": "reminder", "action": "created", "reminder": made}))
    live = page.locator("article.message.assistant.pending .reminder-card")  # no word of the reply yet
    expect(live.locator(".reminder-card-title")).to_have_text("已设置提醒")
    expect(live.locator(".reminder-card-next time")).to_have_attribute("datetime", made["next_runs"][0])

    # A server that stores the actions sends them in `done`; one that does not still leaves the streamed card.
    page.evaluate("text => window.__push(text)", sse({"type": "delta", "content": reply["content"]}))
    page.evaluate("text => { window.__push(text); window.__end(); }", sse({"type": "done", "message": reply}))
    final = page.locator("article.message.assistant[data-id='902']")
    expect(final.locator(".bubble")).to_have_text(reply["content"])
    expect(final.locator(".reminder-card")).to_have_count(1)
    final.get_by_role("button", name="撤销").click()
    expect(final.locator(".reminder-card-title")).to_have_text("已撤销：提醒已删除")
    assert reminders_of(api) == []


def brightness(css_color: str) -> float:
    """0 (black) … 255 (white), weighted as the eye sees (Rec. 709 luma)."""
    channels = re.findall(r"[\d.]+", css_color)[:3]
    assert len(channels) == 3, f"not an rgb() colour: {css_color!r}"
    red, green, blue = map(float, channels)
    return 0.2126 * red + 0.7152 * green + 0.0722 * blue


def computed(locator, property_name: str) -> str:
    """An element's computed style. Asked again while it reads empty: the element was just replaced (the page
    draws a card again when the reminders load), and a detached element has no computed style."""
    style = f"e => getComputedStyle(e).{property_name}"
    return wait_until(lambda: locator.evaluate(style), 10, message=f"the {property_name} of an attached element")


@browser
def test_the_reminder_card_and_panel_follow_dark_mode(serve, upstream, open_page):
    api = serve()
    made = create(api, text="喝水", cron="0 9 * * 1-5", mode="plain")
    create(api, text="开会", at=in_a_while(hours=5))
    seed_reply_with_actions(api, [{"action": "created", "reminder": made}])
    page = open_page(api.base_url, color_scheme="dark", **IN_SHANGHAI)
    card = page.locator(".reminder-card")
    expect(card).to_have_count(1)
    assert brightness(computed(card.locator(".reminder-card-title"), "color")) > 150
    screenshot(page, "reminder-card-dark-zh-CN")
    panel = open_panel(page)
    assert brightness(computed(panel, "backgroundColor")) < 60
    assert brightness(computed(panel.locator(".reminder-item").first, "color")) > 150
    screenshot(page, "reminders-panel-dark-zh-CN")
