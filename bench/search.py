"""Time SearchIndex over 50,000 stored messages: the cold first search and warm ones (p50/p95 of 20).

The messages are built in memory first (tests/support/chat_corpus.py: mixed Chinese/English, 50–400
characters), so the figures exclude the store's own reading of its files. Three layouts: spread over
50 conversations, all in one, and "one changed" — the search after a chat turn, which rebuilds only
the conversation whose version moved, and only from its first changed message.

    .venv/bin/python bench/search.py [--messages 50000]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from search import SearchIndex, Source  # noqa: E402
from tests.support.chat_corpus import conversations  # noqa: E402

QUERIES = [
    "吃药",
    "meeting",
    "开会",
    "Python list",
    "周末 爬山",
    "代码 报错",
    "dentist",
    "不存在的词",
    "天气",
    "Docker compose",
    "提醒 妈妈",
    "budget",
    "春天 短诗",
    "bread",
    "CI failing",
    "机票",
    "休息",
    "Berlin",
    "学习计划",
    "review",
]


def sources(chats: dict[str, list[dict[str, Any]]], versions: dict[str, int]) -> list[Source]:
    """Sources over in-memory conversations: loading is a list copy, not the store's file reading."""
    return [Source(cid, versions[cid], lambda cid=cid: chats[cid]) for cid in chats]


def milliseconds(action) -> float:
    started = time.perf_counter()
    action()
    return (time.perf_counter() - started) * 1000


def run(chats: dict[str, list[dict[str, Any]]], label: str) -> None:
    """Print the cold search, 20 warm queries, and a search right after one conversation changed."""
    versions = dict.fromkeys(chats, 0)
    index = SearchIndex()
    cold = milliseconds(lambda: index.search(sources(chats, versions), "吃药"))
    warm = sorted(milliseconds(lambda q=q: index.search(sources(chats, versions), q)) for q in QUERIES)
    # A chat turn in the largest conversation: the store reads it back as fresh dicts, one more at the end.
    biggest = max(chats, key=lambda cid: len(chats[cid]))
    reply = {**chats[biggest][-1], "id": len(chats[biggest]) + 1, "content": "A new reply about the meeting."}
    chats[biggest] = [dict(m) for m in chats[biggest]] + [reply]
    versions[biggest] += 1
    changed = milliseconds(lambda: index.search(sources(chats, versions), "meeting"))
    p95 = warm[min(len(warm) - 1, round(0.95 * len(warm)) - 1)]
    print(
        f"{label:<32} cold {cold:7.1f} ms   warm p50 {statistics.median(warm):6.1f} ms  p95 {p95:6.1f} ms"
        f"   after a change to {len(chats[biggest])} messages {changed:6.1f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=50_000)
    args = parser.parse_args()
    spread = conversations(args.messages, count=50)
    single = {"main": sorted((m for chat in spread.values() for m in chat), key=lambda m: m["timestamp"])}
    run(spread, f"{args.messages} messages, 50 chats")
    run(single, f"{args.messages} messages, 1 chat")


if __name__ == "__main__":
    main()
