"""Reminders fire exactly once per tick under real Gunicorn, through kills, reloads and restarts."""

from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import requests

from app import create_app
from config import DEFAULT_SCHEDULED_PROMPT, ConfigError, load_settings
from scheduler import leader_pid
from tests.support.client import app_env, main_history
from tests.support.fake_upstream import API_KEY
from tests.support.servers import ROOT, Gunicorn, free_port, stop_process_group, wait_until_healthy
from tests.support.waiting import wait_until

EVERY_SECOND = {"SCHEDULER_ENABLED": "true", "CRON_SECOND": "*", "CRON_MINUTE": "*", "CRON_HOUR": "*"}


def scheduled(data_dir: Path) -> list[dict]:
    """Scheduled messages straight from the main conversation's live log."""
    return [m for m in main_history(data_dir).recent(10_000) if m.get("is_scheduled")]


def reminder_calls(upstream) -> list[dict]:
    """The requests that asked the model for a reminder."""
    return [r for r in upstream.requests if r["messages"][-1]["content"] == DEFAULT_SCHEDULED_PROMPT]


def ticks(data_dir: Path) -> list[datetime]:
    return [datetime.fromisoformat(m["scheduled_for"]) for m in scheduled(data_dir)]


def assert_each_tick_once(data_dir: Path, upstream) -> list[datetime]:
    """No tick stored twice, and the model asked once per tick: a second scheduler would ask again
    even though the store refuses its duplicate (one call may be cut off in flight at shutdown)."""
    found = ticks(data_dir)
    doubled = [tick for tick, count in Counter(found).items() if count > 1]
    assert not doubled, f"ticks fired twice: {doubled}"
    per_second = Counter(tick.replace(microsecond=0) for tick in found)
    assert max(per_second.values(), default=0) <= 1
    calls = reminder_calls(upstream)
    assert len(found) <= len(calls) <= len(found) + 1, f"{len(calls)} model calls for {len(found)} ticks"
    return sorted(found)


def gunicorn(upstream, tmp_path: Path, workers: int, **env: str) -> Gunicorn:
    data_dir = tmp_path / "data"
    environment = app_env(upstream, data_dir, **{**EVERY_SECOND, "DOTENV_PATH": str(tmp_path / "no.env"), **env})
    args = ["-w", str(workers), "-k", "gthread", "--threads", "4", "-b", "127.0.0.1:{port}", "--graceful-timeout", "5"]
    server = Gunicorn(environment, args, tmp_path / "gunicorn.log")
    server.args = [arg.replace("{port}", str(server.port)) for arg in args]
    return server


def test_four_workers_fire_one_message_per_second(upstream, tmp_path):
    data_dir = tmp_path / "data"
    with gunicorn(upstream, tmp_path, workers=4) as server:
        started = time.time()
        time.sleep(8.5)
        healths = [requests.get(server.base_url + "/api/health", timeout=5).json() for _ in range(12)]
        stopping = time.time()
    assert all(h["scheduler_running"] for h in healths)
    found = assert_each_tick_once(data_dir, upstream)
    # Counted within the window the servers were up for, so slow start-ups and stops on a busy machine don't count.
    in_window = [t for t in found if started <= t.timestamp() < stopping]
    assert stopping - started - 2 <= len(in_window) <= stopping - started + 1, f"{len(in_window)} ticks in 8.5 s"
    gaps = [(later - earlier).total_seconds() for earlier, later in zip(found, found[1:], strict=False)]
    assert set(gaps) == {1.0}, f"ticks were not one per second: {gaps}"
    assert all(m["content"].startswith("收到：") for m in scheduled(data_dir))
    print(f"\n-w 4: {len(in_window)} reminders in {stopping - started:.1f} s, one per tick, gaps {sorted(set(gaps))} s")


