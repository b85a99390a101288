"""Search every conversation's messages: substring terms, Chinese and English alike, newest first.

Chinese has no spaces between words, so a word index would need a segmenter and still miss words it
does not know; a substring match finds "吃药" in "记得吃药了吗" with no dictionary at all. To keep that
fast over tens of thousands of messages, each conversation's messages are folded (NFKC, case-folded)
once and joined into one string: a search is then a few `str.rfind` calls (C speed) per conversation,
and `bisect` over the messages' start offsets tells which message a hit belongs to. The folded text
is cached per process and rebuilt only for a conversation whose `version` changed.
"""

from __future__ import annotations

import heapq
import math
import threading
import unicodedata
from bisect import bisect_right
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import accumulate
from typing import Any

Message = dict[str, Any]

MAX_QUERY_CHARS = 200
SNIPPET_CHARS = 80
ELLIPSIS = "…"
# Joins the folded messages of a conversation. A query term never holds whitespace (the query is split
# on it), so no term can match across the boundary between two messages.
SEPARATOR = "\n"


@dataclass(frozen=True)
class Source:
    """One conversation as the index sees it: `version` changes whenever its messages change."""

    conversation_id: str
    version: Hashable
    load: Callable[[], Iterable[Message]]  # its visible messages, oldest first


def fold(text: str) -> str:
    """The form both queries and messages are compared in: full-width letters as ASCII, case folded."""
    return unicodedata.normalize("NFKC", text).casefold()


def parse_query(text: str) -> list[str]:
    """The query's folded terms, each to be found in a matching message; ValueError names what is wrong."""
    stripped = text.strip()
    if not stripped:
        raise ValueError("The search query is empty: type a word to look for.")
    if len(stripped) > MAX_QUERY_CHARS:
        raise ValueError(f"The search query is longer than {MAX_QUERY_CHARS} characters.")
    terms = list(dict.fromkeys(fold(stripped).split()))  # a repeated term adds nothing
    if not terms:  # e.g. only characters that NFKC turns into spaces
        raise ValueError("The search query is empty: type a word to look for.")
    return terms


def instant(timestamp: object) -> float:
    """Seconds since the epoch of an ISO-8601 timestamp, so offsets compare; -inf when unreadable."""
    if not isinstance(timestamp, str):
        return -math.inf
    try:
        moment = datetime.fromisoformat(timestamp)
    except ValueError:
        return -math.inf
    if moment.tzinfo is None:  # the store always writes an offset; a naive one is read as UTC
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


# Full-width punctuation and the ideographic space: nearly every Chinese message holds some ("，"), and
# NFKC turns each into one ASCII character. Replacing these few on a conversation's whole text (C speed,
# lengths unchanged) leaves most messages already normalised, so the slow per-message NFKC is rare.
_FREQUENT = {
    char: plain
    for code in [*range(0xFF01, 0xFF10), *range(0xFF1A, 0xFF21), *range(0xFF3B, 0xFF41), *range(0xFF5B, 0xFF5F), 0x3000]
    if len(plain := unicodedata.normalize("NFKC", char := chr(code))) == 1
}


def _content(message: Message) -> str:
    """A message's text; a failed turn's record (or anything odd) counts as empty and never matches."""
    content = message.get("content")
    return content if isinstance(content, str) else ""


def _split(text: str, lengths: list[int]) -> list[str]:
    """The inverse of SEPARATOR.join, given each part's length (parts may hold the separator)."""
    parts = []
    offset = 0
    for length in lengths:
        parts.append(text[offset : offset + length])
        offset += length + len(SEPARATOR)
    return parts


def _fold_all(contents: list[str]) -> tuple[str, list[int]]:
    """fold() of every message joined by SEPARATOR, and where each begins, doing the work on the whole text."""
    lengths = list(map(len, contents))
    text = SEPARATOR.join(contents)
    for char, plain in _FREQUENT.items():
        text = text.replace(char, plain)
    if not unicodedata.is_normalized("NFKC", text):  # e.g. full-width letters, "①", "㎏": fix those messages
        parts = [
            p if unicodedata.is_normalized("NFKC", p) else unicodedata.normalize("NFKC", p)
            for p in _split(text, lengths)
        ]
        lengths = list(map(len, parts))
        text = SEPARATOR.join(parts)
    folded = text.casefold()
    if len(folded) != len(text):  # some character grew ("ß" → "ss"): fold message by message to know where
        parts = [part.casefold() for part in _split(text, lengths)]
        lengths = list(map(len, parts))
        folded = SEPARATOR.join(parts)
    starts = list(accumulate((length + len(SEPARATOR) for length in lengths[:-1]), initial=0)) if lengths else []
    return folded, starts


@dataclass(frozen=True)
class _Folded:
    """A conversation's messages as loaded, with their folded text joined and each one's start offset."""

    version: Hashable
    messages: list[Message]
    text: str
    starts: list[int]
    # Filled on demand: only matches need an instant, and parsing 50,000 timestamps costs more than a search.
    instants: list[float | None]

    def end(self, index: int) -> int:
        """Where message `index` ends in `text` (exclusive)."""
        return self.starts[index + 1] - len(SEPARATOR) if index + 1 < len(self.starts) else len(self.text)

    def instant(self, index: int) -> float:
        """The message's instant, parsed once (a benign race: two threads would store the same value)."""
        moment = self.instants[index]
        if moment is None:
            moment = self.instants[index] = instant(self.messages[index].get("timestamp"))
        return moment


