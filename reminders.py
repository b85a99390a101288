"""The reminders users set: `data/reminders.json`, replaced atomically under `reminders.json.lock`.

One file holds the reminders and the claims of occurrences being delivered; `reminder_runs.json` holds each
reminder's delivery log (kept apart so the leader's frequent reads stay small). A reminder has `text`, one
schedule — `at` (a local date-time in its `timezone`) or `cron` (five crontab fields) — `enabled`, `mode`
(`generate`: the model words it; `plain`: the text as is), `created_at` and `source: "user"`. Its
`handled_until` cursor is the newest occurrence claimed (or the moment it was created, edited or resumed):
only occurrences after it are due, so nothing fires twice or in a burst. The cursor never moves back, nor
ahead of the clock; a one-off once claimed is marked `done`, so it stays sent when its zone changes.

An occurrence is keyed `<id>@<scheduled_for>`. The leader records its claim here *before* asking the model
and storing the message, and removes it after; a claim left by a leader that died is finished by the next
(see reminder_delivery.py). Every change pokes the leader's wake-up socket, so it never polls.

Time arithmetic is done on UTC instants; schedules are matched on the zone's wall clock, each matching wall
time placed once on the time line (see cron.WallClockTrigger for daylight-saving nights).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
import os
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cron import WallClockTrigger, wall_to_instant
from errors import AppError, BadRequest, Conflict, NotFound, StorageError
from history_store import file_lock, read_json_or_set_aside, write_json_atomic

log = logging.getLogger(__name__)

NEXT_RUNS_SHOWN = 3
RUNS_KEPT = 50  # per reminder, newest first
LATE_AFTER_SECONDS = 30  # an occurrence sent later than this after its time is marked `late`
MAX_REMINDERS = 1000
MODES = ("generate", "plain")
EDITABLE = ("text", "at", "cron", "timezone", "enabled", "mode", "channels", "conversation_id")
MAX_CHANNELS_NAMED = 100
_CRON_NAMES = ("minute", "hour", "day", "month", "day_of_week")


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


@functools.lru_cache(maxsize=512)
def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def zone_of(name: Any) -> ZoneInfo:
    """The IANA zone `name`; 400 `invalid_timezone` otherwise."""
    if not isinstance(name, str) or not name:
        raise BadRequest('"timezone" must be an IANA zone name such as Asia/Shanghai or UTC.', code="invalid_timezone")
    try:
        return _zone(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise BadRequest(
            f'"timezone" {name!r} is not a known IANA zone (such as Asia/Shanghai or UTC).', code="invalid_timezone"
        ) from None


def parse_at(value: Any, zone: ZoneInfo) -> datetime:
    """A local `YYYY-MM-DDTHH:MM[:SS]` in `zone`, as the UTC instant it names; 400 `invalid_at` otherwise."""
    try:
        moment = datetime.fromisoformat(value) if isinstance(value, str) and "T" in value else None
    except ValueError:
        moment = None
    if moment is not None and not 1900 <= moment.year <= 9000:  # beyond, zone arithmetic overflows
        moment = None
    if moment is None or moment.tzinfo is not None:
        raise BadRequest(
            '"at" must be a local date and time without offset, such as 2026-11-26T08:00:00.', code="invalid_at"
        )
    return wall_to_instant(moment, zone)


@functools.lru_cache(maxsize=4096)  # building a trigger costs more than asking it; reminders share few schedules
def cron_schedule(value: Any, zone_name: str) -> WallClockTrigger:
    """Five crontab fields on `zone_name`'s wall clock (day of month and weekday both set: either); 400 otherwise."""
    fields = value.split() if isinstance(value, str) else []
    if len(fields) != 5:
        raise BadRequest(
            '"cron" must be five crontab fields "minute hour day month weekday", such as "0 8 * * 1-5".',
            code="invalid_cron",
        )
    try:
        return WallClockTrigger(
            {"second": "0", **dict(zip(_CRON_NAMES, fields, strict=True))}, _zone(zone_name), either_day=True
        )
    except ValueError as error:
        raise BadRequest(f'"cron" {value!r} is not a valid crontab schedule: {error}.', code="invalid_cron") from None


def _cron_after(cron: str, zone: ZoneInfo, after: datetime, count: int) -> list[datetime]:
    """Up to `count` UTC instants of `cron` in `zone` strictly after the instant `after`."""
    return cron_schedule(cron, zone.key).after(after, count)