def test_kill_9_of_the_scheduler_worker_hands_over_within_15_seconds(upstream, tmp_path):
    data_dir = tmp_path / "data"
    with gunicorn(upstream, tmp_path, workers=3) as server:
        wait_until(lambda: len(ticks(data_dir)) >= 3, 10)
        leader = leader_pid(data_dir)
        assert leader in server.worker_pids()
        os.kill(leader, signal.SIGKILL)
        killed_at = time.time()
        new_leader = wait_until(lambda: (pid := leader_pid(data_dir)) != leader and pid, 15)
        assert new_leader in server.worker_pids() or new_leader != leader
        resumed = wait_until(lambda: [t for t in ticks(data_dir) if t.timestamp() > killed_at], 15)
        takeover = resumed[0].timestamp() - killed_at
        wait_until(lambda: len([t for t in ticks(data_dir) if t.timestamp() > killed_at]) >= 5, 15)
    found = assert_each_tick_once(data_dir, upstream)
    after = [t for t in found if t.timestamp() > killed_at]
    assert len(after) >= 4
    gaps = [(later - earlier).total_seconds() for earlier, later in zip(after, after[1:], strict=False)]
    assert set(gaps) == {1.0}, f"after the takeover ticks were not one per second: {gaps}"
    print(f"\ntakeover after kill -9: first new tick {takeover:.2f}s after the kill; leader {leader} -> {new_leader}")
    assert takeover < 15


def test_graceful_reload_keeps_exactly_one_scheduler(upstream, tmp_path):
    data_dir = tmp_path / "data"
    with gunicorn(upstream, tmp_path, workers=2) as server:
        wait_until(lambda: len(ticks(data_dir)) >= 2, 10)
        old_workers = set(server.worker_pids())
        reloaded_at = time.time()
        os.kill(server.pid, signal.SIGHUP)
        samples = []
        deadline = time.monotonic() + 7
        while time.monotonic() < deadline:
            samples.append(requests.get(server.base_url + "/api/health", timeout=5).json()["scheduler_running"])
            time.sleep(0.1)
        new_workers = set(server.worker_pids())
    assert old_workers.isdisjoint(new_workers), "HUP did not replace the workers"
    assert all(samples), "some health check saw no scheduler during the reload"
    found = assert_each_tick_once(data_dir, upstream)
    after = [t for t in found if t.timestamp() > reloaded_at]
    assert len(after) >= 5
    gaps = [(later - earlier).total_seconds() for earlier, later in zip(after, after[1:], strict=False)]
    assert max(gaps) <= 2.0, f"ticks stopped during the reload: {gaps}"
    print(
        f"\nHUP: {len(after)} reminders in the 7 s after the reload, largest gap {max(gaps)} s, "
        f"{len(samples)} health checks all saw a scheduler"
    )


def test_two_servers_on_one_data_folder_share_the_reminders(upstream, tmp_path):
    data_dir = tmp_path / "data"
    first = gunicorn(upstream, tmp_path, workers=2)
    second = gunicorn(upstream, tmp_path, workers=2)
    with first, second:
        started = time.time()
        time.sleep(6.5)
        stopping = time.time()
    found = assert_each_tick_once(data_dir, upstream)
    in_window = [t for t in found if started <= t.timestamp() < stopping]  # not the start-ups and stops
    assert 5 <= len(in_window) <= 8
    print(f"\ntwo servers x 2 workers: {len(in_window)} reminders in {stopping - started:.1f} s, none doubled")


