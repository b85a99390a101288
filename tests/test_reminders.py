"""Users' reminders: created, changed and deleted through the API, and delivered exactly once under real Gunicorn."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import requests

from history_store import HistoryStore
from reminder_delivery import MAX_SLEEP_SECONDS, ReminderDelivery
from reminders import MAX_REMINDERS, ReminderStore, describe, occurrences_after
from scheduler import leader_pid
from tests.support.client import app_env, main_history
from tests.support.servers import Gunicorn
from tests.support.waiting import wait_until

ZONE = ZoneInfo("Asia/Shanghai")  # app_env's TIMEZONE


def local(moment: datetime) -> str:
    """A naive local `at` in the app's zone."""
    return moment.astimezone(ZONE).replace(tzinfo=None).isoformat(timespec="seconds")


def in_a_while(**delta: float) -> str:
    return local(datetime.now(ZONE) + timedelta(**delta))


def reminder_messages(data_dir: Path, *, streaming_too: bool = False) -> list[dict]:
    """Messages sent for users' reminders, straight from the main conversation's live log.

    One still being worded (`streaming`, its content still growing) counts only with `streaming_too`:
    a wait for "the reminder arrived" must not stop at its first, empty form.
    """
    messages = [m for m in main_history(data_dir).recent(10_000) if m.get("reminder_id")]
    return messages if streaming_too else [m for m in messages if not m.get("streaming")]


def claimed(data_dir: Path) -> list[str]:
    """The ids of the reminders whose occurrences are claimed right now."""
    with contextlib.suppress(FileNotFoundError):
        return [c["reminder_id"] for c in json.loads((data_dir / "reminders.json").read_bytes())["claims"].values()]
    return []


def stored_reminder(reminder_id: str, **fields: object) -> dict:
    """A user reminder as reminders.json holds it: a plain daily one, handled up to now, unless `fields` say else."""
    now = datetime.now(ZONE).isoformat()
    return {
        "id": reminder_id, "text": "x", "at": None, "cron": "0 8 * * *", "timezone": "Asia/Shanghai",
        "enabled": True, "mode": "plain", "created_at": now, "source": "user", "handled_until": now,
        "last_run": None, **fields,
    }  # fmt: skip


