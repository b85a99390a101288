"""A reminders file as a long-time user would have one: many reminders of every kind, none due soon."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

SCHEDULES = ("0 8 * * *", "30 9 * * 1-5", "0 17 * * fri", "0 */6 * * *", "0 9 1 * *", "15 7 * * 0,6", "0 12 13 * 5")
ZONES = ("Asia/Shanghai", "Europe/Berlin", "America/New_York", "UTC")


def build_reminders(path: Path, count: int, now: datetime | None = None) -> None:
    """`count` reminders (one in five a one-off next month), written as ReminderStore writes them."""
    now = now or datetime.now(UTC)
    reminders = []
    for number in range(1, count + 1):
        zone = ZONES[number % len(ZONES)]
        one_off = number % 5 == 0
        at = (now + timedelta(days=30, minutes=number)).replace(tzinfo=None, microsecond=0).isoformat()
        reminders.append(
            {
                "id": str(number),
                "text": f"提醒事项 {number}：喝水、站起来走走",
                "at": at if one_off else None,
                "cron": None if one_off else SCHEDULES[number % len(SCHEDULES)],
                "timezone": zone,
                "enabled": number % 10 != 3,
                "mode": "generate",
                "created_at": now.isoformat(timespec="seconds"),
                "source": "user",
                "handled_until": now.isoformat(),
                "last_run": None,
            }
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"version": 1, "next_id": count + 1, "reminders": reminders, "claims": {}}
    path.write_text(json.dumps(payload, ensure_ascii=False, separators=(",", ":")))
