"""Pushing reminder messages to their channels, exactly once each: `data/push_outbox.json` and the pusher thread.

When a reminder's message is stored, one entry per channel is added (`enqueue`), keyed `<occurrence>#<channel>`,
so adding again (a claim finished a second time after a kill -9) adds nothing. The pusher runs in the elected
leader only. It sends due entries in parallel, each with its own timeout, off the delivery thread, so a slow or
dead channel holds up neither the next reminder nor any chat. Each outcome is written at once: `sent` (never sent
again), `retrying` (tried again after the next of PUSH_RETRY_SECONDS), `failed` (tries used up). An entry in flight
when the process dies is sent again by the next leader: the one case where a channel may see a reminder twice.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from history_store import changing_json, read_json_or_set_aside

log = logging.getLogger(__name__)

FINISHED_KEPT = 1000  # sent and failed entries kept for the runs' channel outcomes (read by every listing)
PARALLEL_SENDS = 8
MAX_SLEEP_SECONDS = 300.0
RETRY_SECONDS = 5.0  # after the outbox could not be read or written
TITLE_CHARS = 60
BODY_CHARS = 2000
PENDING = ("pending", "retrying")

# (channel, title, body, timeout, tag) → (delivered, answer)
Sender = Callable[[dict[str, Any], str, str, float, str], tuple[bool, str]]


class PushOutbox:
    """The entries waiting to be pushed, and the outcomes of those that were."""

    def __init__(self, data_dir: Path, retry_seconds: tuple[float, ...], poke: Callable[[], None] = lambda: None):
        self.path = data_dir / "push_outbox.json"
        self.lock_path = data_dir / "push_outbox.json.lock"
        self.retry_seconds = retry_seconds
        self.poke = poke  # wakes the leader's pusher from another process
        self._outcomes: tuple[tuple[int, int, int], dict[str, Any]] | None = None  # by the file's stat

    def read(self) -> dict[str, Any]:
        return read_json_or_set_aside(self.path, lambda: {"version": 1, "pushes": {}}, "The push outbox")

    def _changing(self) -> contextlib.AbstractContextManager[dict[str, Any]]:
        return changing_json(self.path, self.lock_path, self.read, "The push outbox")

    def enqueue(
        self, occurrence: str, reminder_id: str, subject: str, message: dict[str, Any], channels: list[dict[str, Any]]
    ) -> None:
        """One entry per channel for the stored `message` of `occurrence` (titled after `subject`, what the
        reminder is about); entries already there are left alone."""
        if not channels:
            return
        now = datetime.now(UTC).isoformat()
        title = _shortened(f"⏰ {subject}".strip(), TITLE_CHARS)
        body = _shortened(message["content"], BODY_CHARS)
        with self._changing() as data:
            for channel in channels:
                key = f"{occurrence}#{channel['id']}"
                data["pushes"].setdefault(
                    key,
                    {
                        "occurrence": occurrence,
                        "reminder_id": reminder_id,
                        "message_id": message["id"],
                        "channel": channel["id"],
                        "channel_name": channel["name"],
                        "title": title,
                        "body": body,
                        "status": "pending",
                        "attempts": 0,
                        "next_try": now,
                        "answer": None,
                        "updated_at": now,
                    },
                )
        self.poke()

    def due(self, now: datetime) -> tuple[list[tuple[str, dict[str, Any]]], datetime | None]:
        """The entries to send now, and when the next of the others is due."""
        ready, soonest = [], None
        for key, entry in self.read()["pushes"].items():
            if entry["status"] not in PENDING:
                continue
            at = datetime.fromisoformat(entry["next_try"])
            if at <= now:
                ready.append((key, entry))
            elif soonest is None or at < soonest:
                soonest = at
        return ready, soonest

    def record(self, key: str, delivered: bool, answer: str, retry: bool = True) -> dict[str, Any] | None:
        """Write the outcome of one try; returns the entry as it now stands."""
        now = datetime.now(UTC)
        with self._changing() as data:
            entry = data["pushes"].get(key)
            if entry is None or entry["status"] not in PENDING:
                return entry
            entry["attempts"] += 1
            entry["answer"] = answer
            entry["updated_at"] = now.isoformat()
            if delivered:
                entry["status"] = "sent"
            elif retry and entry["attempts"] <= len(self.retry_seconds):
                entry["status"] = "retrying"
                entry["next_try"] = (now + timedelta(seconds=self.retry_seconds[entry["attempts"] - 1])).isoformat()
            else:
                entry["status"] = "failed"
            _prune(data["pushes"])
            return dict(entry)

    def outcomes(self) -> dict[Any, dict[str, dict[str, Any]]]:
        """Each message's pushes: (reminder id, message id) → channel id → its outcome. The reminder's id too,
        since message ids repeat across conversations. Worked out again only when the file changed: every
        reminders listing asks. Callers must not change what it returns."""
        try:
            stat = os.stat(self.path)
        except FileNotFoundError:
            return {}
        stat_key = (stat.st_ino, stat.st_size, stat.st_mtime_ns)
        if self._outcomes is not None and self._outcomes[0] == stat_key:
            return self._outcomes[1]
        found: dict[Any, dict[str, dict[str, Any]]] = {}
        for entry in self.read()["pushes"].values():
            outcome = {key: entry[key] for key in ("channel_name", "status", "attempts", "answer", "updated_at")}
            found.setdefault((entry["reminder_id"], entry["message_id"]), {})[entry["channel"]] = outcome
        self._outcomes = (stat_key, found)
        return found


def _prune(pushes: dict[str, dict[str, Any]]) -> None:
    finished = sorted(
        (key for key, entry in pushes.items() if entry["status"] not in PENDING),
        key=lambda key: pushes[key]["updated_at"],
        reverse=True,
    )
    for key in finished[FINISHED_KEPT:]:
        del pushes[key]


def _shortened(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


class Pusher:
    """The leader's thread that sends what the outbox holds; `wake()` when something was added."""

    def __init__(
        self,
        outbox: PushOutbox,
        channels: Callable[[], dict[str, dict[str, Any]]],
        send: Sender,
        timeout: float,
        warm: Callable[[], None] = lambda: None,
    ):
        self.outbox = outbox
        self.warm = warm  # loads what sending needs, so the first reminder is not the one that waits for it
        self.channels = channels  # id → channel, as they stand when an entry is sent
        self.send = send
        self.timeout = timeout
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._in_flight: set[str] = set()
        self._busy_channels: set[str] = set()  # one send at a time per channel: a slow one holds up only itself
        # Outcomes that could not be written (a full disk): kept here and written later, never sent again.
        self._unrecorded: dict[str, tuple[bool, str]] = {}
        self._lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._pool = ThreadPoolExecutor(PARALLEL_SENDS, thread_name_prefix="push")
        self._thread = threading.Thread(target=self._run, name="pusher", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def stop(self, timeout: float = 5.0) -> None:
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)

    def _run(self) -> None:
        try:
            self.warm()
        except Exception:
            log.exception("Could not prepare for pushing; the first push will try again")
        while not self._stopping.is_set():
            try:
                wait = self._send_due()
            except Exception:
                log.exception("Pushing reminders failed; trying again in %g s", RETRY_SECONDS)
                wait = RETRY_SECONDS
            self._wake.wait(wait)
            self._wake.clear()

    def _send_due(self) -> float:
        with self._lock:
            unrecorded = dict(self._unrecorded)
        for key, (delivered, answer) in unrecorded.items():
            self.outbox.record(key, delivered, answer)  # raises while the disk is still full: tried again in 5 s
            with self._lock:
                self._unrecorded.pop(key, None)
        now = datetime.now(UTC)
        ready, soonest = self.outbox.due(now)
        channels = self.channels()
        for key, entry in ready:
            with self._lock:
                if key in self._in_flight or entry["channel"] in self._busy_channels:
                    continue
                self._in_flight.add(key)
                self._busy_channels.add(entry["channel"])
            assert self._pool is not None
            self._pool.submit(self._send_one, key, entry, channels.get(entry["channel"]))
        wait = MAX_SLEEP_SECONDS if soonest is None else (soonest - now).total_seconds()
        if self._unrecorded:  # written by a send that just failed to record: try again soon, not at once
            wait = min(wait, RETRY_SECONDS)
        return max(0.05, min(wait, MAX_SLEEP_SECONDS))

    def _send_one(self, key: str, entry: dict[str, Any], channel: dict[str, Any] | None) -> None:
        outcome: tuple[bool, str] | None = None
        try:
            # `entry` was read before this key was reserved: a send finishing meanwhile may have recorded it.
            current = self.outbox.read()["pushes"].get(key)
            if current is None or current["status"] not in PENDING:
                return
            if datetime.fromisoformat(current["next_try"]) > datetime.now(UTC):
                return
            if channel is None:  # deleted since, or a browser that unsubscribed: nothing left to send to
                self.outbox.record(key, False, "The channel no longer exists.", retry=False)
                return
            try:
                outcome = self.send(channel, entry["title"], entry["body"], self.timeout, entry["occurrence"])
            except Exception as error:  # counted as a try, so a bug cannot make it spin
                log.exception("Push of %s to channel %s failed", entry["occurrence"], entry["channel"])
                outcome = (False, f"Internal error ({type(error).__name__}); see the server log.")
            recorded = self.outbox.record(key, *outcome)
            if recorded and recorded["status"] != "sent":
                log.warning(
                    "Push of %s to channel %s: %s (%s)",
                    entry["occurrence"],
                    channel["id"],
                    recorded["status"],
                    outcome[1],
                )
            self._wake.set()  # a retry may now be due sooner than the pusher planned
        except Exception:
            log.exception(
                "The outcome of pushing %s to channel %s cannot be recorded", entry["occurrence"], entry["channel"]
            )
            if outcome is not None:
                with self._lock:
                    self._unrecorded[key] = outcome
                self._wake.set()  # the pusher writes it later (RETRY_SECONDS apart), never sends it again
        finally:
            with self._lock:
                self._in_flight.discard(key)
                self._busy_channels.discard(entry["channel"])