def _common_prefix(old: list[Message], new: list[Message]) -> int:
    """How many leading messages are unchanged: after a turn, all but the new or rewritten last ones."""
    shortest = min(len(old), len(new))
    for kept in (shortest, shortest - 1):  # one more appended or removed; or the last one rewritten
        if kept > 0 and new[:kept] == old[:kept]:  # list comparison runs in C
            return kept
    return 0


def _build(source: Source, previous: _Folded | None) -> _Folded:
    """Fold one conversation's messages, reusing the previous fold for the unchanged leading ones."""
    messages = list(source.load())
    kept = _common_prefix(previous.messages, messages) if previous is not None else 0
    tail, tail_starts = _fold_all([_content(m) for m in messages[kept:]])
    if previous is None or kept == 0:
        return _Folded(source.version, messages, tail, tail_starts, [None] * len(messages))
    head = previous.text[: previous.end(kept - 1)]
    shift = len(head) + len(SEPARATOR)
    return _Folded(
        version=source.version,
        messages=messages,
        text=head + SEPARATOR + tail if tail_starts else head,
        starts=previous.starts[:kept] + [start + shift for start in tail_starts],
        instants=previous.instants[:kept] + [None] * (len(messages) - kept),
    )


def _newest_matches(entry: _Folded, terms: list[str], limit: int) -> list[int]:
    """Indexes of the last `limit` messages holding every term (the newest: the store appends in time order)."""
    lead, *others = sorted(terms, key=len, reverse=True)  # the longest term is usually the rarest
    text, starts = entry.text, entry.starts
    found: list[int] = []
    end = len(text)
    while len(found) < limit:
        hit = text.rfind(lead, 0, end)
        if hit < 0:
            break
        index = bisect_right(starts, hit) - 1
        if all(text.find(term, starts[index], entry.end(index)) >= 0 for term in others):
            found.append(index)
        end = starts[index]  # this message is decided: go on before it
    return found


def _folded_offsets(original: str) -> list[int] | None:
    """For each character of `original`, where its folding starts in `fold(original)`; None if 1:1."""
    if len(fold(original)) == len(original):
        return None  # nearly always: no character grew or shrank, positions are the same
    offsets: list[int] = []
    position = 0
    for char in original:
        offsets.append(position)
        position += len(fold(char))
    return offsets


def snippet(original: str, folded: str, terms: list[str], width: int = SNIPPET_CHARS) -> str:
    """About `width` characters of `original` around the first match, on one line, "…" where cut."""
    hits = [position for position in (folded.find(term) for term in terms) if position >= 0]
    first = min(hits, default=0)
    offsets = _folded_offsets(original)
    if offsets is not None:
        # Folding changed some lengths ("ß" → "ss", "㎏" → "kg"): the last original character whose
        # folding starts at or before the hit is where the match begins in the original text.
        first = max(bisect_right(offsets, first) - 1, 0)
    start = max(first - width // 3, 0)
    end = min(start + width, len(original))
    start = max(end - width, 0)
    text = " ".join(original[start:end].split())
    if start > 0:
        text = ELLIPSIS + text
    if end < len(original):
        text += ELLIPSIS
    return text


class SearchIndex:
    """A per-process cache of every conversation's folded text, refreshed by version on each search.

    Thread-safe: refreshing happens under a lock, and a built entry's text is never changed afterwards,
    so the matching itself runs outside the lock on a snapshot. A conversation whose version moved is
    refolded only from its first changed message: after a chat turn, that is the last one or two.
    """

    def __init__(self) -> None:
        self._entries: dict[str, _Folded] = {}
        self._lock = threading.Lock()

    def refresh(self, sources: Iterable[Source]) -> list[tuple[str, _Folded]]:
        """Rebuild entries whose version changed, drop conversations gone, and return a snapshot."""
        with self._lock:
            current: dict[str, _Folded] = {}
            for source in sources:
                entry = self._entries.get(source.conversation_id)
                if entry is None or entry.version != source.version:
                    entry = _build(source, entry)
                current[source.conversation_id] = entry
            self._entries = current
            return list(current.items())

    def search(self, sources: Iterable[Source], query: str, limit: int = 50) -> list[dict[str, Any]]:
        """Messages holding every term of `query`, newest first (by instant), at most `limit`."""
        if limit < 1:
            raise ValueError("The search limit must be at least 1.")
        terms = parse_query(query)
        candidates: list[tuple[float, str, int, _Folded]] = []
        for conversation_id, entry in self.refresh(sources):
            for index in _newest_matches(entry, terms, limit):
                candidates.append((entry.instant(index), conversation_id, index, entry))
        # Equal instants are ordered by conversation id, then position, so results are stable.
        best = heapq.nlargest(limit, candidates, key=lambda c: c[:3])
        results = []
        for _, conversation_id, index, entry in best:
            message = entry.messages[index]
            folded = entry.text[entry.starts[index] : entry.end(index)]
            results.append(
                {
                    "conversation_id": conversation_id,
                    "message_id": message.get("id"),
                    "role": message.get("role"),
                    "timestamp": message.get("timestamp"),
                    "snippet": snippet(_content(message), folded, terms),
                }
            )
        return results
