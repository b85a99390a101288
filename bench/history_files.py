"""Build a chat history of any size directly in HistoryStore's on-disk format, in seconds.

Appending 100,000 messages one by one through HistoryStore would fsync 100,000 times; instead
this writes the live file and the archive files that the store itself would have left behind,
using the same rotation arithmetic (when the live file passes `live_limit`, all but the newest
`live_limit // 2` move into one archive file).
"""

from __future__ import annotations

import json
import os
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from config import load_settings  # noqa: E402
from history_store import FORMAT_VERSION, HistoryStore  # noqa: E402

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


def live_range(total: int, live_limit: int) -> tuple[list[tuple[int, int]], int]:
    """The archive id ranges and the first live id after `total` appends with rotation at `live_limit`."""
    keep = live_limit // 2
    archives: list[tuple[int, int]] = []
    first_live = 1
    # Rotation happens at the append that makes the live count live_limit + 1.
    while total - first_live + 1 > live_limit:
        rotate_at = first_live + live_limit  # id of the append that overflowed
        moved_last = rotate_at - keep
        archives.append((first_live, moved_last))
        first_live = moved_last + 1
    return archives, first_live


def configured_live_limit() -> int:
    """HISTORY_LIVE_LIMIT as the benchmarked servers see it: this environment's, else the app's default."""
    return load_settings(os.environ).history_live_limit


def build_history(path: Path, total: int, live_limit: int | None = None) -> None:
    """Write a history of `total` messages at `path` (and its archive folder), replacing any there."""
    live_limit = live_limit or configured_live_limit()
    path.parent.mkdir(parents=True, exist_ok=True)
    archive_dir = path.with_name(path.stem + "-archive")
    archive_dir.mkdir(exist_ok=True)
    for old in archive_dir.glob("*.json"):
        old.unlink()
    start = datetime(2025, 1, 1, tzinfo=UTC)
    archives, first_live = live_range(total, live_limit)
    for first, last in archives:
        name = f"{first:09d}-{last:09d}.json"
        messages = [fake_message(number, start) for number in range(first, last + 1)]
        (archive_dir / name).write_text(json.dumps({"messages": messages}, ensure_ascii=False, separators=(",", ":")))
    state = {
        "version": FORMAT_VERSION,
        "next_id": total + 1,
        "floor_id": 1,
        "messages": [fake_message(number, start) for number in range(first_live, total + 1)],
    }
    path.write_text(json.dumps(state, ensure_ascii=False, separators=(",", ":")))


def check_against_store(total: int, live_limit: int, folder: Path) -> None:
    """Self-check: the builder leaves what appending `total` messages through HistoryStore leaves."""
    store = HistoryStore(folder / "real.json", live_limit=live_limit)
    for number in range(1, total + 1):
        store.append("user", str(number))
    real = json.loads((folder / "real.json").read_text())
    build_history(folder / "built.json", total, live_limit)
    built = json.loads((folder / "built.json").read_text())
    assert [m["id"] for m in real["messages"]] == [m["id"] for m in built["messages"]]
    real_archives = sorted(p.name for p in (folder / "real-archive").glob("*.json"))
    assert real_archives == sorted(p.name for p in (folder / "built-archive").glob("*.json"))
