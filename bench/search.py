"""Time SearchIndex over 50,000 stored messages: the cold first search and warm ones (p50/p95 of 20).

The messages are built in memory first (tests/support/chat_corpus.py: mixed Chinese/English, 50–400
characters), so the figures exclude the store's own reading of its files. Three layouts: spread over
50 conversations, all in one, and "one changed" — the search after a chat turn, which rebuilds only
the conversation whose version moved, and only from its first changed message.

    .venv/bin/python bench/search.py [--messages 50000] [--api]

With `--api`, the same 50,000 messages are stored in 50 conversations on disk (JSON Lines logs and their
archives, as the app writes them) and searched through GET /api/search on real Gunicorn, one worker:
the figures then include reading the files, HTTP and JSON.
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


def through_the_api(chats: dict[str, list[dict[str, Any]]]) -> None:
    """Store the conversations with the app's own store, then time GET /api/search on Gunicorn."""
    import tempfile

    import requests
    from processes import Server, app_env, fake_upstream

    from config import load_settings
    from conversations import Conversations

    with tempfile.TemporaryDirectory() as folder, fake_upstream() as upstream_url:
        env = app_env(upstream_url, Path(folder) / "chat_history.json", WEB_CONCURRENCY="1")
        store = Conversations(load_settings(env))
        for number, messages in enumerate(chats.values()):
            fields = [{k: v for k, v in m.items() if k != "id"} for m in messages]
            store.create(f"对话 {number}", messages=fields)
        with Server(env, name="search") as server, requests.Session() as session:

            def ask(query: str) -> float:
                started = time.perf_counter()
                response = session.get(f"{server.base_url}/api/search", params={"q": query}, timeout=60)
                assert response.status_code == 200, response.text
                return (time.perf_counter() - started) * 1000

            cold = ask("吃药")
            warm = sorted(ask(q) for q in QUERIES * 2)
            target = next(c["id"] for c in session.get(f"{server.base_url}/api/conversations").json()["conversations"])
            session.post(f"{server.base_url}/api/chat", json={"message": "meeting notes", "conversation_id": target})
            changed = ask("meeting")
            p95 = warm[min(len(warm) - 1, round(0.95 * len(warm)) - 1)]
            total = sum(len(m) for m in chats.values())
            label, p50 = f"API, {total} messages, 50 chats", statistics.median(warm)
            print(
                f"{label:<32} cold {cold:7.1f} ms   warm p50 {p50:6.1f} ms  p95 {p95:6.1f} ms   "
                f"after a chat turn {changed:6.1f} ms"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=50_000)
    parser.add_argument("--api", action="store_true", help="store on disk and search through Gunicorn")
    args = parser.parse_args()
    spread = conversations(args.messages, count=50)
    if args.api:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        through_the_api(spread)
        return
    single = {"main": sorted((m for chat in spread.values() for m in chat), key=lambda m: m["timestamp"])}
    run(spread, f"{args.messages} messages, 50 chats")
    run(single, f"{args.messages} messages, 1 chat")


if __name__ == "__main__":
    main()
