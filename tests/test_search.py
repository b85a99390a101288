"""SearchIndex: substring terms over every conversation, newest first, cached by version."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest

from search import SearchIndex, Source, fold, parse_query
from tests.support.chat_corpus import conversations


def message(number: int, content: str, timestamp: str, role: str = "user") -> dict[str, Any]:
    return {"id": number, "role": role, "content": content, "timestamp": timestamp, "is_scheduled": False}


class Library:
    """Conversations kept in memory, handed to the index as Sources; counts how often each is loaded."""

    def __init__(self, **chats: list[dict[str, Any]]) -> None:
        self.chats = chats
        self.versions = dict.fromkeys(chats, 0)
        self.loads: list[str] = []

    def change(self, conversation_id: str, messages: list[dict[str, Any]]) -> None:
        self.chats[conversation_id] = messages
        self.versions[conversation_id] = self.versions.get(conversation_id, 0) + 1

    def sources(self) -> list[Source]:
        return [Source(cid, self.versions[cid], self._loader(cid)) for cid in self.chats]

    def _loader(self, conversation_id: str):
        def load() -> list[dict[str, Any]]:
            self.loads.append(conversation_id)
            return list(self.chats[conversation_id])

        return load


def found(results: list[dict[str, Any]]) -> list[tuple[str, int]]:
    return [(r["conversation_id"], r["message_id"]) for r in results]


def test_chinese_two_character_word_is_found_inside_a_sentence() -> None:
    library = Library(
        main=[
            message(1, "记得吃药了吗？", "2026-11-26T09:00:00.000+08:00"),
            message(2, "吃饭了", "2026-11-26T09:01:00.000+08:00"),
        ]
    )
    results = SearchIndex().search(library.sources(), "吃药")
    assert found(results) == [("main", 1)]
    assert results[0]["snippet"] == "记得吃药了吗？"
    assert results[0]["role"] == "user"
    assert results[0]["timestamp"] == "2026-11-26T09:00:00.000+08:00"


def test_english_is_case_insensitive_both_ways() -> None:
    library = Library(
        main=[
            message(1, "The meeting is at 3", "2026-11-26T09:00:00+08:00"),
            message(2, "MEETING ROOM B", "2026-11-26T09:05:00+08:00"),
        ]
    )
    index = SearchIndex()
    assert found(index.search(library.sources(), "Meeting")) == [("main", 2), ("main", 1)]
    assert found(index.search(library.sources(), "meeting room")) == [("main", 2)]


def test_full_width_letters_match_ascii_ones() -> None:
    library = Library(
        main=[
            message(1, "ＡＰＩ　Ｋｅｙ 要换了", "2026-11-26T09:00:00+08:00"),
            message(2, "api key rotation", "2026-11-26T09:01:00+08:00"),
        ]
    )
    index = SearchIndex()
    assert found(index.search(library.sources(), "api key")) == [("main", 2), ("main", 1)]
    assert found(index.search(library.sources(), "ＡＰＩ")) == [("main", 2), ("main", 1)]


def test_every_term_must_occur_in_the_same_message() -> None:
    library = Library(
        main=[
            message(1, "明天开会", "2026-11-26T09:00:00+08:00"),
            message(2, "记得带电脑", "2026-11-26T09:01:00+08:00"),
            message(3, "明天开会记得带电脑", "2026-11-26T09:02:00+08:00"),
        ]
    )
    assert found(SearchIndex().search(library.sources(), "开会 电脑")) == [("main", 3)]


def test_a_term_never_spans_two_messages() -> None:
    library = Library(
        main=[message(1, "吃", "2026-11-26T09:00:00+08:00"), message(2, "药", "2026-11-26T09:01:00+08:00")]
    )
    assert SearchIndex().search(library.sources(), "吃药") == []
    assert SearchIndex().search(library.sources(), "吃 药") == []


def test_results_are_newest_first_by_instant_across_offsets() -> None:
    # 09:30+08:00 is 01:30Z, 20:00-05:00 the evening before is 01:00Z, 02:00Z is the newest instant.
    library = Library(
        main=[message(1, "budget one", "2026-11-26T09:30:00.000+08:00")],
        abcdef012345=[message(7, "budget two", "2026-11-25T20:00:00.000-05:00")],
        fedcba987654=[message(3, "budget three", "2026-11-26T02:00:00.000+00:00")],
    )
    results = SearchIndex().search(library.sources(), "budget")
    assert found(results) == [("fedcba987654", 3), ("main", 1), ("abcdef012345", 7)]


def test_limit_keeps_the_newest() -> None:
    chats = [message(n, f"note {n}", f"2026-11-26T09:{n:02d}:00+08:00") for n in range(1, 31)]
    library = Library(main=chats[::2], abcdef012345=chats[1::2])
    results = SearchIndex().search(library.sources(), "note", limit=5)
    assert [r["message_id"] for r in results] == [30, 29, 28, 27, 26]


def test_failed_turn_records_with_empty_content_never_match() -> None:
    failed = {**message(2, "", "2026-11-26T09:01:00+08:00", role="assistant"), "error": "upstream timeout"}
    library = Library(main=[message(1, "timeout again", "2026-11-26T09:00:00+08:00"), failed])
    assert found(SearchIndex().search(library.sources(), "timeout")) == [("main", 1)]


def test_a_changed_version_is_reloaded_and_an_unchanged_one_is_not() -> None:
    library = Library(main=[message(1, "old words", "2026-11-26T09:00:00+08:00")], abcdef012345=[])
    index = SearchIndex()
    assert found(index.search(library.sources(), "old")) == [("main", 1)]
    library.change("main", [message(1, "new words", "2026-11-26T09:00:00+08:00")])
    library.loads.clear()
    assert index.search(library.sources(), "old") == []
    assert found(index.search(library.sources(), "new")) == [("main", 1)]
    assert library.loads == ["main"]  # once, for the change; the other conversation came from the cache


def test_messages_whose_folding_changes_length_keep_their_own_offsets() -> None:
    # "ß" → "ss" and "①" → "1" shift every later message in the joined text: each hit must still land
    # on the message that holds it.
    library = Library(
        main=[
            message(1, "Straße ①", "2026-11-26T09:00:00+08:00"),
            message(2, "ＡＢＣ full width", "2026-11-26T09:01:00+08:00"),
            message(3, "plain abc", "2026-11-26T09:02:00+08:00"),
            message(4, "ﬁnal ﬂight", "2026-11-26T09:03:00+08:00"),
        ]
    )
    index = SearchIndex()
    assert found(index.search(library.sources(), "abc")) == [("main", 3), ("main", 2)]
    assert found(index.search(library.sources(), "STRASSE 1")) == [("main", 1)]
    assert found(index.search(library.sources(), "final flight")) == [("main", 4)]
    assert index.search(library.sources(), "flight")[0]["snippet"] == "ﬁnal ﬂight"


@pytest.mark.parametrize(
    "change",
    ["append", "append two", "rewrite last", "remove last", "edit first", "edit second last", "clear", "fresh copies"],
)
def test_a_refolded_conversation_searches_like_a_fresh_index(change: str) -> None:
    stamps = [f"2026-11-26T09:{n:02d}:00+08:00" for n in range(10)]
    before = [message(n, f"第{n}条 ß note {n}" if n % 3 else f"Ｎote {n} 吃药", stamps[n]) for n in range(1, 8)]
    library = Library(main=before, abcdef012345=[message(1, "note elsewhere", stamps[0])])
    index = SearchIndex()
    index.search(library.sources(), "note")
    after = {
        "append": before + [message(8, "note 8 吃药", stamps[8])],
        # a term right at the end of a message that is not the last: a start offset one off would cut it
        "append two": before + [message(8, "alpha 吃药", stamps[8]), message(9, "beta", stamps[9])],
        "rewrite last": before[:-1] + [message(7, "note rewritten", stamps[7])],
        "remove last": before[:-1],
        "edit first": [message(1, "first note edited 吃药", stamps[1])] + before[1:],
        "edit second last": before[:-2] + [message(6, "note edited 吃药", stamps[6])] + before[-1:],
        "clear": [],
        "fresh copies": [dict(m) for m in before] + [message(8, "ß 吃药", stamps[8])],
    }[change]
    library.change("main", after)
    for query in ["note", "吃药", "ss note", "第7条", "rewritten", "edited", "alpha 吃药", "beta"]:
        assert index.search(library.sources(), query) == SearchIndex().search(library.sources(), query), query


def test_a_conversation_no_longer_among_the_sources_is_dropped() -> None:
    library = Library(main=[], abcdef012345=[message(1, "secret plan", "2026-11-26T09:00:00+08:00")])
    index = SearchIndex()
    assert found(index.search(library.sources(), "plan")) == [("abcdef012345", 1)]
    del library.chats["abcdef012345"]
    assert index.search(library.sources(), "plan") == []
    assert list(index._entries) == ["main"]  # its text is not kept either


def test_snippet_is_one_line_around_the_first_match_with_ellipses_where_cut() -> None:
    before = "前面的内容。" * 20
    after = " More text\n\nafter   the match." * 10
    library = Library(
        main=[message(1, before + "Remember the DENTIST on Friday." + after, "2026-11-26T09:00:00+08:00")]
    )
    snippet = SearchIndex().search(library.sources(), "dentist")[0]["snippet"]
    assert snippet.startswith("…") and snippet.endswith("…")
    assert "DENTIST" in snippet  # the original text, not the folded one
    assert "\n" not in snippet and "  " not in snippet
    assert 60 <= len(snippet) <= 82


def test_snippet_finds_the_match_when_folding_changes_lengths() -> None:
    # "ß" folds to "ss" and "㎏" to "kg": positions in the folded text run ahead of the original's.
    text = "Straße " * 30 + "重量 5㎏ " * 10 + "the TARGET word" + " tail" * 30
    library = Library(main=[message(1, text, "2026-11-26T09:00:00+08:00")])
    snippet = SearchIndex().search(library.sources(), "target")[0]["snippet"]
    assert "TARGET" in snippet


def test_a_short_message_is_its_own_snippet() -> None:
    library = Library(main=[message(1, "  Buy\nmilk  ", "2026-11-26T09:00:00+08:00")])
    assert SearchIndex().search(library.sources(), "milk")[0]["snippet"] == "Buy milk"


@pytest.mark.parametrize(
    ("query", "sentence"),
    [("", "empty"), ("   \n ", "empty"), ("x" * 201, "longer than 200")],
)
def test_bad_queries_are_refused_with_a_sentence(query: str, sentence: str) -> None:
    with pytest.raises(ValueError, match=sentence):
        parse_query(query)


def test_query_terms_are_folded_and_deduplicated() -> None:
    assert parse_query("  Ｍeeting  吃药 meeting ") == ["meeting", "吃药"]


def test_fifty_thousand_messages_give_the_same_results_as_a_plain_scan() -> None:
    chats = conversations(50_000)
    library = Library(**chats)
    index = SearchIndex()
    everything = [(cid, m, fold(m["content"])) for cid, messages in chats.items() for m in messages]
    for query in ["吃药", "Meeting", "开会 python", "周末去爬山 dentist", "bread recipe", "不存在的词"]:
        terms = parse_query(query)
        expected = [(cid, m) for cid, m, folded in everything if all(t in folded for t in terms)]
        expected.sort(key=lambda pair: datetime.fromisoformat(pair[1]["timestamp"]), reverse=True)
        assert query == "不存在的词" or len(expected) > 50  # the limit is exercised, not just the order
        results = index.search(library.sources(), query, limit=50)
        assert found(results) == [(cid, m["id"]) for cid, m in expected[:50]], query
        for result in results:
            assert any(term in fold(result["snippet"]) for term in terms)
