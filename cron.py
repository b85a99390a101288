"""Cron fields as crontab means them, turned into an APScheduler trigger.

APScheduler 3.x numbers weekdays from Monday = 0, and its `CronTrigger.from_crontab` keeps that numbering
(its docstring warns of the mismatch; only 4.x fixes it). In crontab 0 and 7 are Sunday, 1 Monday … 6
Saturday. So each item of a day-of-week field is spelled out here as the day names it covers, which both
read alike: `1-5` becomes `mon,tue,wed,thu,fri`. This also refuses what APScheduler would quietly cut short
(it reads `mon-5` as `mon` and `mon-fri/2` as `mon-fri`). The other fields pass through unchanged.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import tzinfo

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
