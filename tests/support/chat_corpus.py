"""Realistic chat messages in bulk, for the search test at 50,000 messages and bench/search.py.

Mixed Chinese and English, 50–400 characters, alternating user/assistant, timestamps 30 s apart in a
few different UTC offsets (as a user who travels, or a server whose zone changed, would leave).
Seeded, so a test and the bench see the same text.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

CHINESE = [
    "今天天气怎么样",
    "记得吃药",
    "帮我写一首关于春天的短诗",
    "明天上午开会",
    "推荐三本科幻小说",
    "列表和元组有什么区别",
    "周末去爬山",
    "晚饭吃什么好",
    "这段代码为什么报错",
    "提醒我给妈妈打电话",
    "学习计划",
    "预算表格",
    "机票已经订好了",
    "注意休息，别太累",
    "这个问题可以分三步来看",
]
ENGLISH = [
    "the meeting moved to Thursday",
    "Python list comprehension",
    "please review the pull request",
    "Docker compose file",
    "budget spreadsheet for Q3",
    "a short poem about rain",
    "call the dentist",
    "Gunicorn worker timeout",
    "flight to Berlin",
    "remember the API key rotation",
    "unit tests are failing on CI",
    "sourdough bread recipe",
]
PUNCTUATION = ["。", "，", "！", "？", ". ", ", ", "; ", "\n", "\n\n- "]
OFFSETS = [
    timezone(timedelta(hours=8)),
    UTC,
    timezone(timedelta(hours=-5)),
    timezone(timedelta(hours=5, minutes=30)),
]
START = datetime(2025, 1, 1, tzinfo=UTC)


def message_text(rng: random.Random) -> str:
    """One message of 50–400 characters mixing Chinese phrases, English phrases and punctuation."""
    target = rng.randint(50, 400)
    pieces: list[str] = []
    size = 0
    while size < target:
        piece = rng.choice(CHINESE if rng.random() < 0.6 else ENGLISH) + rng.choice(PUNCTUATION)
        pieces.append(piece)
        size += len(piece)
    return "".join(pieces)[:target]


def conversations(total: int, count: int = 50, seed: int = 14) -> dict[str, list[dict[str, Any]]]:
    """`total` messages spread over `count` conversations, shaped like the store's messages."""
    rng = random.Random(seed)
    result: dict[str, list[dict[str, Any]]] = {f"{n:012x}": [] for n in range(count)}
    ids = list(result)
    for number in range(total):
        messages = result[rng.choice(ids)]
        zone = OFFSETS[number // 997 % len(OFFSETS)]
        messages.append(
            {
                "id": len(messages) + 1,
                "role": "user" if len(messages) % 2 == 0 else "assistant",
                "content": message_text(rng),
                "timestamp": (START + timedelta(seconds=30 * number))
                .astimezone(zone)
                .isoformat(timespec="milliseconds"),
                "is_scheduled": False,
            }
        )
    return result