def test_debug_reloader_runs_one_scheduler_and_hands_over_on_reload(upstream, tmp_path):
    data_dir = tmp_path / "data"
    dotenv = tmp_path / ".env"
    dotenv.write_text("# watched by the reloader\n")
    port = free_port()
    env = {
        **os.environ,
        **app_env(upstream, data_dir, **EVERY_SECOND),
        "FLASK_DEBUG": "true",
        "PORT": str(port),
        "HOST": "127.0.0.1",
        "DOTENV_PATH": str(dotenv),
    }
    log_path = tmp_path / "app.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "app.py"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        wait_until_healthy(f"http://127.0.0.1:{port}", 30, process)
        wait_until(lambda: len(ticks(data_dir)) >= 2, 10)
        first_child = leader_pid(data_dir)
        assert first_child != process.pid, "the reloader's watcher process must not run the scheduler"
        time.sleep(1.1)
        dotenv.write_text("# changed\n")
        second_child = wait_until(lambda: (pid := leader_pid(data_dir)) != first_child and pid, 15)
        assert second_child != process.pid
        reloaded_at = time.time()
        wait_until(lambda: len([t for t in ticks(data_dir) if t.timestamp() > reloaded_at]) >= 3, 15)
    finally:
        os.killpg(process.pid, signal.SIGTERM)  # the reloader's watcher and its serving child alike
        stop_process_group(process, timeout=10)  # then SIGKILL whatever is left
    assert "Restarting with" in log_path.read_text(errors="replace")
    found = assert_each_tick_once(data_dir, upstream)
    assert len([t for t in found if t.timestamp() > reloaded_at]) >= 3


def test_failed_tick_is_recorded_and_the_next_tick_runs(upstream, tmp_path):
    data_dir = tmp_path / "data"
    upstream.script({"kind": "status", "status": 401, "body": {"error": {"message": "Invalid token"}}})
    with gunicorn(upstream, tmp_path, workers=2, CRON_SECOND="*/2") as server:

        def last_run():
            return requests.get(server.base_url + "/api/schedule", timeout=5).json()["last_run"]

        failed = wait_until(last_run, 10)
        assert failed["status"] == "failed" and failed["error"] == "HTTP 401 — check API_KEY."
        assert failed["message_id"] is None
        good = wait_until(lambda: (run := last_run()) and run["status"] == "ok" and run, 10)
        history = requests.get(server.base_url + "/api/history", timeout=5).json()["messages"]
    stored = {m["id"]: m for m in history}
    assert stored[good["message_id"]]["is_scheduled"] is True
    assert len(scheduled(data_dir)) >= 1


def test_run_now_stores_a_reminder_and_schedule_reports_it(upstream, tmp_path):
    weekdays_at_nine = {"CRON_SECOND": "0", "CRON_MINUTE": "0", "CRON_HOUR": "9", "CRON_DAY_OF_WEEK": "1-5"}
    with gunicorn(upstream, tmp_path, workers=1, **weekdays_at_nine) as server:
        response = requests.post(server.base_url + "/api/schedule/run", json={}, timeout=10)
        assert response.status_code == 200
        message = response.json()["message"]
        status = requests.get(server.base_url + "/api/schedule", timeout=5).json()
        del response  # a live response holds its kept-alive connection, and a graceful stop waits 2 s for it
    assert message["is_scheduled"] is True and message["role"] == "assistant"
    assert upstream.requests[-1]["messages"][-1]["content"] == DEFAULT_SCHEDULED_PROMPT
    assert status["enabled"] is True and status["timezone"] == "Asia/Shanghai"
    assert status["cron"] == "0 0 9 * * 1-5"
    upcoming = [datetime.fromisoformat(time) for time in status["next_run_times"]]
    assert len(upcoming) == 3 and status["next_run_time"] == status["next_run_times"][0]
    assert all(time.utcoffset() == timedelta(hours=8) and time.hour == 9 for time in upcoming)
    assert all(time.isoweekday() <= 5 for time in upcoming), "1-5 means Monday to Friday"
    assert upcoming == sorted(set(upcoming))
    last_run = status["last_run"]
    assert last_run["status"] == "ok" and last_run["message_id"] == message["id"]
    assert last_run["scheduled_for"] is None and last_run["error"] is None  # sent on request, not by a tick


