"""Cron fields as crontab means them, turned into an APScheduler trigger.

APScheduler 3.x numbers weekdays from Monday = 0, and its `CronTrigger.from_crontab` keeps that numbering
(its docstring warns of the mismatch; only 4.x fixes it). In crontab 0 and 7 are Sunday, 1 Monday … 6
Saturday. So each item of a day-of-week field is spelled out here as the day names it covers, which both
read alike: `1-5` becomes `mon,tue,wed,thu,fri`. This also refuses what APScheduler would quietly cut short
(it reads `mon-5` as `mon` and `mon-fri/2` as `mon-fri`). The other fields pass through unchanged.

`WallClockTrigger` matches the fields on a zone's wall clock and places each matching wall time once on the
time line. APScheduler 3.11's own arithmetic in a zone with daylight saving returns the same time again on the
night clocks go back (so a scheduler asking for the next run spins) and skips or shifts times on the night
they go forward. Here the times a forward jump skips fire once, at the jump (02:00 … 02:59 all become one
fire at 03:00, as Vixie cron does for daylight saving), and a time that occurs twice fires at its first
occurrence only. Wall times thus land on the time line in their own order, so searching from a moment's wall
time misses nothing.
The wall-clock matching itself is APScheduler's, done in UTC, which has no such nights.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta, tzinfo

from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger

CRONTAB_WEEKDAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")  # index = crontab number; 7 is Sunday again
WEEKDAY_FORM = (
    "a day-of-week cron field as in crontab: 0-7 (0 and 7 are Sunday) or mon-sun, e.g. *, 1-5, mon-fri, 0,6 or */2"
)
# `*`, `*/2`, `3`, `1-5`, `1-5/2`, `1/2` (from 1 on, every other day), and the same with names: `mon-fri`.
_ITEM = re.compile(r"(?:(?P<star>\*)|(?P<first>\d+|[a-z]{3})(?:-(?P<last>\d+|[a-z]{3}))?)(?:/(?P<step>\d+))?")


def crontab_trigger(fields: Mapping[str, str], timezone: tzinfo) -> CronTrigger:
    """The trigger for six cron fields (second … day_of_week, APScheduler's names), weekdays read as in crontab."""
    return CronTrigger(timezone=timezone, **{**fields, "day_of_week": crontab_weekdays(fields["day_of_week"])})


def crontab_weekdays(field: str) -> str:
    """A crontab day-of-week field as APScheduler day names; ValueError for anything crontab would not accept."""
    return ",".join(_day_names(item.strip().lower()) for item in field.split(","))


def _day_names(item: str) -> str:
    """One list item as the day names it covers, e.g. `5-7` → `sun,fri,sat`."""
    match = _ITEM.fullmatch(item)
    if match is None:
        raise ValueError(f"{item!r} is not a day, a range of days or a step")
    star, first, last, step = match["star"], match["first"], match["last"], match["step"]
    if star and step is None:
        return "*"
    start = 0 if star else _day_number(first, end=False)
    # `*/n` and `n/m` run to the end of the week, which crontab counts as 7 (Sunday again).
    end = _day_number(last, end=True) if last else 7 if star or step else start
    every = int(step) if step else 1
    if not start <= end <= 7:
        raise ValueError(f"{item!r} is not a range of days within 0-7")
    if every < 1:
        raise ValueError(f"{item!r} has a step of 0")
    days = {number % 7 for number in range(start, end + 1, every)}
    return ",".join(CRONTAB_WEEKDAYS[day] for day in sorted(days))


def _day_number(text: str, *, end: bool) -> int:
    """A day as its crontab number; `sun` ending a range is 7, so `sat-sun` and `mon-sun` work as before."""
    if text.isdigit():
        return int(text)
    if text not in CRONTAB_WEEKDAYS:
        raise ValueError(f"{text!r} is not a day name (sun, mon, tue, wed, thu, fri, sat)")
    return 7 if end and text == "sun" else CRONTAB_WEEKDAYS.index(text)


class WallClockTrigger(BaseTrigger):
    """Six cron fields (APScheduler's names, weekdays as in crontab) on `timezone`'s wall clock.

    With `either_day`, a schedule restricting both day of month and day of week fires on either, as crontab
    does (APScheduler wants both). A schedule (or half of one) naming only days no month has, such as the
    31st of February, is dropped when built: APScheduler would search for it up to the year 9999.
    """

    def __init__(self, fields: Mapping[str, str], timezone: tzinfo, *, either_day: bool = False):
        self.timezone = timezone
        self.fields = dict(fields)
        # crontab(5): a field starting with `*` (also `*/2`) does not restrict, so it never makes "either day".
        if either_day and not fields["day"].startswith("*") and not fields["day_of_week"].startswith("*"):
            halves = (
                crontab_trigger({**fields, "day_of_week": "*"}, UTC),
                crontab_trigger({**fields, "day": "*"}, UTC),
            )
        else:
            halves = (crontab_trigger(fields, UTC),)
        self._walls = tuple(trigger for trigger in halves if _has_a_day(trigger))

    def after(self, instant: datetime, count: int) -> list[datetime]:
        """Up to `count` fire times (UTC) strictly after `instant`."""
        found: list[datetime] = []
        floor = instant.astimezone(UTC)
        wall: datetime | None = floor.astimezone(self.timezone).replace(tzinfo=None)
        for _ in range(count + 24 * 3600):  # bounded: only the hour repeated when clocks go back is passed over
            wall = self._next_wall(wall)  # type: ignore[arg-type]
            if wall is None:
                break
            placed = wall_to_instant(wall, self.timezone)
            if placed > floor:
                found.append(placed)
                floor = placed
                if len(found) == count:
                    break
        return found

    def never_fires(self) -> bool:
        return not self._walls

    def _next_wall(self, wall: datetime) -> datetime | None:
        start = wall.replace(tzinfo=UTC) + timedelta(microseconds=1)
        fires = [fire for trigger in self._walls if (fire := trigger.get_next_fire_time(None, start)) is not None]
        return min(fires).replace(tzinfo=None) if fires else None

    def get_next_fire_time(self, previous_fire_time: datetime | None, now: datetime) -> datetime | None:
        """APScheduler's contract: the first fire time after the previous one, or at or after `now` when there
        was none, in the trigger's zone."""
        start = now.astimezone(UTC)
        if previous_fire_time is not None:  # the runs since the previous one, never the previous one again
            start = previous_fire_time.astimezone(UTC) + timedelta(microseconds=1)
        found = self.after(start - timedelta(microseconds=1), 1)
        return found[0].astimezone(self.timezone) if found else None

    def __str__(self) -> str:
        return f"wall-clock cron {' '.join(self.fields.values())} in {self.timezone}"


def _has_a_day(trigger: CronTrigger) -> bool:
    """Whether the trigger's month and day-of-month fields name a date some year has (February 29 counts)."""
    fields = {field.name: field for field in trigger.fields}
    for month in range(1, 13):
        first = datetime(2000, month, 1)  # a leap year
        if fields["month"].get_next_value(first) == month and fields["day"].get_next_value(first) is not None:
            return True
    return False


def wall_to_instant(wall: datetime, timezone: tzinfo) -> datetime:
    """The UTC instant of naive wall time `wall` in `timezone`: when it occurs twice, the first time; when a
    forward jump skips it, the instant of the jump (so later wall times never land earlier)."""
    instant = wall.replace(tzinfo=timezone, fold=0).astimezone(UTC)
    if instant.astimezone(timezone).replace(tzinfo=None) == wall:
        return instant
    # In the gap: fold 0 reads it with the offset before the jump (landing after it), fold 1 with the one
    # after (landing before it). The jump lies between; find the first whole second with the new offset.
    before = int(wall.replace(tzinfo=timezone, fold=1).timestamp())
    after = int(instant.timestamp())
    new_offset = instant.astimezone(timezone).utcoffset()
    while after - before > 1:
        middle = (before + after) // 2
        if datetime.fromtimestamp(middle, timezone).utcoffset() == new_offset:
            after = middle
        else:
            before = middle
    return datetime.fromtimestamp(after, UTC)
