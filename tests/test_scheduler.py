"""Reminders fire exactly once per tick under real Gunicorn, through kills, reloads and restarts."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import datetime
from pathlib import Path

import pytest
import requests

from config import DEFAULT_SCHEDULED_PROMPT
from scheduler import leader_pid
from tests.support.client import app_env
from tests.support.servers import ROOT, Gunicorn, free_port, stop_process_group, wait_until_healthy
from tests.support.waiting import wait_until

EVERY_SECOND = {"SCHEDULER_ENABLED": "true", "CRON_SECOND": "*", "CRON_MINUTE": "*", "CRON_HOUR": "*"}


def scheduled(data_dir: Path) -> list[dict]:
    """Scheduled messages straight from the live history file."""
    path = data_dir / "chat_history.json"
    if not path.exists():
        return []
    return [m for m in json.loads(path.read_bytes())["messages"] if m.get("is_scheduled")]


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
    calls = [r for r in upstream.requests if r["messages"][-1]["content"] == DEFAULT_SCHEDULED_PROMPT]
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
        assert failed["ok"] is False and "HTTP 401" in failed["error"] and failed["message_id"] is None
        good = wait_until(lambda: (run := last_run()) and run["ok"] and run, 10)
        history = requests.get(server.base_url + "/api/history", timeout=5).json()["messages"]
    stored = {m["id"]: m for m in history}
    assert stored[good["message_id"]]["is_scheduled"] is True
    assert len(scheduled(data_dir)) >= 1


def test_run_now_stores_a_reminder_and_schedule_reports_it(upstream, tmp_path):
    with gunicorn(upstream, tmp_path, workers=1, CRON_SECOND="0", CRON_MINUTE="0", CRON_HOUR="9") as server:
        response = requests.post(server.base_url + "/api/schedule/run", json={}, timeout=10)
        assert response.status_code == 200
        message = response.json()["message"]
        status = requests.get(server.base_url + "/api/schedule", timeout=5).json()
        del response  # a live response holds its kept-alive connection, and a graceful stop waits 2 s for it
    assert message["is_scheduled"] is True and message["role"] == "assistant"
    assert upstream.requests[-1]["messages"][-1]["content"] == DEFAULT_SCHEDULED_PROMPT
    assert status["enabled"] is True and status["timezone"] == "Asia/Shanghai"
    assert status["cron"] == "0 0 9 * * *"
    next_run = datetime.fromisoformat(status["next_run_time"])
    assert next_run.utcoffset().total_seconds() == 8 * 3600 and next_run.hour == 9
    assert status["last_run"]["ok"] is True and status["last_run"]["message_id"] == message["id"]


@pytest.mark.parametrize("workers", [1, 8])
def test_scheduler_disabled_means_no_scheduler_anywhere(upstream, tmp_path, workers):
    data_dir = tmp_path / "data"
    with gunicorn(upstream, tmp_path, workers=workers, SCHEDULER_ENABLED="false") as server:
        time.sleep(2.5)
        health = requests.get(server.base_url + "/api/health", timeout=5).json()
        status = requests.get(server.base_url + "/api/schedule", timeout=5).json()
    assert health["scheduler_running"] is False
    assert status["enabled"] is False and status["next_run_time"] is None
    assert ticks(data_dir) == []


def test_a_garbled_state_file_does_not_stop_reminders(upstream, tmp_path):
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    (data_dir / "scheduler_state.json").write_text('{"last_tick": "not a time", "last_run": 7}')
    with gunicorn(upstream, tmp_path, workers=2):
        wait_until(lambda: len(ticks(data_dir)) >= 2, 10)
    assert_each_tick_once(data_dir, upstream)
    assert json.loads((data_dir / "scheduler_state.json").read_text())["last_tick"] != "not a time"