@pytest.mark.parametrize("workers", [1, 8])
def test_scheduler_disabled_means_no_scheduler_anywhere(upstream, tmp_path, workers):
    data_dir = tmp_path / "data"
    with gunicorn(upstream, tmp_path, workers=workers, SCHEDULER_ENABLED="false") as server:
        time.sleep(2.5)
        health = requests.get(server.base_url + "/api/health", timeout=5).json()
        status = requests.get(server.base_url + "/api/schedule", timeout=5).json()
    assert health["scheduler_running"] is False
    assert status["enabled"] is False and status["next_run_time"] is None and status["next_run_times"] == []
    assert ticks(data_dir) == []


def test_a_garbled_state_file_does_not_stop_reminders(upstream, tmp_path):
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    (data_dir / "scheduler_state.json").write_text('{"last_tick": "not a time", "last_run": 7}')
    with gunicorn(upstream, tmp_path, workers=2):
        wait_until(lambda: len(ticks(data_dir)) >= 2, 10)
    assert_each_tick_once(data_dir, upstream)
    assert json.loads((data_dir / "scheduler_state.json").read_text())["last_tick"] != "not a time"


# ---- weekdays as crontab numbers them --------------------------------------------------------

MONDAY_NOON = datetime(2026, 11, 23, 12, 0, tzinfo=ZoneInfo("Asia/Shanghai"))
WEEK = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]


@pytest.mark.parametrize(
    ("field", "days"),
    [
        ("1-5", ["Mon", "Tue", "Wed", "Thu", "Fri"]),
        ("mon-fri", ["Mon", "Tue", "Wed", "Thu", "Fri"]),
        ("0", ["Sun"]),
        ("7", ["Sun"]),
        ("sun", ["Sun"]),
        ("1", ["Mon"]),
        ("6", ["Sat"]),
        ("0,6", ["Sat", "Sun"]),
        ("sat,sun", ["Sat", "Sun"]),
        ("5-7", ["Fri", "Sat", "Sun"]),
        ("*/2", ["Tue", "Thu", "Sat", "Sun"]),
        ("1-5/2", ["Mon", "Wed", "Fri"]),
        ("mon-fri/2", ["Mon", "Wed", "Fri"]),  # APScheduler alone would drop the step
        ("fri-sun", ["Fri", "Sat", "Sun"]),
        ("MON,3,fri", ["Mon", "Wed", "Fri"]),
        ("*", WEEK),
    ],
)
def test_day_of_week_numbers_mean_what_they_mean_in_crontab(make_settings, field, days):
    reminders = create_app(make_settings(CRON_DAY_OF_WEEK=field)).extensions["reminders"]
    fires = reminders.next_fire_times(21, after=MONDAY_NOON)  # three weeks of 09:00 from a Monday noon on
    assert sorted({fire.strftime("%a") for fire in fires}, key=WEEK.index) == days
    assert all(fire.hour == 9 and fire.minute == 0 for fire in fires)
    assert fires == sorted(set(fires))


def test_weekday_range_1_5_runs_monday_to_friday_and_skips_the_weekend(make_settings):
    reminders = create_app(make_settings(CRON_DAY_OF_WEEK="1-5")).extensions["reminders"]
    fires = reminders.next_fire_times(6, after=MONDAY_NOON)
    assert [fire.date().isoformat() for fire in fires] == [
        "2026-11-24",  # Tuesday: Monday's 09:00 has passed
        "2026-11-25",
        "2026-11-26",
        "2026-11-27",  # Friday
        "2026-11-30",  # Monday again, not Saturday 28th
        "2026-12-01",
    ]


@pytest.mark.parametrize("field", ["8", "5-1", "*/0", "fri-mon", "monday", "1-5x"])
def test_a_day_of_week_outside_crontab_is_refused_naming_the_form(upstream, tmp_path, field):
    with pytest.raises(ConfigError) as refused:
        load_settings(app_env(upstream, tmp_path / "data", CRON_DAY_OF_WEEK=field))
    message = str(refused.value)
    assert message.startswith(f"CRON_DAY_OF_WEEK={field!r} is invalid")
    assert "0 and 7 are Sunday" in message and "1-5" in message and "mon-fri" in message


