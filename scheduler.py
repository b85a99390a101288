"""Scheduled reminders: an APScheduler cron job that runs in exactly one process at a time.

Every process that serves the app (each Gunicorn worker, `python app.py`, the reloader's child)
runs a small election thread that blocks on an exclusive `flock` of `scheduler.lock` in the data
folder. The one that holds it runs the BackgroundScheduler; the others stay blocked. The kernel
drops the lock the moment its holder exits — kill -9, max_requests recycling, a graceful reload —
and wakes one waiter, so another process takes over within milliseconds.

`scheduler_state.json` records the last tick handled and the last run's outcome, so every worker
reports the same one. A new leader that finds a tick missed in the gap (within
MISFIRE_GRACE_SECONDS) runs it late, once; and the history store refuses a second message for
the same tick, so no tick is ever stored twice.

The same leader also sends the users' reminders (reminders.py, reminder_delivery.py).
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import threading
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from apscheduler.schedulers.background import BackgroundScheduler

from channels import Channels
from chat_service import ChatService
from config import Settings
from errors import AppError, UpstreamError
from history_store import Message, file_lock, write_json_atomic
from reminder_delivery import ReminderDelivery
from reminders import ReminderStore

log = logging.getLogger(__name__)

LOCK_RETRY_SECONDS = 5.0  # only when the lock file cannot even be opened (e.g. read-only folder)
NEXT_RUNS_SHOWN = 3
# A leader's exit frees the lock a moment before the waiting worker the kernel wakes takes it
# (milliseconds; more on a busy machine). Only a lock free for this long means no scheduler.
HANDOVER_SECONDS = 0.3


class Reminders:
    """Runs the reminder job when this process wins the election; reports the schedule's state."""

    def __init__(
        self, settings: Settings, service: ChatService, store: ReminderStore, channels: Channels | None = None
    ):
        self.settings = settings
        self.service = service
        self.zone = ZoneInfo(settings.timezone)
        self.trigger = settings.cron_trigger()
        self.lock_path = settings.data_dir / "scheduler.lock"
        self.state_path = settings.data_dir / "scheduler_state.json"
        self._state_lock_path = settings.data_dir / "scheduler_state.json.lock"
        self._leader_fd: int | None = None
        self._scheduler: BackgroundScheduler | None = None
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self.store = store  # the users' reminders, shared with the chat's reminder tools
        self.channels = channels
        self.delivery = ReminderDelivery(settings, service, self.store, channels)

    # ---- election ------------------------------------------------------------------------

    def start(self) -> None:
        """Join the election in a background thread (no-op when SCHEDULER_ENABLED is false)."""
        if not self.settings.scheduler_enabled or self._thread is not None:
            return
        self._thread = threading.Thread(target=self._elect, name="reminder-election", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the scheduler if this process runs it and give up the lock."""
        self._stopping.set()
        self.delivery.stop()
        if self._scheduler is not None:
            self._scheduler.shutdown(wait=False)
            self._scheduler = None
        if self._leader_fd is not None:
            os.close(self._leader_fd)
            self._leader_fd = None

    def _elect(self) -> None:
        while not self._stopping.is_set():
            if self._wait_for_lock():
                try:
                    self._lead()
                except Exception:
                    log.exception("Could not start the reminder scheduler")
                    self.stop()
                return
            self._stopping.wait(LOCK_RETRY_SECONDS)

    def _wait_for_lock(self) -> bool:
        """Block until this process holds the scheduler lock; False if the lock file cannot be opened."""
        try:
            self.lock_path.parent.mkdir(parents=True, exist_ok=True)
            descriptor = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as error:
            log.error("Cannot open %s (%s); reminders are paused", self.lock_path, error.strerror)
            return False
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX)
        except OSError as error:  # e.g. ENOLCK on a network file system without locks
            os.close(descriptor)
            log.error("Cannot lock %s (%s); reminders are paused", self.lock_path, error.strerror)
            return False
        if self._stopping.is_set():
            os.close(descriptor)
            return False
        os.ftruncate(descriptor, 0)
        os.write(descriptor, f"{os.getpid()}\n".encode())
        self._leader_fd = descriptor
        return True

    def _lead(self) -> None:
        scheduler = BackgroundScheduler(timezone=self.zone)
        scheduler.add_job(
            self._run_tick,
            self.trigger,
            id="reminder",
            coalesce=True,
            max_instances=1,
            misfire_grace_time=self.settings.misfire_grace_seconds,
        )
        missed = self._missed_tick()
        if missed is not None:
            scheduler.add_job(self._run_tick, args=[missed], id="catch-up", max_instances=1)
        scheduler.start()
        self._scheduler = scheduler
        self.delivery.start()  # the users' reminders, from the same leader
        log.info(
            "Process %d runs the reminder scheduler (%s, %s)%s",
            os.getpid(),
            self.cron_expression,
            self.settings.timezone,
            f"; catching up tick {missed.isoformat()}" if missed else "",
        )

    def is_running(self) -> bool:
        """Whether some process (this one or another) runs the scheduler right now."""
        if not self.settings.scheduler_enabled:
            return False
        if self._leader_fd is not None:
            return True
        deadline = time.monotonic() + HANDOVER_SECONDS
        while not self._held_elsewhere():
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.02)
        return True

    def _held_elsewhere(self) -> bool:
        try:
            descriptor = os.open(self.lock_path, os.O_RDONLY)
        except OSError:
            return False
        try:
            fcntl.flock(descriptor, fcntl.LOCK_SH | fcntl.LOCK_NB)
            return False  # nobody holds it exclusively
        except BlockingIOError:
            return True
        finally:
            os.close(descriptor)

    # ---- ticks ---------------------------------------------------------------------------

    def _latest_tick(self, now: datetime) -> datetime | None:
        """The newest fire time at or before `now`, looking back at most the misfire grace time."""
        window = timedelta(seconds=1)
        limit = timedelta(seconds=self.settings.misfire_grace_seconds)
        while True:
            tick = self.trigger.get_next_fire_time(None, now - window)
            if tick is not None and tick <= now:
                break
            if window >= limit:
                return None
            window = min(window * 2, limit)
        step = timedelta(microseconds=1)
        while (following := self.trigger.get_next_fire_time(tick, tick + step)) and following <= now:
            tick = following
        return tick

    def _last_tick(self) -> datetime | None:
        """The last tick handled, from the state file."""
        return _parse_tick(self._read_state().get("last_tick"))

    def _missed_tick(self) -> datetime | None:
        """A tick that fell while no process ran the scheduler, if it is still within the grace time."""
        last = self._last_tick()
        if last is None:
            return None
        latest = self._latest_tick(datetime.now(self.zone))
        if latest is None or latest <= last:
            return None
        return latest

    def _run_tick(self, tick: datetime | None = None) -> None:
        """The job: handle tick `tick` (by default the one that just fell) unless it was handled already."""
        tick = tick or self._latest_tick(datetime.now(self.zone))
        if tick is None:
            return
        last = self._last_tick()
        if last is not None and tick <= last:
            return
        self._record(self._push(self._attempt(tick.isoformat()), f"env@{tick.isoformat()}"), tick=tick)

    def run_now(self) -> Message:
        """Ask for a reminder immediately (outside the schedule) and store it; raises the turn's error."""
        occurrence = "manual-" + datetime.now(self.zone).isoformat(timespec="milliseconds")
        outcome = self._push(self._attempt(occurrence), f"env@{occurrence}")
        self._record(outcome, tick=None)
        if isinstance(outcome, AppError):
            raise outcome
        return outcome

    def _push(self, outcome: Message | AppError, occurrence: str) -> Message | AppError:
        """Queue a stored message for every channel (the .env reminder names none, so all)."""
        if self.channels is not None and not isinstance(outcome, AppError):
            reminder = {"id": "env", "text": "提醒 · Reminder", "channels": None}  # its prompt makes no title
            self.channels.enqueue(occurrence, reminder, outcome)
        return outcome

    def _attempt(self, tick: str) -> Message | AppError:
        try:
            return self.service.scheduled_reply(tick)
        except AppError as error:
            log.warning("Reminder for %s failed: %s", tick, error.message)
            return error
        except Exception:
            log.exception("Reminder for %s failed unexpectedly", tick)
            return AppError("The reminder failed unexpectedly; see the server log.")

    # ---- state ---------------------------------------------------------------------------

    def _read_state(self) -> dict[str, Any]:
        try:
            data = json.loads(self.state_path.read_bytes())
            return data if isinstance(data, dict) else {}
        except (OSError, ValueError):
            return {}

    def _record(self, outcome: Message | AppError, tick: datetime | None) -> None:
        """Write the outcome as `last_run`, and `tick` (None for a run on request) as the last tick handled if newer."""
        failed = isinstance(outcome, AppError)
        last_run = {
            "time": datetime.now(self.zone).isoformat(timespec="seconds"),
            "scheduled_for": tick.isoformat() if tick else None,
            "status": "failed" if failed else "ok",
            "error": failure_summary(outcome, self.settings) if failed else None,
            "message_id": None if failed else outcome["id"],
        }
        try:
            # Read, change and replace under one lock: a run on request and a tick may finish together.
            with file_lock(self._state_lock_path):
                state = self._read_state()
                state["last_run"] = last_run
                last = _parse_tick(state.get("last_tick"))
                if tick is not None and (last is None or tick > last):
                    state["last_tick"] = tick.isoformat()
                write_json_atomic(self.state_path, state)
        except OSError as error:
            log.error("Cannot record the reminder state in %s: %s", self.state_path, error.strerror)

    @property
    def cron_expression(self) -> str:
        """The six cron fields, seconds first."""
        return " ".join(self.settings.cron.values())

    def next_fire_times(self, count: int = NEXT_RUNS_SHOWN, after: datetime | None = None) -> list[datetime]:
        """The schedule's next `count` fire times from `after` (default now) on, in TIMEZONE."""
        times: list[datetime] = []
        moment = after or datetime.now(self.zone)
        while len(times) < count and (fire := self.trigger.get_next_fire_time(times[-1] if times else None, moment)):
            times.append(fire)
            moment = fire
        return times

    def status(self) -> dict[str, Any]:
        """What GET /api/schedule reports."""
        enabled = self.settings.scheduler_enabled
        upcoming = [fire.isoformat() for fire in self.next_fire_times()] if enabled else []
        return {
            "enabled": enabled,
            "running": self.is_running(),
            "cron": self.cron_expression,
            "cron_fields": self.settings.cron,
            "timezone": self.settings.timezone,
            "next_run_time": upcoming[0] if upcoming else None,
            "next_run_times": upcoming,
            "last_run": _last_run(self._read_state().get("last_run")),
        }

    def as_reminder(self) -> dict[str, Any]:
        """The .env reminder as GET /api/reminders lists it: read-only, `source: "env"`."""
        status = self.status()
        return {
            "id": "env",
            "text": self.settings.scheduled_message_prompt,
            "at": None,
            "cron": status["cron"],
            "timezone": status["timezone"],
            "enabled": status["enabled"],
            "mode": "generate",
            "channels": None,  # every channel
            "conversation_id": "main",
            "created_at": None,
            "source": "env",
            "last_run": status["last_run"],
            "next_runs": status["next_run_times"],
            "done": False,
        }


def failure_summary(error: AppError, settings: Settings) -> str:
    """One sentence for the page: what failed and what to check (the log keeps the model API's own words)."""
    status = error.upstream_status if isinstance(error, UpstreamError) else None
    if status in (401, 403):
        return f"HTTP {status} — check API_KEY."
    if status == 404:
        return "HTTP 404 — check API_URL and MODEL."
    if status == 429:
        return "HTTP 429 — the model API is rate limiting this key; check its quota."
    if status is not None and status >= 500:
        return f"HTTP {status} — the model service failed; the next reminder tries again."
    if status is not None:
        return f"HTTP {status} — check MODEL and SCHEDULED_MESSAGE_PROMPT; the server log has the details."
    hints = {
        "upstream_timeout": f"No answer within READ_TIMEOUT ({settings.read_timeout:g} s) — the model service is slow; "
        "raise READ_TIMEOUT or wait for the next reminder.",
        "upstream_unreachable": "Cannot connect to the model API (connection refused, DNS or network) — check API_URL.",
        "upstream_incomplete": "The model API's answer was cut off — the next reminder tries again.",
        "upstream_bad_response": "The model API's answer is not chat completion JSON — check API_URL.",
        "not_configured": "API_KEY is not set — set it in .env and restart.",
        "storage_unavailable": "The reminder could not be saved — check the data folder's permissions and free space.",
    }
    return hints.get(error.code, "The reminder failed unexpectedly — see the server log.")


def _last_run(value: Any) -> dict[str, Any] | None:
    """The stored last run; one written before `status` existed is read from its `ok`, anything else is none."""
    if not isinstance(value, dict):
        return None
    if "status" not in value and "ok" in value:
        ok = value.pop("ok")
        value["status"] = "ok" if ok else "failed"
    return value if value.get("status") in ("ok", "failed") else None


def _parse_tick(value: Any) -> datetime | None:
    """A stored tick time; anything unreadable counts as none, so a bad state file cannot stop reminders."""
    try:
        return datetime.fromisoformat(value)
    except (TypeError, ValueError):
        return None


def leader_pid(data_dir: Path) -> int | None:
    """The pid written by the current leader, for tests and operators."""
    try:
        return int((data_dir / "scheduler.lock").read_text().strip())
    except (OSError, ValueError):
        return None
