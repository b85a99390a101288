"""Reminders on the page: the routes it uses (preview, snooze, done) and the panel, cards and buttons in Chromium."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from history_store import HistoryStore

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
    response = api.get("/api/reminders/preview", params={"cron": "0 8 * * 1-5"})
    assert response.status_code == 200, response.text
    runs = [datetime.fromisoformat(run) for run in response.json()["next_runs"]]
    assert len(runs) == 3 and runs == sorted(runs)
    assert all(run.hour == 8 and run.minute == 0 and run.isoweekday() <= 5 for run in runs)
    assert all(run.utcoffset() == timedelta(hours=8) for run in runs)

    at = in_a_while(hours=2)
    response = api.get("/api/reminders/preview", params={"at": at, "timezone": "Europe/Paris"})
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
    preview = api.get("/api/reminders/preview", params=params)
    created = api.post("/api/reminders", json={"text": "x", **{k: v for k, v in params.items() if v}})
    assert preview.status_code == 400 and created.status_code == 400
    assert preview.json()["code"] == code == created.json()["code"]
    assert preview.json()["error"] == created.json()["error"]


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
    store = HistoryStore(api.settings.chat_history_file)
    store.append("user", "之后的消息")
    assert next(m for m in store.recent(10) if m["id"] == message["id"])["done_at"] == done["done_at"]


def test_done_survives_a_later_append_by_another_worker_that_had_the_message_cached(tmp_path):
    path = tmp_path / "chat_history.json"
    worker_a, worker_b = HistoryStore(path), HistoryStore(path)
    message = worker_a.append("assistant", "喝水", is_scheduled=True, reminder_id="1", scheduled_for="manual-1")
    worker_a.append("user", "好的")  # worker A now holds the message's encoding from before it was done
    assert worker_b.mark_done(message["id"], "1")["done_at"]
    assert worker_b.mark_done(message["id"], "2") is None and worker_b.mark_done(message["id"] + 1, "1") is None
    worker_a.append("user", "之后")
    assert HistoryStore(path).recent(10)[0]["done_at"]