# ---- a failed reminder is never silent ---------------------------------------------------------


def test_failed_reminder_shows_in_schedule_with_a_hint_whichever_worker_answers(upstream, tmp_path):
    wrong_path = upstream.url.replace("/v1/chat/completions", "/v2/chat/completions")  # the fake answers 404
    with gunicorn(upstream, tmp_path, workers=3, API_URL=wrong_path) as server:

        def last_run() -> dict | None:
            with requests.Session() as fresh:  # a new connection each time: any worker may answer
                return fresh.get(server.base_url + "/api/schedule", timeout=5).json()["last_run"]

        failed = wait_until(last_run, 15, message="a last run in /api/schedule")
        answers = [last_run() for _ in range(12)]
    assert failed["status"] == "failed" and failed["error"] == "HTTP 404 — check API_URL and MODEL."
    assert failed["message_id"] is None
    tick = datetime.fromisoformat(failed["scheduled_for"])
    assert tick.utcoffset() == timedelta(hours=8) and tick.microsecond == 0
    assert all(run["status"] == "failed" and run["error"] == failed["error"] for run in answers)
    assert scheduled(tmp_path / "data") == []


def refusing_connections_url() -> str:
    return f"http://127.0.0.1:{free_port()}/v1/chat/completions"  # nothing listens there


@pytest.mark.parametrize(
    ("env", "script", "hint"),
    [
        ({"API_KEY": "sk-wrong"}, [], "HTTP 401 — check API_KEY."),
        ({}, [{"kind": "status", "status": 403, "body": {"error": {"message": "no"}}}], "HTTP 403 — check API_KEY."),
        ({"API_URL": "{wrong_path}"}, [], "HTTP 404 — check API_URL and MODEL."),
        (
            {"RETRY_ATTEMPTS": "1"},
            [{"kind": "status", "status": 500, "headers": {"Retry-After": "0"}}] * 2,
            "HTTP 500 — the model service failed; the next reminder tries again.",
        ),
        (
            {"READ_TIMEOUT": "0.5"},
            [{"delay": 2}],
            "No answer within READ_TIMEOUT (0.5 s) — the model service is slow; "
            "raise READ_TIMEOUT or wait for the next reminder.",
        ),
        (
            {"API_URL": "{refused}", "RETRY_ATTEMPTS": "1"},
            [],
            "Cannot connect to the model API (connection refused, DNS or network) — check API_URL.",
        ),
        ({"API_KEY": ""}, [], "API_KEY is not set — set it in .env and restart."),
    ],
)
def test_a_failed_run_reports_what_to_check(serve, upstream, env, script, hint):
    urls = {"{wrong_path}": upstream.url.replace("/v1/", "/v2/"), "{refused}": refusing_connections_url()}
    api = serve(SCHEDULER_ENABLED="true", **{name: urls.get(value, value) for name, value in env.items()})
    upstream.script(*script)
    response = api.post("/api/schedule/run", json={})
    assert response.status_code >= 500 or response.status_code == 429, response.text
    last_run = api.get("/api/schedule").json()["last_run"]
    assert last_run["status"] == "failed" and last_run["error"] == hint
    assert last_run["scheduled_for"] is None and last_run["message_id"] is None
    assert API_KEY not in json.dumps(last_run)


def test_a_state_file_from_before_status_existed_still_reads(serve, make_settings):
    data_dir = make_settings().data_dir
    data_dir.mkdir(parents=True, exist_ok=True)
    old = {"time": "2026-11-25T09:00:01+08:00", "ok": False, "error": "HTTP 404", "message_id": None}
    (data_dir / "scheduler_state.json").write_text(json.dumps({"last_run": old}))
    last_run = serve(SCHEDULER_ENABLED="true").get("/api/schedule").json()["last_run"]
    assert last_run["status"] == "failed" and "ok" not in last_run


# ---- ticks missed while no server ran, and ticks already handled --------------------------------


