"""The reminders users set: `data/reminders.json`, replaced atomically under `reminders.json.lock`.

One file holds the reminders, the claims of occurrences being delivered and each reminder's delivery log.
A reminder has `text`, one schedule — `at` (a local date-time in its `timezone`) or `cron` (five crontab
fields) — `enabled`, `mode` (`generate`: the model words it; `plain`: the text as is), `created_at` and
`source: "user"`. Its `handled_until` cursor is the newest occurrence claimed (or the moment it was
created, edited or resumed): only occurrences after it are due, so nothing fires twice or in a burst.

An occurrence is keyed `<id>@<scheduled_for>`. The leader records its claim here *before* asking the model
and storing the message, and removes it after; a claim left by a leader that died is finished by the next
(see reminder_delivery.py). Every change pokes the leader's wake-up socket, so it never polls.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from apscheduler.triggers.cron import CronTrigger

from cron import crontab_trigger
from errors import BadRequest, NotFound, StorageError
from history_store import file_lock, write_json_atomic

NEXT_RUNS_SHOWN = 3
RUNS_KEPT = 50  # per reminder, newest first
MODES = ("generate", "plain")
EDITABLE = ("text", "at", "cron", "timezone", "enabled", "mode")


@dataclass(frozen=True)
class Occurrence:
    """One fire time of one reminder."""

    reminder_id: str
    scheduled_for: str  # ISO 8601 with the reminder zone's offset
    late: bool = False

    @property
    def key(self) -> str:
        return f"{self.reminder_id}@{self.scheduled_for}"


# ---- schedules ---------------------------------------------------------------------------------


def zone_of(name: Any) -> ZoneInfo:
    """The IANA zone `name`; 400 `invalid_timezone` otherwise."""
    if not isinstance(name, str) or not name:
        raise BadRequest('"timezone" must be an IANA zone name such as Asia/Shanghai or UTC.', code="invalid_timezone")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise BadRequest(
            f'"timezone" {name!r} is not a known IANA zone (such as Asia/Shanghai or UTC).', code="invalid_timezone"
        ) from None


def parse_at(value: Any, zone: ZoneInfo) -> datetime:
    """A local `YYYY-MM-DDTHH:MM[:SS]` in `zone`; 400 `invalid_at` otherwise."""
    try:
        moment = datetime.fromisoformat(value) if isinstance(value, str) and "T" in value else None
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is not None:
        raise BadRequest(
            '"at" must be a local date and time without offset, such as 2026-11-26T08:00:00.', code="invalid_at"
        )
    return moment.replace(tzinfo=zone)


@functools.lru_cache(maxsize=4096)  # building a trigger costs more than asking it; reminders share few schedules
def cron_trigger(value: Any, zone: ZoneInfo) -> CronTrigger:
    """Five crontab fields (minute hour day month weekday, 0/7 Sunday, names allowed); 400 `invalid_cron` otherwise."""
    fields = value.split() if isinstance(value, str) else []
    if len(fields) != 5:
        raise BadRequest(
            '"cron" must be five crontab fields "minute hour day month weekday", such as "0 8 * * 1-5".',
            code="invalid_cron",
        )
    names = ("minute", "hour", "day", "month", "day_of_week")
    try:
        return crontab_trigger({"second": "0", **dict(zip(names, fields, strict=True))}, zone)
    except ValueError as error:
        raise BadRequest(f'"cron" {value!r} is not a valid crontab schedule: {error}.', code="invalid_cron") from None


def _trigger(reminder: dict[str, Any]) -> tuple[datetime | None, CronTrigger | None]:
    """The reminder's one-off time or its cron trigger."""
    zone = ZoneInfo(reminder["timezone"])
    if reminder.get("at"):
        return datetime.fromisoformat(reminder["at"]).replace(tzinfo=zone), None
    return None, cron_trigger(reminder["cron"], zone)