def write_reminders(data_dir: Path, reminders: list[dict], claims: dict | None = None) -> None:
    """reminders.json as a server left it (before this test starts one)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    next_id = max((int(r["id"]) for r in reminders), default=0) + 1
    payload = {"version": 1, "next_id": next_id, "reminders": reminders, "claims": claims or {}}
    (data_dir / "reminders.json").write_text(json.dumps(payload))


def assert_once_each(messages: list[dict], count: int) -> None:
    """`count` occurrences delivered, none of them twice."""
    keys = Counter(f"{m['reminder_id']}@{m['scheduled_for']}" for m in messages)
    assert len(keys) == count and set(keys.values()) == {1}, f"doubled: {[k for k, n in keys.items() if n > 1]}"


def reminder_calls(upstream, text: str = "") -> list[dict]:
    """The model calls that asked for a reminder (whose text contains `text`)."""
    return [
        r
        for r in upstream.requests
        if "It is time for a reminder I set" in r["messages"][-1]["content"] and text in r["messages"][-1]["content"]
    ]


# ---- the API -----------------------------------------------------------------------------------


def test_a_reminder_is_created_listed_changed_and_deleted(api):
    at = in_a_while(days=1)
    created = api.post("/api/reminders", json={"text": "吃药", "at": at})
    assert created.status_code == 201, created.text
    reminder = created.json()["reminder"]
    assert reminder["text"] == "吃药" and reminder["at"] == at and reminder["cron"] is None
    assert reminder["timezone"] == "Asia/Shanghai" and reminder["mode"] == "generate" and reminder["enabled"] is True
    assert reminder["source"] == "user" and reminder["last_run"] is None and reminder["done"] is False
    assert reminder["next_runs"] == [datetime.fromisoformat(at).replace(tzinfo=ZONE).isoformat()]

    weekly = api.post("/api/reminders", json={"text": "写周报", "cron": "0 17 * * fri", "timezone": "Europe/Berlin"})
    assert weekly.status_code == 201, weekly.text
    runs = [datetime.fromisoformat(t) for t in weekly.json()["reminder"]["next_runs"]]
    assert len(runs) == 3 and all(t.weekday() == 4 and t.hour == 17 for t in runs)

    listed = api.get("/api/reminders").json()
    assert listed["success"] is True
    assert [r["id"] for r in listed["reminders"]] == ["env", reminder["id"], weekly.json()["reminder"]["id"]]
    assert listed["reminders"][0]["source"] == "env"

    paused = api.session.patch(api.base_url + f"/api/reminders/{reminder['id']}", json={"enabled": False})
    assert paused.status_code == 200, paused.text
    assert paused.json()["reminder"]["enabled"] is False and paused.json()["reminder"]["next_runs"] == []
    moved = api.session.patch(api.base_url + f"/api/reminders/{reminder['id']}", json={"cron": "30 7 * * *"})
    assert moved.json()["reminder"]["at"] is None and moved.json()["reminder"]["cron"] == "30 7 * * *"

    assert api.delete(f"/api/reminders/{reminder['id']}").json() == {"success": True}
    assert api.delete(f"/api/reminders/{reminder['id']}").status_code == 404
    assert [r["id"] for r in api.get("/api/reminders").json()["reminders"]] == ["env", weekly.json()["reminder"]["id"]]
    assert api.get(f"/api/reminders/{reminder['id']}/runs").json()["code"] == "reminder_not_found"


def test_weekdays_1_to_5_are_monday_to_friday(api):
    reminder = api.post("/api/reminders", json={"text": "站会", "cron": "0 9 * * 1-5"}).json()["reminder"]
    after = api.session.patch(
        api.base_url + f"/api/reminders/{reminder['id']}", json={"text": "站会", "timezone": "UTC"}
    ).json()["reminder"]
    for shown in (reminder, after):
        days = {datetime.fromisoformat(t).weekday() for t in shown["next_runs"]}
        assert days <= {0, 1, 2, 3, 4}


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"text": "吃药", "at": "2020-01-01T08:00:00"}, "at_in_past"),
        ({"text": "吃药", "at": "tomorrow"}, "invalid_at"),
        ({"text": "吃药", "at": "9999-12-31T23:00:00", "timezone": "America/New_York"}, "invalid_at"),
        ({"text": "吃药", "at": "0001-01-01T00:00:00"}, "invalid_at"),
        ({"text": "吃药", "at": "2099-01-01T08:00:00+08:00"}, "invalid_at"),
        ({"text": "吃药", "cron": "0 8 * *"}, "invalid_cron"),
        ({"text": "吃药", "cron": "0 25 * * *"}, "invalid_cron"),
        ({"text": "吃药", "cron": "0 8 * * 8"}, "invalid_cron"),
        ({"text": "吃药", "cron": "0 8 * * *", "timezone": "Mars/Olympus"}, "invalid_timezone"),
        ({"text": "吃药", "cron": "0 8 * * *", "at": "2099-01-01T08:00:00"}, "invalid_schedule"),
        ({"text": "吃药"}, "invalid_schedule"),
        ({"text": "  ", "cron": "0 8 * * *"}, "empty_text"),
        ({"cron": "0 8 * * *"}, "missing_text"),
        ({"text": "吃药", "cron": "0 8 * * *", "mode": "loud"}, "invalid_mode"),
        ({"text": "吃药", "cron": "0 8 * * *", "enabled": "yes"}, "invalid_enabled"),
    ],
)
def test_a_bad_reminder_is_refused_with_one_sentence(api, body, code):
    response = api.post("/api/reminders", json=body)
    assert response.status_code == 400, response.text
    error = response.json()
    assert error["success"] is False and error["code"] == code
    assert error["error"].endswith(".") and "\n" not in error["error"] and "Traceback" not in error["error"]
    assert [r["id"] for r in api.get("/api/reminders").json()["reminders"]] == ["env"]


def test_a_schedule_naming_days_no_month_has_is_answered_at_once(api):
    # APScheduler alone searches such a schedule up to the year 9999: about a second per question.
    never = api.post("/api/reminders", json={"text": "对账", "cron": "0 9 31 2 *"})
    assert never.status_code == 400 and never.json()["code"] == "invalid_cron" and "never fires" in never.text
    for _ in range(10):  # the 31st of a short month, or a Monday: only the Mondays ever come
        body = {"text": "对账", "cron": "0 9 31 2,4,6,9,11 1"}
        assert api.session.post(api.base_url + "/api/reminders", json=body, timeout=2).status_code == 201
    listed = api.session.get(api.base_url + "/api/reminders", timeout=2).json()["reminders"]
    runs = [datetime.fromisoformat(t) for r in listed if r["source"] == "user" for t in r["next_runs"]]
    assert len(runs) == 30 and {(t.weekday(), t.hour) for t in runs} == {(0, 9)}


def test_the_env_reminder_is_listed_read_only(serve):
    api = serve(SCHEDULER_ENABLED="true", CRON_HOUR="7", CRON_DAY_OF_WEEK="1-5")  # the election is not started
    env = api.get("/api/reminders").json()["reminders"][0]
    assert env["id"] == "env" and env["source"] == "env" and env["cron"] == "0 0 7 * * 1-5"
    assert env["text"] == api.settings.scheduled_message_prompt and env["enabled"] is True
    assert len(env["next_runs"]) == 3
    assert {datetime.fromisoformat(t).weekday() for t in env["next_runs"]} <= {0, 1, 2, 3, 4}
    for response in (
        api.session.patch(api.base_url + "/api/reminders/env", json={"enabled": False}),
        api.delete("/api/reminders/env"),
    ):
        assert response.status_code == 409
        assert response.json()["code"] == "reminder_read_only" and ".env" in response.json()["error"]
    assert api.session.patch(api.base_url + "/api/reminders/42", json={"enabled": False}).status_code == 404


def test_run_now_sends_once_and_logs_it(api, upstream):
    reminder = api.post("/api/reminders", json={"text": "喝水", "cron": "0 8 * * *"}).json()["reminder"]
    sent = api.post(f"/api/reminders/{reminder['id']}/run", json={})
    assert sent.status_code == 200, sent.text
    message = sent.json()["message"]
    assert message["is_scheduled"] is True and message["reminder_id"] == reminder["id"]
    assert message["generated"] is True and "喝水" in message["content"]
    assert sent.json()["reminder"]["last_run"]["status"] == "ok"
    assert len(reminder_calls(upstream, "喝水")) == 1

    upstream.script(*[{"kind": "status", "status": 500, "body": {"error": {"message": "down"}}}] * 4)
    failed = api.post(f"/api/reminders/{reminder['id']}/run", json={}).json()
    assert failed["message"]["content"] == "喝水" and failed["message"]["generated"] is False
    last_run = failed["reminder"]["last_run"]
    assert last_run["status"] == "failed" and "HTTP 500" in last_run["error"]
    runs = api.get(f"/api/reminders/{reminder['id']}/runs").json()["runs"]
    assert [run["status"] for run in runs] == ["failed", "ok"]


def test_the_history_keeps_one_message_per_occurrence(tmp_path):
    store = HistoryStore(tmp_path / "main.jsonl", timezone="Asia/Shanghai")
    tick = "2026-11-26T08:00:00+08:00"
    first = store.append("assistant", "吃药", is_scheduled=True, reminder_id="1", scheduled_for=tick)
    again = store.append("assistant", "吃药!", is_scheduled=True, reminder_id="1", scheduled_for=tick)
    other = store.append("assistant", "喝水", is_scheduled=True, reminder_id="2", scheduled_for=tick)
    env = store.append("assistant", "早安", is_scheduled=True, scheduled_for=tick)  # the .env reminder's tick
    assert again == first
    assert [m["content"] for m in store.recent(10)] == ["吃药", "喝水", "早安"]
    assert store.find_scheduled(tick, "2") == other and store.find_scheduled(tick) == env


# ---- delivery under Gunicorn -------------------------------------------------------------------


def gunicorn(upstream, tmp_path: Path, workers: int, **env: str) -> Gunicorn:
    """Gunicorn with reminders on (the .env reminder set to a time that never comes during a test)."""
    data_dir = tmp_path / "data"
    environment = app_env(
        upstream,
        data_dir,
        **{"SCHEDULER_ENABLED": "true", "CRON_MONTH": "2", "CRON_DAY": "29", "DOTENV_PATH": str(tmp_path / "no.env")},
        **env,
    )
    args = ["-w", str(workers), "-k", "gthread", "--threads", "4", "-b", "127.0.0.1:{port}", "--graceful-timeout", "5"]
    server = Gunicorn(environment, args, tmp_path / "gunicorn.log")
    server.args = [arg.replace("{port}", str(server.port)) for arg in args]
    return server


def create(server: Gunicorn, **body: object) -> dict:
    response = requests.post(server.base_url + "/api/reminders", json=body, timeout=10)
    assert response.status_code == 201, response.text
    return response.json()["reminder"]


def listed(server: Gunicorn) -> dict[str, dict]:
    reminders = requests.get(server.base_url + "/api/reminders", timeout=10).json()["reminders"]
    return {r["id"]: r for r in reminders}


def test_a_reminder_set_on_one_worker_arrives_once_on_time(upstream, tmp_path):
    data_dir = tmp_path / "data"
    with gunicorn(upstream, tmp_path, workers=3) as server:
        wait_until(lambda: leader_pid(data_dir), 15, message="a leader")
        due = datetime.now(ZONE).replace(microsecond=0) + timedelta(seconds=6)
        reminder = create(server, text="关火", at=local(due))
        sent = wait_until(lambda: reminder_messages(data_dir), 30, message="the reminder")
        arrived = time.time()
        shown = wait_until(lambda: listed(server)[reminder["id"]]["last_run"] and listed(server)[reminder["id"]], 10)
        time.sleep(1.5)  # nothing more may come (not a timing check: a double would be stored meanwhile)
    assert len(reminder_messages(data_dir)) == 1 and len(reminder_calls(upstream, "关火")) == 1
    assert sent[0]["scheduled_for"] == due.isoformat() and sent[0]["generated"] is True and "late" not in sent[0]
    # Loose on purpose (a loaded machine is slow); polling at MAX_SLEEP_SECONDS would take minutes.
    assert 0 <= arrived - due.timestamp() < 15, f"arrived {arrived - due.timestamp():.2f} s after its time"
    assert shown["done"] is True and shown["next_runs"] == [] and shown["last_run"]["status"] == "ok"


def test_twenty_reminders_due_together_survive_a_kill_9_of_the_leader(upstream, tmp_path):
    data_dir = tmp_path / "data"
    with gunicorn(upstream, tmp_path, workers=4) as server:
        leader = wait_until(lambda: leader_pid(data_dir), 15, message="a leader")
        due = datetime.now(ZONE).replace(microsecond=0) + timedelta(seconds=6)
        for number in range(20):
            create(server, text=f"第{number}件事", at=local(due))
        # Each model call takes a moment, so the kill lands while the twenty are being sent.
        upstream.script(*[{"delay": 0.1}] * 40)
        wait_until(lambda: reminder_messages(data_dir), 30, interval=0.005, message="the first reminder")
        os.kill(leader, signal.SIGKILL)
        sent_before_kill = len(reminder_messages(data_dir))
        wait_until(lambda: len(reminder_messages(data_dir)) >= 20, 30, message="twenty reminders")
        new_leader = leader_pid(data_dir)
        time.sleep(2)  # a double would come now
        messages = reminder_messages(data_dir, streaming_too=True)
        claims = json.loads((data_dir / "reminders.json").read_bytes())["claims"]
    assert new_leader != leader
    assert_once_each(messages, 20)
    assert {m["scheduled_for"] for m in messages} == {due.isoformat()}
    assert claims == {}
    calls = len(reminder_calls(upstream))
    # Only an occurrence cut off mid-call by the kill may be asked for twice.
    assert 20 <= calls <= 21, f"{calls} model calls for 20 reminders"
    print(f"\n20 due at once, leader killed after {sent_before_kill}: 20 messages, {calls} model calls")


def test_an_occurrence_cut_off_by_killing_every_process_is_sent_after_the_restart(upstream, tmp_path):
    data_dir = tmp_path / "data"
    short_grace = {"MISFIRE_GRACE_SECONDS": "2"}  # the restart comes after it: only a claim can bring one back
    # All three are claimed together before the first is sent, so none of them can be lost.
    server = gunicorn(upstream, tmp_path, workers=2, **short_grace).start()
    try:
        wait_until(lambda: leader_pid(data_dir), 15, message="a leader")
        due = datetime.now(ZONE).replace(microsecond=0) + timedelta(seconds=6)
        for text in ("第一件", "第二件", "第三件"):
            create(server, text=text, at=local(due))
        upstream.script({}, {"delay": 10.0})  # the second is still with the model when everything dies
        wait_until(lambda: len(reminder_calls(upstream)) == 2, 20, interval=0.005, message="the second call")
        os.killpg(server.pid, signal.SIGKILL)
    finally:
        server.stop()
    assert [m["content"] for m in reminder_messages(data_dir, streaming_too=True)] == [
        "收到：" + reminder_calls(upstream)[0]["messages"][-1]["content"]
    ]
    wait_until(lambda: time.time() > due.timestamp() + 3, 10, message="the grace time to pass")

    with gunicorn(upstream, tmp_path, workers=2, **short_grace) as server:
        shown = wait_until(
            lambda: (found := listed(server)) and all(r["last_run"] for k, r in found.items() if k != "env") and found,
            20,
            message="every reminder handled",
        )
        time.sleep(1)
    messages = reminder_messages(data_dir, streaming_too=True)
    assert [m["reminder_id"] for m in messages] == ["1", "2", "3"], "a reminder claimed before the kill was lost"
    # Sent seconds after their time by the next server: on time, not `late` (that means over 30 s).
    assert [m.get("late", False) for m in messages] == [False, False, False]
    assert shown["3"]["last_run"]["status"] == "ok"  # claimed before the kill, so not missed however long ago
    assert json.loads((data_dir / "reminders.json").read_bytes())["claims"] == {}


def test_an_occurrence_missed_while_no_server_ran_is_sent_once_late(upstream, tmp_path):
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    now = datetime.now(ZONE).replace(microsecond=0)
    missed = now - timedelta(seconds=90)  # within MISFIRE_GRACE_SECONDS (300 s), past LATE_AFTER_SECONDS
    every_hour = stored_reminder(
        "7",
        text="伸个懒腰",
        cron=f"{missed.minute} * * * *",  # hourly at missed's minute: one occurrence fell in the gap
        mode="generate",
        # Handled up to three hours ago: two earlier occurrences fell too, longer ago than the grace time.
        handled_until=(now - timedelta(hours=3)).isoformat(),
    )
    write_reminders(data_dir, [every_hour])
    with gunicorn(upstream, tmp_path, workers=2) as server:
        sent = wait_until(lambda: reminder_messages(data_dir), 20, message="the late reminder")
        shown = wait_until(lambda: listed(server)["7"]["last_run"] and listed(server)["7"], 10, message="last run")
        time.sleep(1.5)  # a second message (a burst) would be stored meanwhile
    scheduled_for = missed.replace(second=0)
    assert [m["scheduled_for"] for m in reminder_messages(data_dir)] == [scheduled_for.isoformat()]
    assert sent[0]["late"] is True
    assert shown["last_run"]["status"] == "ok" and shown["last_run"]["late"] is True
    assert len(reminder_calls(upstream)) == 1


def test_an_occurrence_missed_longer_ago_than_the_grace_time_is_recorded_as_missed(upstream, tmp_path):
    data_dir = tmp_path / "data"
    missed = datetime.now(ZONE).replace(second=0, microsecond=0) - timedelta(minutes=10)  # MISFIRE_GRACE_SECONDS: 300
    before = (missed - timedelta(minutes=1)).isoformat()
    hourly = stored_reminder("7", cron=f"{missed.minute} * * * *", handled_until=before)
    write_reminders(data_dir, [hourly])
    with gunicorn(upstream, tmp_path, workers=2) as server:
        shown = wait_until(lambda: listed(server)["7"]["last_run"], 20, message="the missed occurrence recorded")
        runs = requests.get(server.base_url + "/api/reminders/7/runs", timeout=10).json()["runs"]
    assert shown["status"] == "missed" and shown["scheduled_for"] == missed.isoformat()
    assert "not running" in shown["error"]
    assert [run["status"] for run in runs] == ["missed"]
    assert reminder_messages(data_dir, streaming_too=True) == []


def test_a_claim_left_by_a_dead_leader_is_delivered_once(upstream, tmp_path):
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    now = datetime.now(ZONE).replace(microsecond=0)
    scheduled_for = (now - timedelta(seconds=5)).isoformat()
    # Claimed: the dead leader moved the cursor (this file's format before one-offs were marked `done`), then died.
    reminder = stored_reminder(
        "1", text="取快递", at=(now - timedelta(seconds=5)).replace(tzinfo=None).isoformat(), cron=None,
        handled_until=scheduled_for,
    )  # fmt: skip
    claim = {"reminder_id": "1", "scheduled_for": scheduled_for, "late": False}
    write_reminders(data_dir, [reminder], {f"1@{scheduled_for}": claim})
    with gunicorn(upstream, tmp_path, workers=2) as server:
        wait_until(lambda: listed(server)["1"]["last_run"], 20, message="the claimed reminder")
        time.sleep(1)
    messages = reminder_messages(data_dir, streaming_too=True)
    assert [(m["content"], m["scheduled_for"], m["generated"]) for m in messages] == [("取快递", scheduled_for, False)]
    assert json.loads((data_dir / "reminders.json").read_bytes())["claims"] == {}


def test_when_the_model_fails_the_reminder_still_arrives_with_its_text(upstream, tmp_path):
    data_dir = tmp_path / "data"
    failing = {"kind": "status", "status": 503, "body": {"error": {"message": "overloaded"}}}
    with gunicorn(upstream, tmp_path, workers=2) as server:
        wait_until(lambda: leader_pid(data_dir), 15, message="a leader")
        upstream.script(*[failing] * 10)
        reminder = create(server, text="给妈妈打电话", at=in_a_while(seconds=6))
        sent = wait_until(lambda: reminder_messages(data_dir), 20, message="the reminder")
        shown = wait_until(lambda: listed(server)[reminder["id"]]["last_run"], 10, message="its last run")
    assert sent[0]["content"] == "给妈妈打电话" and sent[0]["generated"] is False
    assert shown["status"] == "failed" and shown["error"].startswith("HTTP 503")
    assert shown["message_id"] == sent[0]["id"]


def test_a_deleted_or_paused_reminder_does_not_fire(upstream, tmp_path):
    data_dir = tmp_path / "data"
    with gunicorn(upstream, tmp_path, workers=2) as server:
        wait_until(lambda: leader_pid(data_dir), 15, message="a leader")
        due = in_a_while(seconds=6)
        deleted = create(server, text="不该出现一", at=due)
        paused = create(server, text="不该出现二", at=due)
        kept = create(server, text="应该出现", at=due)
        assert requests.delete(f"{server.base_url}/api/reminders/{deleted['id']}", timeout=10).status_code == 200
        changed = requests.patch(f"{server.base_url}/api/reminders/{paused['id']}", json={"enabled": False}, timeout=10)
        assert changed.status_code == 200
        wait_until(lambda: reminder_messages(data_dir), 20, message="the kept reminder")
        time.sleep(1.5)
    assert [m["reminder_id"] for m in reminder_messages(data_dir)] == [kept["id"]]


# ---- schedules around daylight saving, and the store's own rules ------------------------------------------

NEW_YORK = ZoneInfo("America/New_York")  # clocks go back 2027-11-07 02:00 → 01:00, forward 2027-03-14 02:00 → 03:00


def step_through(store: ReminderStore, start: datetime, hours: float, every_minutes: float = 5) -> list[str]:
    """Claim due occurrences at every step from `start` for `hours`, as the leader would; the keys claimed."""
    keys: list[str] = []
    moment = start = start.astimezone(UTC)  # stepping in UTC: arithmetic on a zone's datetimes is wall-clock
    while moment < start + timedelta(hours=hours):
        claimed, _ = store.claim_due(moment, grace=3600)
        keys += [occurrence.key for occurrence, _ in claimed]
        moment += timedelta(minutes=every_minutes)
    return keys


def new_york_store(tmp_path: Path, cron: str) -> ReminderStore:
    store = ReminderStore(tmp_path, "America/New_York")
    store.create({"text": "药", "cron": cron}, datetime.now(NEW_YORK))
    store.claim_due(datetime(2027, 11, 6, 12, tzinfo=NEW_YORK), grace=3600)  # the months before: missed, once
    return store


def test_a_daily_time_repeated_when_clocks_go_back_fires_once(tmp_path):
    keys = step_through(new_york_store(tmp_path, "30 1 * * *"), datetime(2027, 11, 6, 12, tzinfo=NEW_YORK), 48)
    assert keys == ["1@2027-11-07T01:30:00-04:00", "1@2027-11-08T01:30:00-05:00"]


def test_a_frequent_schedule_moves_forward_through_the_repeated_hour(tmp_path):
    keys = step_through(new_york_store(tmp_path, "*/20 * * * *"), datetime(2027, 11, 7, 0, tzinfo=NEW_YORK), 4, 1)
    instants = [datetime.fromisoformat(key.split("@")[1]) for key in keys]
    assert instants == sorted(set(instants)), "an occurrence repeated or went back"
    # 00:00 … 01:40 EDT, then the repeated hour's wall times are not fired again, then 02:00 … 02:40 EST.
    assert [key.split("T")[1] for key in keys] == [
        *(f"0{h}:{m:02d}:00-04:00" for h in (0, 1) for m in (0, 20, 40)),
        *(f"02:{m:02d}:00-05:00" for m in (0, 20, 40)),
    ]


def test_a_time_skipped_when_clocks_go_forward_fires_at_the_jump(tmp_path):
    store = ReminderStore(tmp_path, "America/New_York")
    store.create({"text": "药", "cron": "30 2 * * *"}, datetime.now(NEW_YORK))
    store.claim_due(datetime(2027, 3, 13, 12, tzinfo=NEW_YORK), grace=3600)
    keys = step_through(store, datetime(2027, 3, 13, 12, tzinfo=NEW_YORK), 48)
    assert keys == ["1@2027-03-14T03:00:00-04:00", "1@2027-03-15T02:30:00-04:00"]


@pytest.mark.parametrize(
    ("cron", "zone", "start", "expected"),
    [
        # A whole skipped hour of quarter-hours: one fire at the jump, then the next night's four.
        ("*/15 2 * * *", "Europe/Berlin", "2027-03-28T00:00",
         ["2027-03-28T03:00:00+02:00", "2027-03-29T02:00:00+02:00"]),
        # Times skipped and times after the jump: the skipped ones fire once, at the jump, the rest as usual.
        ("10,45 2,3 * * *", "Europe/Berlin", "2027-03-28T00:00",
         ["2027-03-28T03:00:00+02:00", "2027-03-28T03:10:00+02:00", "2027-03-28T03:45:00+02:00"]),
        # Lord Howe Island goes forward by 30 minutes.
        ("0,15 2 * * *", "Australia/Lord_Howe", "2026-10-04T00:00",
         ["2026-10-04T02:30:00+11:00", "2026-10-05T02:00:00+11:00"]),
        # Samoa skipped 30 December 2011 whole.
        ("0 12 * * *", "Pacific/Apia", "2011-12-29T00:00",
         ["2011-12-29T12:00:00-10:00", "2011-12-31T00:00:00+14:00", "2011-12-31T12:00:00+14:00"]),
    ],
)  # fmt: skip
def test_the_times_a_forward_jump_skips_fire_once_at_the_jump_in_order(cron, zone, start, expected):
    reminder = {"at": None, "cron": cron, "timezone": zone}
    begin = datetime.fromisoformat(start).replace(tzinfo=ZoneInfo(zone))
    together = occurrences_after(reminder, begin, len(expected))
    one_by_one = [begin]
    for _ in expected:  # as the leader asks, from each fire time claimed
        one_by_one += occurrences_after(reminder, one_by_one[-1], 1)
    assert [t.astimezone(ZoneInfo(zone)).isoformat() for t in together] == expected
    assert together == one_by_one[1:]


def test_a_one_off_at_a_skipped_time_fires_at_the_jump():
    reminder = {"at": "2027-03-14T02:30:00", "cron": None, "timezone": "America/New_York"}
    (fire,) = occurrences_after(reminder, datetime(2027, 3, 13, tzinfo=UTC), 1)
    assert fire.astimezone(NEW_YORK).isoformat() == "2027-03-14T03:00:00-04:00"


def test_the_env_reminder_moves_forward_through_both_daylight_saving_nights(make_settings):
    trigger = make_settings(TIMEZONE="America/New_York", CRON_HOUR="1,2", CRON_MINUTE="30").cron_trigger()
    fires = []
    for start in (datetime(2027, 3, 13, 12, tzinfo=NEW_YORK), datetime(2027, 11, 6, 12, tzinfo=NEW_YORK)):
        fires.append(trigger.get_next_fire_time(None, start))
        for _ in range(3):  # as APScheduler asks after each run; its own trigger answers 01:30 again and again
            fires.append(trigger.get_next_fire_time(fires[-1], fires[-1]))
    assert [f.isoformat() for f in fires] == [
        "2027-03-14T01:30:00-05:00", "2027-03-14T03:00:00-04:00", "2027-03-15T01:30:00-04:00",
        "2027-03-15T02:30:00-04:00",
        "2027-11-07T01:30:00-04:00", "2027-11-07T02:30:00-05:00", "2027-11-08T01:30:00-05:00",
        "2027-11-08T02:30:00-05:00",
    ]  # fmt: skip


def test_day_of_month_and_weekday_both_set_fire_on_either_as_in_crontab(api):
    reminder = api.post("/api/reminders", json={"text": "对账", "cron": "0 9 13 * 5"}).json()["reminder"]
    stored = ReminderStore(api.settings.data_dir, "Asia/Shanghai").get(reminder["id"])
    runs = [t.astimezone(ZONE) for t in occurrences_after(stored, datetime.now(ZONE), 12)]
    assert all(t.day == 13 or t.weekday() == 4 for t in runs)
    assert any(t.day == 13 and t.weekday() != 4 for t in runs) and any(t.weekday() == 4 and t.day != 13 for t in runs)


def test_a_resume_with_a_stale_clock_never_fires_a_claimed_occurrence_again(tmp_path):
    store = ReminderStore(tmp_path, "Asia/Shanghai")
    store.create({"text": "站起来", "cron": "* * * * *"}, datetime.now(ZONE))
    soon = datetime.now(ZONE).replace(second=0, microsecond=0) + timedelta(minutes=2)
    stale = datetime.now(ZONE)  # a request's clock, read before the leader's claim below
    first, _ = store.claim_due(soon, grace=60)
    store.update("1", {"enabled": False}, stale)
    store.update("1", {"enabled": True}, stale)
    again, _ = store.claim_due(soon, grace=60)
    assert [o.key for o, _ in first] and not again, "the claimed occurrence was claimed twice"


def test_changing_the_zone_of_a_sent_one_off_does_not_send_it_again(tmp_path):
    store = ReminderStore(tmp_path, "Asia/Shanghai")
    at = datetime.now(ZONE).replace(microsecond=0) + timedelta(hours=1)
    store.create({"text": "开会", "at": local(at)}, datetime.now(ZONE))
    sent, _ = store.claim_due(at + timedelta(seconds=1), grace=60)
    assert len(sent) == 1
    moved = store.update("1", {"timezone": "America/New_York"}, datetime.now(ZONE))  # `at` is now 13 h later
    assert describe(moved, datetime.now(ZONE))["done"] is True
    assert store.claim_due(at + timedelta(hours=14), grace=86400)[0] == []


def test_a_sent_one_off_moved_to_another_zone_still_fires_when_given_a_new_time(tmp_path):
    store = ReminderStore(tmp_path, "Asia/Shanghai")
    at = datetime.now(ZONE).replace(microsecond=0) + timedelta(hours=1)
    store.create({"text": "开会", "at": local(at)}, datetime.now(ZONE))
    assert len(store.claim_due(at + timedelta(seconds=1), grace=60)[0]) == 1
    store.update("1", {"timezone": "America/New_York"}, datetime.now(ZONE))  # its `at` there is 13 h later
    new_at = (at + timedelta(hours=2)).astimezone(NEW_YORK).replace(tzinfo=None).isoformat()
    assert describe(store.update("1", {"at": new_at}, datetime.now(ZONE)), datetime.now(ZONE))["done"] is False
    assert [o.key for o, _ in store.claim_due(at + timedelta(hours=2, seconds=1), grace=60)[0]] == [
        f"1@{(at + timedelta(hours=2)).astimezone(NEW_YORK).isoformat()}"
    ]
    store.update("1", {"cron": "* * * * *"}, datetime.now(ZONE))  # and as a recurring one, every minute from then
    assert len(store.claim_due(at + timedelta(hours=2, minutes=1, seconds=1), grace=60)[0]) == 1


def test_a_one_off_whose_cursor_an_older_version_put_ahead_still_fires_when_given_a_new_time(tmp_path):
    now = datetime.now(ZONE).replace(microsecond=0)
    legacy = stored_reminder(  # sent, then moved to a zone where its `at` is later: the old code's future cursor
        "1", cron=None, at=local(now - timedelta(minutes=1)), handled_until=(now + timedelta(hours=10)).isoformat()
    )
    write_reminders(tmp_path, [legacy])
    store = ReminderStore(tmp_path, "Asia/Shanghai")
    new_at = now + timedelta(hours=1)
    store.update("1", {"at": local(new_at)}, datetime.now(ZONE))
    assert [o.key for o, _ in store.claim_due(new_at + timedelta(seconds=1), grace=60)[0]] == [
        f"1@{new_at.isoformat()}"
    ]


def test_a_claim_refused_writes_nothing(tmp_path):
    store = ReminderStore(tmp_path, "Asia/Shanghai")
    store.create({"text": "喝水", "cron": "0 8 * * *"}, datetime.now(ZONE))
    before = os.stat(store.path).st_mtime_ns, os.stat(store.path).st_ino
    assert store.claim_due(datetime.now(ZONE), grace=60) == ([], [])
    assert (os.stat(store.path).st_mtime_ns, os.stat(store.path).st_ino) == before


@pytest.mark.parametrize(
    ("text", "code"),
    [("\\ud800 吃药", "invalid_text"), ("药" * 101, "text_too_long")],
)
def test_reminder_text_is_checked_like_a_chat_message(serve, text, code):
    api = serve(MAX_MESSAGE_CHARS="100")
    body = '{"text": "' + text + '", "cron": "0 8 * * *"}'  # as sent, so "\\ud800" stays a lone surrogate
    response = api.session.post(
        api.base_url + "/api/reminders", data=body.encode(), headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400, response.text
    assert response.json()["code"] == code
    assert api.get("/api/reminders").status_code == 200


def test_the_number_of_reminders_is_capped(api):
    store = ReminderStore(api.settings.data_dir, "Asia/Shanghai")
    write_reminders(store.path.parent, [stored_reminder(str(n)) for n in range(1, MAX_REMINDERS + 1)])
    refused = api.post("/api/reminders", json={"text": "再一个", "cron": "0 9 * * *"})
    assert refused.status_code == 409 and refused.json()["code"] == "too_many_reminders"
    api.delete("/api/reminders/1")
    assert api.post("/api/reminders", json={"text": "再一个", "cron": "0 9 * * *"}).status_code == 201


def test_reminders_due_together_are_all_sent_when_the_model_is_slow(upstream, tmp_path):
    data_dir = tmp_path / "data"
    slow = {"MISFIRE_GRACE_SECONDS": "2", "READ_TIMEOUT": "10"}
    with gunicorn(upstream, tmp_path, workers=2, **slow) as server:
        wait_until(lambda: leader_pid(data_dir), 15, message="a leader")
        upstream.script(*[{"delay": 3.0}] * 3)  # each wording takes longer than the grace time
        due = in_a_while(seconds=6)
        for text in ("一", "二", "三"):
            create(server, text=text, at=due)
        wait_until(lambda: len(reminder_messages(data_dir)) == 3, 40, message="three reminders")
        shown = wait_until(
            lambda: all(r["last_run"] for k, r in listed(server).items() if k != "env") and listed(server), 10
        )
    assert [r["last_run"]["status"] for k, r in sorted(shown.items()) if k != "env"] == ["ok", "ok", "ok"]


def test_one_broken_reminder_does_not_stop_the_others(upstream, tmp_path):
    data_dir = tmp_path / "data"
    a_minute_ago = (datetime.now(ZONE) - timedelta(minutes=1)).isoformat()
    broken = stored_reminder("1", text="坏的", cron="* * * * *", timezone="Mars/Olympus", handled_until=a_minute_ago)
    good = {**broken, "id": "2", "text": "好的", "timezone": "Asia/Shanghai"}
    write_reminders(data_dir, [broken, good])
    with gunicorn(upstream, tmp_path, workers=2):
        sent = wait_until(lambda: reminder_messages(data_dir), 30, message="the good reminder")
    assert [m["content"] for m in sent] == ["好的"]
    assert "Reminder 1 cannot be scheduled" in (tmp_path / "gunicorn.log").read_text()


def test_a_reminder_due_while_the_leader_is_busy_sending_is_late_not_missed(upstream, tmp_path):
    data_dir = tmp_path / "data"
    with gunicorn(upstream, tmp_path, workers=2, MISFIRE_GRACE_SECONDS="1", READ_TIMEOUT="10") as server:
        wait_until(lambda: leader_pid(data_dir), 15, message="a leader")
        upstream.script({"delay": 5.0}, {"delay": 0})  # the first wording outlasts the grace time and the second's time
        first = datetime.now(ZONE).replace(microsecond=0) + timedelta(seconds=6)
        create(server, text="一", at=local(first))
        create(server, text="二", at=local(first + timedelta(seconds=2)))
        wait_until(lambda: len(reminder_messages(data_dir)) == 2, 40, message="both reminders")
        shown = wait_until(lambda: listed(server)["2"]["last_run"] and listed(server), 10)
    assert [shown[k]["last_run"]["status"] for k in ("1", "2")] == ["ok", "ok"], shown["2"]["last_run"]


def test_a_claim_whose_sending_keeps_failing_is_recorded_and_does_not_block_the_rest(upstream, tmp_path):
    data_dir = tmp_path / "data"
    a_minute_ago = datetime.now(ZONE).replace(microsecond=0) - timedelta(minutes=1)
    broken = stored_reminder("1", text="坏的")
    del broken["mode"]  # edited by hand; sending it raises, again and again
    good = stored_reminder("2", text="好的", cron="* * * * *", handled_until=a_minute_ago.isoformat())
    due_broken = {**good, "id": "3", "text": "也坏的"}
    del due_broken["mode"]  # falling due: its checks fail before it is claimed
    key = f"1@{a_minute_ago.isoformat()}"
    claim = {"reminder_id": "1", "scheduled_for": a_minute_ago.isoformat(), "late": False}
    write_reminders(data_dir, [broken, good, due_broken], {key: claim})  # the claim left by a leader that died
    with gunicorn(upstream, tmp_path, workers=2) as server:
        sent = wait_until(lambda: reminder_messages(data_dir), 30, message="the good reminder")
        failed = wait_until(lambda: listed(server)["1"]["last_run"], 30, message="the broken one's failure")
        refused = wait_until(lambda: listed(server)["3"]["last_run"], 10, message="the due broken one's failure")
        assert claimed(data_dir) == []
    assert [m["content"] for m in sent] == ["好的"]
    assert failed["status"] == "failed" and "internal error (KeyError)" in failed["error"]
    assert refused["status"] == "failed" and '"mode" must be' in refused["error"]


def test_a_reminder_due_while_the_leader_was_suspended_counts_as_missed(upstream, tmp_path):
    data_dir = tmp_path / "data"
    with gunicorn(upstream, tmp_path, workers=2, MISFIRE_GRACE_SECONDS="2") as server:
        leader = wait_until(lambda: leader_pid(data_dir), 15, message="a leader")
        time.sleep(3)  # the leader has run longer than the grace time
        due = datetime.now(ZONE).replace(microsecond=0) + timedelta(seconds=3)
        create(server, text="站起来", at=local(due), mode="plain")
        os.kill(leader, signal.SIGSTOP)  # as a laptop's suspend or a stalled VM would
        try:
            wait_until(lambda: datetime.now(ZONE) > due + timedelta(seconds=4), 15)
        finally:
            os.kill(leader, signal.SIGCONT)
        shown = wait_until(lambda: listed(server)["1"]["last_run"], 15, message="the occurrence recorded")
    assert shown["status"] == "missed" and reminder_messages(data_dir, streaming_too=True) == []


def test_an_unreadable_delivery_log_is_set_aside_and_delivery_goes_on(upstream, tmp_path):
    data_dir = tmp_path / "data"
    a_minute_ago = (datetime.now(ZONE) - timedelta(minutes=1)).isoformat()
    write_reminders(data_dir, [stored_reminder("1", text="喝水", cron="* * * * *", handled_until=a_minute_ago)])
    (data_dir / "reminder_runs.json").write_text("{not json")
    with gunicorn(upstream, tmp_path, workers=2) as server:
        wait_until(lambda: reminder_messages(data_dir), 30, message="the reminder")
        shown = wait_until(lambda: listed(server)["1"]["last_run"], 10, message="its outcome")
    assert shown["status"] == "ok" and claimed(data_dir) == []
    assert [path.name.split(".corrupt-")[0] for path in data_dir.glob("*.corrupt-*")] == ["reminder_runs.json"]


def test_a_run_on_request_left_claimed_by_an_old_version_is_cleared(upstream, tmp_path):
    data_dir = tmp_path / "data"
    key = f"1@manual-{datetime.now(ZONE).isoformat()}"
    claim = {"reminder_id": "1", "scheduled_for": key.split("@")[1], "late": False}
    write_reminders(data_dir, [stored_reminder("1")], {key: claim})
    with gunicorn(upstream, tmp_path, workers=1):
        wait_until(lambda: claimed(data_dir) == [], 20, message="the orphaned claim removed")
    assert reminder_messages(data_dir, streaming_too=True) == []


def test_reminders_due_during_a_hup_reload_arrive_once_each(upstream, tmp_path):
    data_dir = tmp_path / "data"
    with gunicorn(upstream, tmp_path, workers=2) as server:
        leader = wait_until(lambda: leader_pid(data_dir), 15, message="a leader")
        due = datetime.now(ZONE).replace(microsecond=0) + timedelta(seconds=6)
        for number in range(10):
            create(server, text=f"第{number}件", at=local(due))
        upstream.script(*[{"delay": 0.3}] * 20)  # the reload lands while the ten are being sent
        wait_until(lambda: reminder_messages(data_dir), 30, interval=0.005, message="the first reminder")
        os.kill(server.pid, signal.SIGHUP)  # Gunicorn replaces every worker, the leader among them
        wait_until(lambda: len(reminder_messages(data_dir)) >= 10, 40, message="ten reminders")
        wait_until(lambda: claimed(data_dir) == [], 20, message="every claim finished")
        new_leader = wait_until(lambda: leader_pid(data_dir), 15, message="a leader after the reload")
        time.sleep(1.5)  # a double would be stored meanwhile
        messages = reminder_messages(data_dir, streaming_too=True)
    assert new_leader != leader
    assert_once_each(messages, 10)


def test_the_leader_sleeps_until_the_next_reminder_instead_of_polling(tmp_path):
    store = ReminderStore(tmp_path, "Asia/Shanghai")
    settings = type("Settings", (), {"timezone": "Asia/Shanghai", "misfire_grace_seconds": 300})()
    delivery = ReminderDelivery(settings, None, store)  # type: ignore[arg-type]  # nothing is due: nothing sent
    assert delivery._deliver_due() == MAX_SLEEP_SECONDS  # nothing scheduled: only the safety net
    store.create({"text": "喝水", "at": in_a_while(seconds=100)}, datetime.now(ZONE))
    assert 90 < delivery._deliver_due() <= 100


def test_a_three_minute_stop_gives_one_late_message_per_reminder_not_a_burst(upstream, tmp_path):
    """The issue's own drill, in real time: the server is down for three minutes while two reminders fall due."""
    data_dir = tmp_path / "data"
    with gunicorn(upstream, tmp_path, workers=2) as server:
        wait_until(lambda: leader_pid(data_dir), 15, message="a leader")
        stopped_at = datetime.now(ZONE)
        one_off = create(server, text="关窗", at=local(stopped_at + timedelta(seconds=60)))
        # Hourly at two minutes that pass during the stop: 10 s after it at the earliest, 50 s before the restart.
        minutes = sorted({(stopped_at + timedelta(seconds=s)).minute for s in (70, 130)})
        twice = create(server, text="活动一下", cron=f"{','.join(map(str, minutes))} * * * *")
    wait_until(lambda: datetime.now(ZONE) > stopped_at + timedelta(minutes=3), 200, interval=1, message="3 minutes")
    assert reminder_messages(data_dir, streaming_too=True) == []
    with gunicorn(upstream, tmp_path, workers=2) as server:
        wait_until(lambda: len(reminder_messages(data_dir)) >= 2, 30, message="the two missed reminders")
        time.sleep(2)  # a burst of the other missed occurrence would be stored meanwhile
        messages = reminder_messages(data_dir, streaming_too=True)
    assert Counter(m["reminder_id"] for m in messages) == {one_off["id"]: 1, twice["id"]: 1}
    assert all(m["late"] is True for m in messages)


def test_a_day_field_starting_with_a_star_does_not_make_either_day(tmp_path):
    store = ReminderStore(tmp_path, "Asia/Shanghai")
    store.create({"text": "x", "cron": "0 8 */2 * 1"}, datetime.now(ZONE))  # crontab: odd days that are Mondays
    runs = [t.astimezone(ZONE) for t in occurrences_after(store.get("1"), datetime.now(ZONE), 6)]
    assert all(t.weekday() == 0 and t.day % 2 == 1 for t in runs)
