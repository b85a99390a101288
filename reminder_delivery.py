"""Delivering the users' reminders, exactly once, from the elected leader (see scheduler.py's election).

The leader's thread sleeps until the next due time or until a writer pokes its datagram socket
(`reminders.wake`, or an abstract name when the data folder's path is too long). Then, for each due
occurrence: claim it in reminders.json (moving the reminder's cursor past it), word it with the model,
store it in the history, finish the claim. A leader killed anywhere in between leaves the claim, and the
next leader finishes it: if the history has the message it only records the outcome, else it sends it,
once — the history store refuses a second message for the same `reminder_id@scheduled_for`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from channels import Channels
from chat_service import ChatService
from config import Settings
from errors import AppError
from history_store import Message
from reminders import Occurrence, ReminderStore, is_late, next_due

log = logging.getLogger(__name__)

MAX_SLEEP_SECONDS = 300.0  # look again at least this often (a clock change, a missed poke)
UNBOUND_SLEEP_SECONDS = 2.0  # without a wake-up socket, changes from other workers are seen this late
RETRY_SECONDS = 5.0  # after an unexpected error
MAX_SEND_TRIES = 3  # an occurrence whose sending raises this often is recorded as failed, so the rest go on


class ReminderDelivery:
    """Sends due reminders while this process leads; also sends one on request (POST .../run)."""

    def __init__(
        self, settings: Settings, service: ChatService, store: ReminderStore, channels: Channels | None = None
    ):
        self.settings = settings
        self.service = service
        self.store = store
        self.channels = channels  # where each message is pushed once stored
        self.zone = ZoneInfo(settings.timezone)
        self._stopping = threading.Event()
        self._socket: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._batch_began: datetime | None = None  # when the batch being sent was claimed
        self._failures: dict[str, tuple[int, float]] = {}  # occurrence key → (tries, monotonic time of the next)

    def start(self) -> None:
        """Listen for pokes and start delivering (called once this process holds the scheduler lock)."""
        self._socket = self._bind()
        if self.channels is not None:
            self.channels.pusher.start()
        self._thread = threading.Thread(target=self._run, name="reminder-delivery", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop after the occurrence being sent, if any (its claim stays for the next leader after `timeout`)."""
        self._stopping.set()
        if self._socket is not None:
            with contextlib.suppress(OSError):
                self._socket.setblocking(False)
                self._socket.sendto(b"stop", self.store.wake_address)
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)
        if self.channels is not None:
            self.channels.pusher.stop()
        if self._socket is not None:
            self._socket.close()
            self._socket = None

    def _bind(self) -> socket.socket | None:
        address = self.store.wake_address
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            if not address.startswith("\0"):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(address)  # left by a leader that died; only the leader binds it
            listener.bind(address)
            return listener
        except OSError as error:
            listener.close()
            log.warning(
                "Cannot listen on %r (%s); reminder changes are picked up every %g s",
                address,
                error.strerror,
                UNBOUND_SLEEP_SECONDS,
            )
            return None

    # ---- the loop ------------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                all_finished = self._finish_claims()
                wait = self._deliver_due()
                if not all_finished:
                    wait = min(wait, RETRY_SECONDS)
            except Exception:
                log.exception("Reminder delivery failed; trying again in %g s", RETRY_SECONDS)
                wait = RETRY_SECONDS
            if wait > 0:  # only straight from one batch to the next does its start still count
                self._batch_began = None
            self._sleep(wait)
            if self.channels is not None:  # a poke may come from a push queued in another worker
                self.channels.pusher.wake()

    def _sleep(self, seconds: float) -> None:
        """Until `seconds` pass or a writer pokes the socket."""
        listener = self._socket
        if listener is None:
            self._stopping.wait(min(seconds, UNBOUND_SLEEP_SECONDS))
            return
        if seconds <= 0:
            return
        listener.settimeout(seconds)
        with contextlib.suppress(OSError):  # a timeout, or the socket closed by stop()
            listener.recv(64)
            listener.setblocking(False)
            while listener.recv(64):  # the pokes that queued up meanwhile all mean the same: look again
                pass

    def _finish_claims(self) -> bool:
        """Deliver (or just record) occurrences claimed by a leader that died before finishing them (or left by
        an unexpected error); whether all were finished."""
        all_finished = True
        for occurrence in self.store.claims():
            _, next_try = self._failures.get(occurrence.key, (0, 0.0))
            if time.monotonic() < next_try:  # the leader's own writes wake it; a retry still waits its turn
                all_finished = False
                continue
            try:  # one claim that cannot even be finished (its log unwritable) must not hold up the rest
                reminder = next((r for r in self.store.all() if r["id"] == occurrence.reminder_id), None)
                if reminder is None or occurrence.scheduled_for.startswith("manual-"):  # gone; or an old run
                    self.store.finish(occurrence, {})
                    continue
                log.info("Finishing reminder %s, left claimed", occurrence.key)
                # Late if it is by now more than LATE_AFTER_SECONDS past its time.
                all_finished = self._send_claimed(occurrence, reminder) and all_finished
            except Exception:
                log.exception("Reminder %s cannot be finished; trying again in %g s", occurrence.key, RETRY_SECONDS)
                self._put_off(occurrence.key, self._tries(occurrence.key))  # not a failed send: no try counted
                all_finished = False
        return all_finished

    def _deliver_due(self) -> float:
        """Send every due occurrence; the seconds until the next one.

        A first pass reads without the lock (the file is cached while unchanged), so waking up costs little
        when nothing is due. Everything due is claimed at once before the first is sent, so a slow model
        cannot make a reminder due at the same time count as missed.
        """
        now = datetime.now(UTC)
        # What fell due while the previous batch was being sent is late, not missed: that batch's start.
        since, self._batch_began = self._batch_began, None
        soonest: datetime | None = None
        for reminder in self.store.all():
            try:
                due = next_due(reminder)
            except Exception:  # a hand-edited entry must not stop the others
                log.exception("Reminder %s cannot be scheduled; skipped", reminder.get("id"))
                continue
            if due is not None and (soonest is None or due < soonest):
                soonest = due
        if soonest is None:
            return MAX_SLEEP_SECONDS
        if soonest > now:
            return min((soonest - now).total_seconds(), MAX_SLEEP_SECONDS)
        claimed, passed_over = self.store.claim_due(now, self.settings.misfire_grace_seconds, since=since)
        for occurrence, record in passed_over:
            if record["status"] == "missed":
                log.warning("Reminder %s was due longer ago than MISFIRE_GRACE_SECONDS; skipped", occurrence.key)
        self.store.finish_many(passed_over)  # their last_run, and their lines in the delivery log, in one write
        if claimed:
            self._batch_began = now
        all_finished = True
        for occurrence, reminder in claimed:
            if self._stopping.is_set():
                break  # the claims stay; the next leader finishes them
            all_finished = self._send_claimed(occurrence, reminder) and all_finished
        return 0 if all_finished else RETRY_SECONDS  # else look again at once: time has passed while sending

    # ---- one occurrence ------------------------------------------------------------------

    def _send_claimed(self, occurrence: Occurrence, reminder: dict[str, Any]) -> bool:
        """`_send`, where an unexpected error (a bug, an entry edited by hand) leaves the claim to be tried again
        shortly (returning False), and the MAX_SEND_TRIES-th time is recorded as the occurrence's failure: never
        a claim that holds up the reminders after it, never a reminder dropped without a word."""
        try:
            self._send(occurrence, reminder)
        except Exception as error:
            tries = self._tries(occurrence.key) + 1
            log.exception("Reminder %s could not be sent (try %d of %d)", occurrence.key, tries, MAX_SEND_TRIES)
            if tries < MAX_SEND_TRIES:
                self._put_off(occurrence.key, tries)
                return False
            problem = f"Not sent: an internal error ({type(error).__name__}); the server log has the details."
            self.store.finish(occurrence, self._last_run(occurrence.scheduled_for, "failed", problem, None))
        self._failures.pop(occurrence.key, None)
        return True

    def _tries(self, key: str) -> int:
        return self._failures.get(key, (0, 0.0))[0]

    def _put_off(self, key: str, tries: int) -> None:
        """Leave occurrence `key` for RETRY_SECONDS, `tries` failed sends so far."""
        self._failures[key] = (tries, time.monotonic() + RETRY_SECONDS)

    def _send(self, occurrence: Occurrence, reminder: dict[str, Any]) -> tuple[Message, AppError | None]:
        """Store the occurrence's message (once) and finish its claim with the outcome."""
        late = occurrence.late or _is_late(occurrence.scheduled_for)  # e.g. finished by the next leader
        message, failure = self.service.reminder_reply(reminder, occurrence.scheduled_for, late)
        if self.channels is not None:  # queued before the claim is finished: a kill -9 between loses no push
            self.channels.enqueue(occurrence.key, reminder, message)
        from scheduler import failure_summary  # scheduler imports this module

        error = failure_summary(failure, self.settings) if failure else None
        status = "failed" if failure else "ok"
        self.store.finish(occurrence, self._last_run(occurrence.scheduled_for, status, error, message))
        return message, failure

    def _last_run(self, scheduled_for: str, status: str, error: str | None, message: Message | None) -> dict[str, Any]:
        return {
            "time": datetime.now(self.zone).isoformat(timespec="seconds"),
            "scheduled_for": scheduled_for,
            "status": status,
            "error": error,
            "late": bool(message and message.get("late")),
            "generated": bool(message and message.get("generated")),
            "message_id": message["id"] if message else None,
        }

    def run_now(self, reminder_id: str) -> Message:
        """Send reminder `reminder_id` now, once, outside its schedule; returns the stored message.

        Not claimed: it belongs to its request, and a request cut off is simply asked again.
        """
        reminder = self.store.get(reminder_id)
        now = datetime.now(ZoneInfo(reminder["timezone"])).isoformat(timespec="milliseconds")
        message, _ = self._send(Occurrence(reminder_id, "manual-" + now), reminder)
        return message


def _is_late(scheduled_for: str) -> bool:
    """Whether an occurrence is being sent late now (a manual run, keyed `manual-…`, never is)."""
    try:
        due = datetime.fromisoformat(scheduled_for)
    except ValueError:
        return False
    return is_late(due, datetime.now(UTC))