def test_a_tick_missed_while_no_server_ran_fires_late_exactly_once(upstream, tmp_path):
    zone = ZoneInfo("Asia/Shanghai")
    missed = datetime.now(zone).replace(microsecond=0) - timedelta(seconds=20)  # well within MISFIRE_GRACE_SECONDS
    daily = {"CRON_SECOND": str(missed.second), "CRON_MINUTE": str(missed.minute), "CRON_HOUR": str(missed.hour)}
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    # The last tick handled was yesterday's: today's fell while the server was down.
    (data_dir / "scheduler_state.json").write_text(json.dumps({"last_tick": (missed - timedelta(days=1)).isoformat()}))

    with gunicorn(upstream, tmp_path, workers=2, **daily) as server:
        late = wait_until(lambda: scheduled(data_dir), 20, message="the late reminder")
        health = requests.get(server.base_url + "/api/health", timeout=5).json()
    assert health["scheduler_running"] is True
    assert [m["scheduled_for"] for m in late] == [missed.isoformat()]
    assert len(reminder_calls(upstream)) == 1
    state = json.loads((data_dir / "scheduler_state.json").read_text())
    assert state["last_tick"] == missed.isoformat() and state["last_run"]["status"] == "ok"

    first_run_log = len(server.log_text())  # both runs append to one log: read only what the second adds
    with gunicorn(upstream, tmp_path, workers=2, **daily) as server:
        # The new leader decides on a catch-up before it logs that it runs the scheduler.
        wait_until(
            lambda: "runs the reminder scheduler" in server.log_text()[first_run_log:], 20, message="a new leader"
        )
        requests.get(server.base_url + "/api/schedule", timeout=5)
    assert server.log_text().count("catching up tick") == 1
    assert len(reminder_calls(upstream)) == 1, "the restart asked the model again for the same tick"
    assert len(scheduled(data_dir)) == 1


def test_a_tick_at_or_before_the_last_one_handled_never_calls_the_model(make_settings, upstream):
    settings = make_settings(SCHEDULER_ENABLED="true")
    reminders = create_app(settings).extensions["reminders"]  # wired, not started: its job is called by hand
    last = datetime(2026, 11, 25, 9, 0, tzinfo=ZoneInfo("Asia/Shanghai"))
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    # That tick failed, so no message for it is stored: only the state file can refuse it again.
    reminders.state_path.write_text(json.dumps({"last_tick": last.isoformat()}))

    reminders._run_tick(last)
    reminders._run_tick(last - timedelta(days=1))
    assert reminder_calls(upstream) == []
    assert scheduled(settings.data_dir) == []

    reminders._run_tick(last + timedelta(days=1))  # a newer tick still runs
    assert len(reminder_calls(upstream)) == 1
    assert [m["scheduled_for"] for m in scheduled(settings.data_dir)] == [(last + timedelta(days=1)).isoformat()]


def test_health_sees_a_scheduler_through_the_moment_one_leader_hands_over_to_the_next(make_settings):
    """The lock is free between the old leader's exit and the waiting worker taking it; that is no gap
    in the reminders, so the health check must not report one (CI caught one such sample in a HUP)."""
    settings = make_settings(SCHEDULER_ENABLED="true")
    reminders = create_app(settings).extensions["reminders"]  # wired, not started: it only observes the lock
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    old_leader = os.open(reminders.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    fcntl.flock(old_leader, fcntl.LOCK_EX)
    assert reminders.is_running()

    held: list[int] = []

    def next_leader() -> None:
        time.sleep(0.1)  # woken late, as on a busy machine
        held.append(descriptor := os.open(reminders.lock_path, os.O_RDWR))
        fcntl.flock(descriptor, fcntl.LOCK_EX)

    successor = threading.Thread(target=next_leader)
    os.close(old_leader)
    successor.start()
    assert reminders.is_running(), "the health check saw no scheduler in the handover"
    successor.join()
    os.close(held[0])
    assert not reminders.is_running()  # free for the whole grace: no scheduler