@functools.lru_cache(maxsize=8192)
def _occurrences_cached(at: str | None, cron: str | None, zone_name: str, after: datetime, count: int) -> tuple:
    zone = _zone(zone_name)
    if at:
        instant = wall_to_instant(datetime.fromisoformat(at), zone)
        return (instant,) if instant > after else ()
    return tuple(_cron_after(cron or "", zone, after, count))


def occurrences_after(reminder: dict[str, Any], after: datetime, count: int) -> list[datetime]:
    """Up to `count` fire times (UTC) strictly after the instant `after` (none for a one-off already sent)."""
    if reminder.get("at") and reminder.get("done"):
        return []
    return list(
        _occurrences_cached(
            reminder.get("at"), reminder.get("cron"), reminder["timezone"], after.astimezone(UTC), count
        )
    )


def _cursor(reminder: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(reminder["handled_until"]).astimezone(UTC)


def _stamp(instant: datetime, reminder: dict[str, Any]) -> str:
    """An instant as the reminder's zone shows it, e.g. 2026-11-26T08:00:00+08:00 (also the occurrence key)."""
    return instant.astimezone(_zone(reminder["timezone"])).isoformat()


def _live(reminder: dict[str, Any]) -> bool:
    return reminder.get("source") == "user" and bool(reminder.get("enabled"))


def next_due(reminder: dict[str, Any]) -> datetime | None:
    """When the reminder is next due (possibly already past: due now); None when it never will be."""
    if not _live(reminder):
        return None
    upcoming = occurrences_after(reminder, _cursor(reminder), 1)
    return upcoming[0] if upcoming else None


def latest_due(reminder: dict[str, Any], now: datetime, oldest: datetime) -> datetime | None:
    """The newest occurrence after the cursor, at or before `now` and not before `oldest`.

    Only the newest: a reminder missed several times during downtime is sent once, never in a burst.
    """
    latest = None
    moment = max(_cursor(reminder), oldest - timedelta(microseconds=1))
    while (following := occurrences_after(reminder, moment, 1)) and following[0] <= now:
        latest = moment = following[0]
    return latest


# ---- the store ---------------------------------------------------------------------------------


def _empty() -> dict[str, Any]:
    return {"version": 1, "next_id": 1, "reminders": [], "claims": {}}


class ReminderStore:
    """Creates, changes, lists and deletes reminders, and keeps their claims and delivery logs."""

    def __init__(self, data_dir: Path, default_timezone: str, max_text_chars: int = 32_000):
        self.path = data_dir / "reminders.json"
        self.runs_path = data_dir / "reminder_runs.json"
        self.lock_path = data_dir / "reminders.json.lock"
        self.wake_address = wake_address(data_dir)
        self.default_timezone = default_timezone
        self.max_text_chars = max_text_chars
        self._cache: tuple[tuple[int, int, int], dict[str, Any]] | None = None

    def _stat_key(self) -> tuple[int, int, int] | None:
        try:
            stat = os.stat(self.path)
        except FileNotFoundError:
            return None
        return stat.st_ino, stat.st_size, stat.st_mtime_ns

    def read(self) -> dict[str, Any]:
        """The whole file (an absent file is an empty store); parsed again only when the file changed.

        Callers must not change what it returns outside `changing()`.
        """
        try:
            key = self._stat_key()
            if key is None:
                return _empty()
            if self._cache is not None and self._cache[0] == key:
                return self._cache[1]
            data = json.loads(self.path.read_bytes())
        except FileNotFoundError:
            return _empty()
        except (OSError, ValueError) as error:
            raise StorageError(f"The reminders file {self.path.name} cannot be read: {error}.") from None
        data = {**_empty(), **data} if isinstance(data, dict) else _empty()
        data.pop("runs", None)  # kept in reminder_runs.json since the file format settled
        self._cache = (key, data)
        return data

    def _read_runs(self) -> dict[str, list[dict[str, Any]]]:
        runs = read_json_or_set_aside(self.runs_path, dict, "The reminders' log")
        return runs if isinstance(runs, dict) else {}

    @contextlib.contextmanager
    def changing(self, *, runs: bool = False) -> Iterator[dict[str, Any]]:
        """Read, change and replace the file under its lock, then wake the leader.

        Nothing is written when the change left the data as it was. With `runs`, the delivery log is
        read and written too, as `data["runs"]`.
        """
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with file_lock(self.lock_path):
                self._cache = None
                data = json.loads(json.dumps(self.read()))  # a private copy: `read()` shares its cache
                before = json.dumps(data, sort_keys=True)
                if runs:
                    data["runs"] = self._read_runs()
                yield data
                log_after = data.pop("runs", None)
                changed = json.dumps(data, sort_keys=True) != before
                if changed:
                    write_json_atomic(self.path, data)
                if runs and log_after is not None:
                    write_json_atomic(self.runs_path, log_after)
        except OSError as error:
            raise StorageError(
                f"The reminders cannot be saved: {error.strerror or error} (is the data folder writable?)."
            ) from None
        if changed:
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
        return _find(self.read(), reminder_id)

    def create(self, fields: dict[str, Any], now: datetime, twin_window: float = 0) -> dict[str, Any]:
        """Validate and store a new reminder; returns it.

        With `twin_window`, a reminder just like it (text, schedule, zone, mode) created at most that many seconds
        ago is returned instead: a chat turn retried after its tools ran asks for the same reminder again.
        """
        reminder = {
            "id": "",
            "text": None,
            "at": None,
            "cron": None,
            "timezone": fields.get("timezone") or self.default_timezone,
            "enabled": True,
            "mode": "generate",
            "channels": None,  # all
            "conversation_id": "main",  # where its messages go
            "created_at": now.isoformat(timespec="seconds"),
            "source": "user",
            "handled_until": None,
            "last_run": None,
            "done": False,
        }
        reminder.update({k: v for k, v in fields.items() if k in EDITABLE and v is not None})
        self.validate(reminder, now)
        with self.changing() as data:
            twin = _twin(data["reminders"], reminder, now, twin_window) if twin_window else None
            if twin is not None:
                return twin
            if len(data["reminders"]) >= MAX_REMINDERS:
                raise Conflict(
                    f"There are {MAX_REMINDERS} reminders already, the most this server keeps; delete some first.",
                    code="too_many_reminders",
                )
            now = _later(now, datetime.now(UTC))  # taken under the lock, so a waiting writer cannot move it back
            reminder["handled_until"] = now.astimezone(UTC).isoformat()
            reminder["id"] = str(data["next_id"])
            data["next_id"] += 1
            data["reminders"].append(reminder)
        return reminder

    def update(self, reminder_id: str, changes: dict[str, Any], now: datetime) -> dict[str, Any]:
        """Apply a partial change; a new schedule (or resuming) counts from now, so nothing past fires."""
        with self.changing() as data:
            now = _later(now, datetime.now(UTC))
            reminder = _find(data, reminder_id)
            changed = {"channels": None, **reminder, **{k: v for k, v in changes.items() if k in EDITABLE}}
            if changes.get("at") is not None:
                changed["cron"] = None
            if changes.get("cron") is not None:
                changed["at"] = None
            # A sent one-off stays sent when only its zone (or anything but `at`) changes.
            was_sent = bool(reminder.get("at")) and not occurrences_after(reminder, _cursor(reminder), 1)
            keeps_sent = was_sent and "at" not in changes and bool(changed.get("at"))
            self.validate(changed, now, check_past=("at" in changes or "timezone" in changes) and not keeps_sent)
            changed["done"] = keeps_sent
            rescheduled = any(changed[k] != reminder[k] for k in ("at", "cron", "timezone"))
            if rescheduled:  # a new schedule counts from now (a cursor ahead of the clock was an older version's)
                changed["handled_until"] = now.isoformat()
            elif changed["enabled"] and not reminder["enabled"]:  # resumed: what was claimed stays claimed
                changed["handled_until"] = max(_cursor(reminder), now).isoformat()
            reminder.update(changed)
        return reminder

    def delete(self, reminder_id: str) -> None:
        with self.changing(runs=True) as data:
            reminder = _find(data, reminder_id)
            data["reminders"].remove(reminder)
            data["runs"].pop(reminder_id, None)

    def forget_channel(self, channel_id: str) -> None:
        """A channel was deleted: reminders that named it no longer do (one that named only it pushes nowhere)."""
        with self.changing() as data:
            for reminder in data["reminders"]:
                if channel_id in (reminder.get("channels") or []):
                    reminder["channels"] = [c for c in reminder["channels"] if c != channel_id]

    def runs(self, reminder_id: str) -> list[dict[str, Any]]:
        """The delivery log, newest first."""
        _find(self.read(), reminder_id)
        return self._read_runs().get(reminder_id, [])

    def validate(self, reminder: dict[str, Any], now: datetime, check_past: bool = True) -> None:
        validate(reminder, now, check_past, max_text_chars=self.max_text_chars)

    # ---- delivery bookkeeping (the leader) ----

    def claim_due(
        self, now: datetime, grace: float, since: datetime | None = None
    ) -> tuple[list[tuple[Occurrence, dict[str, Any]]], list[tuple[Occurrence, dict[str, Any]]]]:
        """Claim every occurrence due at `now`, all in one write, before anything is sent.

        Due means after the reminder's cursor and at most `grace` seconds ago, or at any time `since` (when the
        caller began to deliver: what fell due while it was busy sending is late, not missed). Returns the claims
        with their reminders, and the occurrences passed over with the record to `finish` them with: those that
        fell earlier (missed, counted from now) and those of a reminder that fails its checks. A reminder whose
        schedule cannot be read is logged and skipped.
        """
        claimed: list[tuple[Occurrence, dict[str, Any]]] = []
        passed_over: list[tuple[Occurrence, dict[str, Any]]] = []
        with self.changing() as data:
            now = _later(now, datetime.now(UTC))
            oldest = now - timedelta(seconds=grace)
            if since is not None:
                oldest = min(oldest, since.astimezone(UTC))
            for reminder in data["reminders"]:
                due = None
                try:
                    due = next_due(reminder)
                    if due is None or due > now:
                        continue
                    latest = latest_due(reminder, now, oldest)
                    self.validate(dict(reminder), now, check_past=False)  # e.g. an entry left without `mode`
                except AppError as error:
                    if due is None:  # its schedule cannot be read: nothing is ever due
                        log.error("Reminder %s cannot be scheduled: %s", reminder.get("id"), error.message)
                        continue
                    log.error("Reminder %s cannot be sent: %s", reminder.get("id"), error.message)
                    passed_over.append(_move_past(reminder, due, now, error.message))
                    continue
                except Exception:  # a hand-edited or outdated entry must not stop the others
                    log.exception("Reminder %s cannot be scheduled; skipped", reminder.get("id"))
                    continue
                if latest is None:
                    passed_over.append(_move_past(reminder, due, now))
                    continue
                occurrence = Occurrence(reminder["id"], _stamp(latest, reminder), is_late(latest, now))
                reminder["handled_until"] = latest.isoformat()
                reminder["done"] = bool(reminder.get("at"))
                data["claims"][occurrence.key] = {
                    "reminder_id": occurrence.reminder_id,
                    "scheduled_for": occurrence.scheduled_for,
                    "late": occurrence.late,
                }
                claimed.append((occurrence, dict(reminder)))
        return claimed, passed_over

    def claims(self) -> list[Occurrence]:
        """Claims left unfinished (by a leader that died mid-delivery, or one in progress)."""
        return [
            Occurrence(c["reminder_id"], c["scheduled_for"], c.get("late", False))
            for c in self.read()["claims"].values()
        ]

    def finish(self, occurrence: Occurrence, last_run: dict[str, Any]) -> None:
        """Drop the claim and record the outcome as the reminder's `last_run` and in its log."""
        self.finish_many([(occurrence, last_run)])

    def finish_many(self, outcomes: list[tuple[Occurrence, dict[str, Any]]]) -> None:
        """`finish` for each (occurrence, last_run), all in one write."""
        if not outcomes:
            return
        with self.changing(runs=True) as data:
            for occurrence, last_run in outcomes:
                data["claims"].pop(occurrence.key, None)
                reminder = next((r for r in data["reminders"] if r["id"] == occurrence.reminder_id), None)
                if reminder is None or not last_run:
                    continue
                reminder["last_run"] = last_run
                log = data["runs"].setdefault(reminder["id"], [])
                log.insert(0, last_run)
                del log[RUNS_KEPT:]


def is_late(due: datetime, now: datetime) -> bool:
    """Whether an occurrence sent at `now` is more than LATE_AFTER_SECONDS past its time `due`."""
    return (now - due).total_seconds() > LATE_AFTER_SECONDS


def _later(a: datetime, b: datetime) -> datetime:
    return max(a.astimezone(UTC), b.astimezone(UTC))


def _move_past(
    reminder: dict[str, Any], due: datetime, now: datetime, problem: str | None = None
) -> tuple[Occurrence, dict[str, Any]]:
    """Move the cursor past occurrence `due`, which will not be sent (missed, or the reminder fails `problem`);
    returns the occurrence with its record."""
    reminder["handled_until"] = now.isoformat()
    reminder["done"] = bool(reminder.get("at"))
    scheduled_for = _stamp(due, reminder)
    missed = f"Missed: the server was not running at {scheduled_for} nor within MISFIRE_GRACE_SECONDS after it."
    record = {
        "time": now.astimezone(_zone(reminder["timezone"])).isoformat(timespec="seconds"),
        "scheduled_for": scheduled_for,
        "status": "failed" if problem else "missed",
        "error": problem or missed,
        "late": False,
        "generated": False,
        "message_id": None,
    }
    return Occurrence(reminder["id"], scheduled_for), record


def _twin(reminders: list[dict[str, Any]], new: dict[str, Any], now: datetime, window: float) -> dict[str, Any] | None:
    same = ("source", "text", "at", "cron", "timezone", "mode")
    for reminder in reversed(reminders):  # the newest first
        with contextlib.suppress(KeyError, TypeError, ValueError):  # an entry edited by hand is nobody's twin
            age = (now - datetime.fromisoformat(reminder["created_at"])).total_seconds()
            live = reminder.get("enabled") and not reminder.get("done")
            if live and all(reminder.get(key) == new[key] for key in same) and 0 <= age <= window:
                return reminder
    return None


def _find(data: dict[str, Any], reminder_id: str) -> dict[str, Any]:
    found = next((r for r in data["reminders"] if r["id"] == reminder_id), None)
    if found is None:
        raise NotFound(f"There is no reminder {reminder_id!r}.", code="reminder_not_found")
    return found


def validate(reminder: dict[str, Any], now: datetime, check_past: bool = True, *, max_text_chars: int = 32_000) -> None:
    """One clear 400 for the first thing wrong with a reminder's fields; normalises `at` and `cron`."""
    text = reminder.get("text")
    if not isinstance(text, str) or not text.strip():
        raise BadRequest('"text" must say what to remind about; it is empty.', code="empty_text")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise BadRequest('"text" must be valid Unicode text.', code="invalid_text") from None
    if len(text) > max_text_chars:
        raise BadRequest(
            f'"text" is {len(text)} characters long; the limit is {max_text_chars} (MAX_MESSAGE_CHARS).',
            code="text_too_long",
        )
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
    channels = reminder.get("channels")
    if channels is not None and (
        not isinstance(channels, list)
        or len(channels) > MAX_CHANNELS_NAMED
        or not all(isinstance(c, str) and 0 < len(c) <= 40 for c in channels)
    ):
        raise BadRequest(
            '"channels" must be a list of channel ids from GET /api/channels, or null for all of them.',
            code="invalid_channels",
        )
    if reminder.get("at"):
        at = parse_at(reminder["at"], zone)
        reminder["at"] = datetime.fromisoformat(reminder["at"]).isoformat()
        if check_past and at <= now:
            raise BadRequest(
                f'"at" {reminder["at"]} is in the past in {reminder["timezone"]} (it is now '
                f"{now.astimezone(zone).replace(tzinfo=None).isoformat(timespec='seconds')}).",
                code="at_in_past",
            )
    else:
        if not isinstance(reminder["cron"], str):
            raise BadRequest('"cron" must be five crontab fields such as "0 8 * * 1-5".', code="invalid_cron")
        reminder["cron"] = " ".join(reminder["cron"].split())
        if not _cron_after(reminder["cron"], zone, now, 1):
            raise BadRequest(f'"cron" {reminder["cron"]!r} never fires.', code="invalid_cron")


def describe(reminder: dict[str, Any], now: datetime) -> dict[str, Any]:
    """A user reminder as the API shows it: its fields plus `next_runs` (and `done` for a sent one-off)."""
    shown = {"conversation_id": "main", **{k: v for k, v in reminder.items() if k != "handled_until"}}
    shown["next_runs"] = [_stamp(t, reminder) for t in upcoming(reminder, now)] if reminder["enabled"] else []
    shown["done"] = bool(reminder.get("at")) and not occurrences_after(reminder, _cursor(reminder), 1)
    return shown


def upcoming(reminder: dict[str, Any], now: datetime) -> list[datetime]:
    """The next NEXT_RUNS_SHOWN fire times after both the cursor and `now`.

    Asked from the cursor first, which stays put between fires, so a listing hits the cache.
    """
    cursor = _cursor(reminder)
    times = [t for t in occurrences_after(reminder, cursor, NEXT_RUNS_SHOWN) if t > now]
    if len(times) < NEXT_RUNS_SHOWN and reminder.get("cron") and now > cursor:
        times = occurrences_after(reminder, now, NEXT_RUNS_SHOWN)
    return times


def wake_address(data_dir: Path) -> str:
    """The leader's wake-up socket: a file in the data folder, or (path too long for AF_UNIX) an abstract name."""
    path = str(data_dir.resolve() / "reminders.wake")
    if len(path.encode()) < 100:
        return path
    return "\0chat-reminders-" + hashlib.sha256(path.encode()).hexdigest()[:32]
