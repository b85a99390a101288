"""Build a chat history of any size directly in the store's on-disk format, in seconds.

Appending 100,000 messages one by one through HistoryStore would fsync 100,000 times; instead
this writes the main conversation's log and archive files in one go, with the store's own
`initialise` (as an import does): the newest messages in the log, the rest in archive files.
"""

from __future__ import annotations

import os
import shutil
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from config import load_settings  # noqa: E402
from history_store import HistoryStore  # noqa: E402

QUESTIONS = ["今天天气怎么样？", "帮我写一首关于春天的短诗。", "Python 的列表和元组有什么区别？", "推荐三本科幻小说。"]
ANSWER = "这是一个示例回复，长度和真实的回答差不多。" * 6  # about 130 characters, like a short real reply


def fake_message(number: int, start: datetime) -> dict[str, Any]:
    """Message `number` of an alternating user/assistant conversation, shaped like the store's."""
    stamp = (start + timedelta(seconds=30 * number)).isoformat(timespec="milliseconds")
    if number % 2:
        return {
            "id": number,
            "role": "user",
            "content": f"第{number}条：{QUESTIONS[number % 4]}",
            "timestamp": stamp,
            "is_scheduled": False,
        }
    return {
        "id": number,
        "role": "assistant",
        "content": ANSWER,
        "timestamp": stamp,
        "is_scheduled": False,
        "model": "fake/model",
        "reply_to": number - 1,
        "usage": {"prompt_tokens": 10, "completion_tokens": 130, "total_tokens": 140},
    }


def configured_live_limit() -> int:
    """HISTORY_LIVE_LIMIT as the benchmarked servers see it: this environment's, else the app's default."""
    return load_settings(os.environ).history_live_limit


def main_log(history_file: Path) -> Path:
    """Where the app keeps the main conversation when CHAT_HISTORY_FILE is `history_file`."""
    return history_file.parent / "conversations" / "main.jsonl"


def build_history(path: Path, total: int, live_limit: int | None = None) -> None:
    """Write a main conversation of `total` messages for CHAT_HISTORY_FILE `path`, replacing any there."""
    live_limit = live_limit or configured_live_limit()
    log = main_log(path)
    log.parent.mkdir(parents=True, exist_ok=True)
    archive_dir = log.with_name(log.stem + "-archive")
    if archive_dir.exists():
        shutil.rmtree(archive_dir)
    start = datetime(2025, 1, 1, tzinfo=UTC)
    messages = [{k: v for k, v in fake_message(n, start).items() if k != "id"} for n in range(1, total + 1)]
    store = HistoryStore(log, live_limit=live_limit)
    store.initialise({"title": "", "pinned": False, "created_at": start.isoformat()}, messages)


def check_against_store(total: int, live_limit: int, folder: Path) -> None:
    """Self-check: the built history reads back whole, in order, with the log capped like the store keeps it."""
    build_history(folder / "chat_history.json", total, live_limit)
    store = HistoryStore(main_log(folder / "chat_history.json"), live_limit=live_limit)
    assert [m["id"] for m in store.visible()] == list(range(1, total + 1))
    assert len(store.recent(total)) <= live_limit
