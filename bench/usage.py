"""Time GET /api/usage's report over 50,000 stored messages: cold, warm, after a turn, and a whole year.

The messages are written to disk with the app's own store (Conversations.create: JSON Lines logs and their
archives), half of them replies with `usage`, evenly spread over the last `--spread` days. The report reads
each conversation newest first and stops at the window, so a 30-day report over a year of history reads
about a twelfth of it; a report with nothing changed since the last one reads nothing.

    .venv/bin/python bench/usage.py [--messages 50000] [--conversations 50] [--spread 365]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from config import load_settings  # noqa: E402
from conversations import Conversations  # noqa: E402
from usage import UsageReport  # noqa: E402

ZONE = "Asia/Shanghai"


def messages(count: int, spread_days: float, offset: int, stride: int) -> list[dict]:
    """`count` alternating user/assistant messages, the last one now, evenly `spread_days` apart in all."""
    now = datetime.now(ZoneInfo(ZONE))
    step = timedelta(days=spread_days) / (count * stride)
    made = []
    for number in range(count):
        at = now - step * ((count - number) * stride - offset)
        message = {"role": "user" if number % 2 == 0 else "assistant", "content": "x" * 40, "timestamp": at.isoformat()}
        if message["role"] == "assistant":
            message["usage"] = {"prompt_tokens": 100 + number % 7, "completion_tokens": 20, "total_tokens": 120}
        made.append(message)
    return made


def milliseconds(action: Callable[[], object]) -> float:
    started = time.perf_counter()
    action()
    return (time.perf_counter() - started) * 1000


def run(total: int, chats: int, spread: float) -> None:
    """Store `total` messages in `chats` conversations and print the report's timings."""
    with tempfile.TemporaryDirectory() as folder:
        settings = load_settings(
            {"API_KEY": "sk-bench", "CHAT_HISTORY_FILE": str(Path(folder) / "chat_history.json"), "TIMEZONE": ZONE}
        )
        conversations = Conversations(settings)
        ids = [
            conversations.create(f"对话 {n}", messages=messages(total // chats, spread, n, chats))["id"]
            for n in range(chats)
        ]
        # Each report object starts with nothing kept, as a freshly started worker does.
        cold = {days: milliseconds(lambda d=days: UsageReport(conversations, ZONE).report(d)) for days in (30, 366)}
        report = UsageReport(conversations, ZONE)
        report.report(30)
        warm = sorted(milliseconds(lambda: report.report(30)) for _ in range(20))
        conversations.store(ids[0]).append("assistant", "a new reply", usage={"total_tokens": 5})
        changed = milliseconds(lambda: report.report(30))
        print(
            f"{total} messages in {chats} chats over {spread:g} days: 30 days cold {cold[30]:7.1f} ms, "
            f"warm p50 {warm[len(warm) // 2]:5.1f} ms, after a turn {changed:6.1f} ms; "
            f"366 days cold {cold[366]:7.1f} ms"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=50_000)
    parser.add_argument("--conversations", type=int, default=50)
    parser.add_argument("--spread", type=float, default=365, help="days the messages span, ending now")
    args = parser.parse_args()
    run(args.messages, args.conversations, args.spread)
    run(args.messages, 1, args.spread)
    run(args.messages, args.conversations, 30)  # all inside the window: the most a 30-day report reads


if __name__ == "__main__":
    main()
