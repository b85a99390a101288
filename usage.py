"""Token usage over the last days: what the model API reported for each reply, per day and per conversation.

Each assistant message keeps the upstream's `usage` (summed over a turn's tool rounds, chat_service.py).
A report reads each conversation newest first, a page at a time, and stops at the first page that lies
wholly before the window: its cost follows the messages inside the window, never the whole archive. Each
process also keeps every conversation's daily counts with its store's `version()`, so a report reads only
the conversations that changed since the last one (after a turn: one).

What counts is what the history shows: the messages of a cleared conversation (archived, hidden) and of a
deleted one (moved to `deleted/`) no longer count. The report describes the history; it is not a bill.
Calls stored on no message (a conversation's title) are not counted either.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from conversations import Conversations
from history_store import HistoryStore, Message

MIN_DAYS, MAX_DAYS, DEFAULT_DAYS = 1, 366, 30
PAGE = 200  # messages read at a time, newest first
TOKENS = ("prompt_tokens", "completion_tokens", "total_tokens")
Counts = dict[str, int]  # the three TOKENS and `messages`, the replies that reported usage


@dataclass(frozen=True)
class _Counted:
    """One conversation's daily counts, from `since` on, as read at `version`."""

    version: Any
    since: date
    title: str
    by_day: dict[str, Counts]


def _empty() -> Counts:
    return dict.fromkeys((*TOKENS, "messages"), 0)


def _add(total: Counts, counts: Counts) -> None:
    for key, value in counts.items():
        total[key] += value


def _counts(usage: dict[str, Any]) -> Counts:
    """A message's usage as whole numbers; a provider that sends no total gets prompt + completion."""

    def number(key: str) -> int:
        value = usage.get(key)
        return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0

    prompt, completion = number("prompt_tokens"), number("completion_tokens")
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": number("total_tokens") or prompt + completion,
        "messages": 1,
    }


def _moment(message: Message) -> datetime | None:
    """When a message was stored; None when its timestamp cannot be read (it is then not counted)."""
    stamp = message.get("timestamp")
    try:
        moment = datetime.fromisoformat(stamp) if isinstance(stamp, str) else None
    except ValueError:
        return None
    if moment is not None and moment.tzinfo is None:  # the store always writes an offset; a naive one is UTC
        moment = moment.replace(tzinfo=UTC)
    return moment


class UsageReport:
    """Sums the stored usage of every conversation over the last days, in the app's TIMEZONE."""

    def __init__(self, conversations: Conversations, timezone: str):
        self.conversations = conversations
        self.zone = ZoneInfo(timezone)
        self._counted: dict[str, _Counted] = {}
        self._lock = threading.Lock()

    def report(self, days: int = DEFAULT_DAYS) -> dict[str, Any]:
        """The last `days` days, today included: totals, each day with usage (oldest first) and each
        conversation with usage (most tokens first)."""
        if not MIN_DAYS <= days <= MAX_DAYS:
            raise ValueError(f"days must be between {MIN_DAYS} and {MAX_DAYS}.")
        today = datetime.now(self.zone).date()
        since = today - timedelta(days=days - 1)
        first = since.isoformat()
        total = _empty()
        by_day: dict[str, Counts] = {}
        by_conversation: list[dict[str, Any]] = []
        for conversation_id, counted in self._refreshed(since):
            mine = _empty()
            for day, counts in counted.by_day.items():
                if day >= first:
                    _add(mine, counts)
                    _add(by_day.setdefault(day, _empty()), counts)
            if mine["messages"]:
                _add(total, mine)
                by_conversation.append({"conversation_id": conversation_id, "title": counted.title, **mine})
        by_conversation.sort(key=lambda entry: (-entry["total_tokens"], entry["conversation_id"]))
        return {
            "days": days,
            "since": first,
            "today": today.isoformat(),
            "timezone": self.zone.key,
            "total": total,
            "by_day": [{"date": day, **by_day[day]} for day in sorted(by_day)],
            "by_conversation": by_conversation,
        }

    def _refreshed(self, since: date) -> list[tuple[str, _Counted]]:
        """Every conversation's counts from `since` on: those kept where the conversation did not change and
        they reach back far enough, else read again. Conversations gone are forgotten."""
        with self._lock:
            kept = dict(self._counted)
        current: dict[str, _Counted] = {}
        for conversation_id, store in self.conversations.each():
            version = store.version()
            counted = kept.get(conversation_id)
            if counted is None or counted.version != version or counted.since > since:
                title = store.meta().get("title") or ""
                counted = _Counted(version, since, title, self._daily(store, since))
            current[conversation_id] = counted
        with self._lock:
            self._counted = current
        return list(current.items())

    def _daily(self, store: HistoryStore, since: date) -> dict[str, Counts]:
        """The usage of one conversation's visible replies stored on `since` or later, per local day.

        Newest first, a page at a time, until a page holds nothing inside the window (a whole page, not one
        message: an imported conversation's timestamps may be a little out of order).
        """
        start = datetime.combine(since, time.min, self.zone)
        by_day: dict[str, Counts] = {}
        before: int | None = None
        while True:
            messages, more = store.page(PAGE, before)
            inside = False
            for message in messages:
                moment = _moment(message)
                if moment is None or moment < start:
                    continue
                inside = True
                usage = message.get("usage")
                if message.get("role") == "assistant" and isinstance(usage, dict) and usage:
                    day = moment.astimezone(self.zone).date().isoformat()
                    _add(by_day.setdefault(day, _empty()), _counts(usage))
            if not (more and inside and messages):
                return by_day
            before = messages[0]["id"]