def _cursor(reminder: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(reminder["handled_until"])


def occurrences_after(reminder: dict[str, Any], after: datetime, count: int) -> list[datetime]:
    """Up to `count` fire times strictly after `after`."""
    at, trigger = _trigger(reminder)
    if at is not None:
        return [at] if at > after else []
    found: list[datetime] = []
    moment = after + timedelta(microseconds=1)
    while len(found) < count and (fire := trigger.get_next_fire_time(None, moment)) is not None:  # type: ignore[union-attr]
        found.append(fire)
        moment = fire + timedelta(microseconds=1)
    return found


def due_occurrence(reminder: dict[str, Any], now: datetime, grace: float, late_after: float) -> Occurrence | None:
    """The newest occurrence after the cursor and at or before `now`, if within `grace` seconds; None otherwise.

    Only the newest: a reminder missed several times during downtime is sent once, never in a burst.
    """
    if reminder.get("source") != "user" or not reminder.get("enabled"):
        return None
    start = max(_cursor(reminder), now - timedelta(seconds=grace))
    latest = None
    moment = start
    for _ in range(100_000):  # bounded: the window is at most `grace` seconds of a per-minute schedule
        following = occurrences_after(reminder, moment, 1)
        if not following or following[0] > now:
            break
        latest = moment = following[0]
    if latest is None:
        return None
    late = (now - latest).total_seconds() > late_after
    return Occurrence(reminder["id"], latest.isoformat(), late)


def next_due(reminder: dict[str, Any]) -> datetime | None:
    """When the reminder is next due (possibly already past: due now); None when it never will be."""
    if reminder.get("source") != "user" or not reminder.get("enabled"):
        return None
    upcoming = occurrences_after(reminder, _cursor(reminder), 1)
    return upcoming[0] if upcoming else None


# ---- the store ---------------------------------------------------------------------------------


def _empty() -> dict[str, Any]:
    return {"version": 1, "next_id": 1, "reminders": [], "claims": {}, "runs": {}}


class ReminderStore:
    """Creates, changes, lists and deletes reminders, and keeps their claims and delivery logs."""

    def __init__(self, data_dir: Path, default_timezone: str):
        self.path = data_dir / "reminders.json"
        self.lock_path = data_dir / "reminders.json.lock"
        self.wake_address = wake_address(data_dir)
        self.default_timezone = default_timezone

    def read(self) -> dict[str, Any]:
        """The whole file; an absent file is an empty store."""
        try:
            data = json.loads(self.path.read_bytes())
        except FileNotFoundError:
            return _empty()
        except (OSError, ValueError) as error:
            raise StorageError(f"The reminders file {self.path.name} cannot be read: {error}.") from None
        return {**_empty(), **data} if isinstance(data, dict) else _empty()

    @contextlib.contextmanager
    def changing(self) -> Iterator[dict[str, Any]]:
        """Read, change and replace the file under its lock, then wake the leader."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with file_lock(self.lock_path):
                data = self.read()
                yield data
                write_json_atomic(self.path, data)
        except OSError as error:
            raise StorageError(
                f"The reminders cannot be saved: {error.strerror or error} (is the data folder writable?)."
            ) from None
        self.poke()

    def poke(self) -> None:
        """Wake the leader so it looks at the reminders again; nobody listening, or a full queue, is fine.

        Never blocking: the queue holds only a few datagrams, and the leader pokes itself while it is busy.
        """
        with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sender:
            sender.setblocking(False)
            sender.sendto(b"1", self.wake_address)

    def all(self) -> list[dict[str, Any]]:
        return self.read()["reminders"]

    def get(self, reminder_id: str) -> dict[str, Any]:
        found = next((r for r in self.all() if r["id"] == reminder_id), None)
        if found is None:
            raise NotFound(f"There is no reminder {reminder_id!r}.", code="reminder_not_found")
        return found

    def create(self, fields: dict[str, Any], now: datetime) -> dict[str, Any]:
        """Validate and store a new reminder; returns it."""
        reminder = {
            "id": "",
            "text": None,
            "at": None,
            "cron": None,
            "timezone": fields.get("timezone") or self.default_timezone,
            "enabled": True,
            "mode": "generate",
            "created_at": now.isoformat(timespec="seconds"),
            "source": "user",
            "handled_until": now.isoformat(),
            "last_run": None,
        }
        reminder.update({k: v for k, v in fields.items() if k in EDITABLE and v is not None})
        validate(reminder, now)
        with self.changing() as data:
            reminder["id"] = str(data["next_id"])
            data["next_id"] += 1
            data["reminders"].append(reminder)
        return reminder

    def update(self, reminder_id: str, changes: dict[str, Any], now: datetime) -> dict[str, Any]:
        """Apply a partial change; a new schedule (or resuming) counts from now, so nothing past fires."""
        with self.changing() as data:
            reminder = _find(data, reminder_id)
            changed = {**reminder, **{k: v for k, v in changes.items() if k in EDITABLE}}
            if "at" in changes and changes["at"] is not None:
                changed["cron"] = None
            if "cron" in changes and changes["cron"] is not None:
                changed["at"] = None
            validate(changed, now, check_past="at" in changes or "timezone" in changes)
            rescheduled = any(changed[k] != reminder[k] for k in ("at", "cron", "timezone"))
            if rescheduled or (changed["enabled"] and not reminder["enabled"]):
                changed["handled_until"] = now.isoformat()
            reminder.update(changed)
        return reminder

    def delete(self, reminder_id: str) -> None:
        with self.changing() as data:
            reminder = _find(data, reminder_id)
            data["reminders"].remove(reminder)
            data["runs"].pop(reminder_id, None)

    def runs(self, reminder_id: str) -> list[dict[str, Any]]:
        """The delivery log, newest first."""
        data = self.read()
        _find(data, reminder_id)
        return data["runs"].get(reminder_id, [])

    # ---- delivery bookkeeping (the leader, and POST .../run) ----

    def claim(self, occurrence: Occurrence, *, advance: bool = True) -> dict[str, Any] | None:
        """Record that `occurrence` is being delivered, before anything is sent; its reminder, or None when it
        is gone, paused, or the occurrence is claimed or handled already."""
        with self.changing() as data:
            reminder = next((r for r in data["reminders"] if r["id"] == occurrence.reminder_id), None)
            if reminder is None or occurrence.key in data["claims"]:
                return None
            if advance:
                if not reminder["enabled"] or _cursor(reminder) >= datetime.fromisoformat(occurrence.scheduled_for):
                    return None
                reminder["handled_until"] = occurrence.scheduled_for
            data["claims"][occurrence.key] = {
                "reminder_id": occurrence.reminder_id,
                "scheduled_for": occurrence.scheduled_for,
                "late": occurrence.late,
            }
            return dict(reminder)

    def claims(self) -> list[Occurrence]:
        """Claims left unfinished (by a leader that died mid-delivery, or one in progress)."""
        return [
            Occurrence(c["reminder_id"], c["scheduled_for"], c.get("late", False))
            for c in self.read()["claims"].values()
        ]

    def skip_missed(self, reminder_id: str, now: datetime, last_run: dict[str, Any]) -> None:
        """An occurrence fell longer ago than MISFIRE_GRACE_SECONDS: record it as missed and count from now."""
        with self.changing() as data:
            reminder = next((r for r in data["reminders"] if r["id"] == reminder_id), None)
            if reminder is not None:
                reminder["handled_until"] = now.isoformat()
                reminder["last_run"] = last_run

    def finish(self, occurrence: Occurrence, last_run: dict[str, Any]) -> None:
        """Drop the claim and record the outcome as the reminder's `last_run` and in its log."""
        with self.changing() as data:
            data["claims"].pop(occurrence.key, None)
            reminder = next((r for r in data["reminders"] if r["id"] == occurrence.reminder_id), None)
            if reminder is None:
                return
            reminder["last_run"] = last_run
            log = data["runs"].setdefault(reminder["id"], [])
            log.insert(0, last_run)
            del log[RUNS_KEPT:]


def _find(data: dict[str, Any], reminder_id: str) -> dict[str, Any]:
    found = next((r for r in data["reminders"] if r["id"] == reminder_id), None)
    if found is None:
        raise NotFound(f"There is no reminder {reminder_id!r}.", code="reminder_not_found")
    return found


def validate(reminder: dict[str, Any], now: datetime, check_past: bool = True) -> None:
    """One clear 400 for the first thing wrong with a reminder's fields."""
    text = reminder.get("text")
    if not isinstance(text, str) or not text.strip():
        raise BadRequest('"text" must say what to remind about; it is empty.', code="empty_text")
    if bool(reminder.get("at")) == bool(reminder.get("cron")):
        raise BadRequest(
            'Give exactly one schedule: "at" (a local date-time) or "cron" (five crontab fields).',
            code="invalid_schedule",
        )
    zone = zone_of(reminder.get("timezone"))
    if reminder.get("mode") not in MODES:
        raise BadRequest('"mode" must be "generate" or "plain".', code="invalid_mode")
    if not isinstance(reminder.get("enabled"), bool):
        raise BadRequest('"enabled" must be true or false.', code="invalid_enabled")
    if reminder.get("at"):
        at = parse_at(reminder["at"], zone)
        reminder["at"] = at.replace(tzinfo=None).isoformat()
        if check_past and at <= now:
            raise BadRequest(
                f'"at" {reminder["at"]} is in the past in {reminder["timezone"]} (it is now '
                f"{now.astimezone(zone).replace(tzinfo=None).isoformat(timespec='seconds')}).",
                code="at_in_past",
            )
    else:
        reminder["cron"] = " ".join(reminder["cron"].split())
        trigger = cron_trigger(reminder["cron"], zone)
        if trigger.get_next_fire_time(None, now) is None:
            raise BadRequest(f'"cron" {reminder["cron"]!r} never fires.', code="invalid_cron")


def describe(reminder: dict[str, Any], now: datetime) -> dict[str, Any]:
    """A user reminder as the API shows it: its fields plus `next_runs` (and `done` for a sent one-off)."""
    shown = {k: v for k, v in reminder.items() if k != "handled_until"}
    upcoming = occurrences_after(reminder, max(_cursor(reminder), now), NEXT_RUNS_SHOWN)
    shown["next_runs"] = [t.isoformat() for t in upcoming] if reminder["enabled"] else []
    shown["done"] = bool(reminder.get("at")) and not occurrences_after(reminder, _cursor(reminder), 1)
    return shown


def wake_address(data_dir: Path) -> str:
    """The leader's wake-up socket: a file in the data folder, or (path too long for AF_UNIX) an abstract name."""
    path = str(data_dir.resolve() / "reminders.wake")
    if len(path.encode()) < 100:
        return path
    return "\0chat-reminders-" + hashlib.sha256(path.encode()).hexdigest()[:32]
