"""Export (Markdown, JSON, ChatGPT's conversations.json) and import (ours and ChatGPT's), bad files refused.

tests/fixtures/chatgpt_conversations.json imitates a real ChatGPT export. Its shape follows what
open-source readers of that file document and parse: difegam/chatgpt-to-markdown's "ChatGPT Export
Format" and "Data Models" pages (root node with message null, current_node as the leaf of the shown
branch, edited prompts as sibling branches, roles system/user/assistant/tool, content types text,
multimodal_text with image_asset_pointer parts, code, execution_output, tether_browsing_display,
thoughts), the field reference at whychose.com/seo/chatgpt-conversations-json-format (conversation
and message fields: author.name/metadata, status, end_turn, weight, recipient, channel,
metadata.model_slug) and ArthurGareginyan/convonaut's script.js (walking current_node up through
parent). The image part's fields follow a TypeScript ImageAssetPointer type from the same search
(asset_pointer "file-service://…", size_bytes, width, height, fovea, metadata).
"""

from __future__ import annotations

import copy
import json
import random
from pathlib import Path
from typing import Any

import pytest

from exchange import (
    MAX_TITLE_CHARS,
    OURS,
    chatgpt_export,
    conversation_json,
    conversation_markdown,
    download_name,
    parse_import,
    read_import,
)

FIXTURE = Path(__file__).parent / "fixtures" / "chatgpt_conversations.json"

MAIN = {
    "id": "main",
    "title": "",
    "created_at": "2026-11-20T08:00:00.000+08:00",
    "updated_at": "2026-11-26T21:00:03.120+08:00",
    "message_count": 5,
    "pinned": True,
    "reminder_at": "2026-11-26T21:00:03.120+08:00",
}
MAIN_MESSAGES: list[dict[str, Any]] = [
    {
        "id": 1,
        "role": "user",
        "content": "每天晚上九点提醒我**吃药**",
        "timestamp": "2026-11-20T08:00:00.000+08:00",
        "is_scheduled": False,
    },
    {
        "id": 2,
        "role": "assistant",
        "content": "好的，已经设好提醒。\n\n```cron\n0 21 * * *\n```",
        "timestamp": "2026-11-20T08:00:02.480+08:00",
        "is_scheduled": False,
        "reply_to": 1,
        "model": "deepseek-ai/DeepSeek-V3",
        "reasoning": "The user wants a daily reminder.",
        "usage": {"prompt_tokens": 120, "completion_tokens": 30, "total_tokens": 150},
        "reminder_actions": [{"action": "created", "reminder_id": "r1a2b3c4d5e6"}],
    },
    {
        "id": 3,
        "role": "assistant",
        "content": "⏰ 该吃药了。",
        "timestamp": "2026-11-26T21:00:03.120+08:00",
        "is_scheduled": True,
        "reminder_id": "r1a2b3c4d5e6",
        "scheduled_for": "2026-11-26T21:00:00+08:00",
        "generated": True,
        "late": False,
        "done_at": "2026-11-26T21:05:00.000+08:00",
    },
    {
        "id": 4,
        "role": "user",
        "content": "Write a long story",
        "timestamp": "2026-11-26T13:10:00.000Z",
        "is_scheduled": False,
    },
    {
        "id": 5,
        "role": "assistant",
        "content": "",
        "timestamp": "2026-11-26T13:10:30.000+00:00",
        "is_scheduled": False,
        "reply_to": 4,
        "incomplete": True,
        "error": "The upstream did not answer in time.",
        "error_code": "upstream_timeout",
    },
]
OTHER = {
    "id": "a1b2c3d4e5f6",
    "title": "Trip 计划",
    "created_at": "2026-11-21T09:00:00.000-05:00",
    "updated_at": "2026-11-21T09:01:00.000-05:00",
    "message_count": 2,
    "pinned": False,
    "reminder_at": None,
}
OTHER_MESSAGES: list[dict[str, Any]] = [
    {
        "id": 1,
        "role": "user",
        "content": "Plan a weekend in Boston",
        "timestamp": "2026-11-21T09:00:00.000-05:00",
        "is_scheduled": False,
    },
    {
        "id": 2,
        "role": "assistant",
        "content": "Day 1: Freedom Trail.",
        "timestamp": "2026-11-21T09:01:00.000-05:00",
        "is_scheduled": False,
        "stopped": True,
    },
]


def without_ids(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{key: value for key, value in m.items() if key != "id"} for m in messages]


def exported() -> list[dict[str, Any]]:
    return chatgpt_export([(MAIN, MAIN_MESSAGES), (OTHER, OTHER_MESSAGES)])


# --- export ---------------------------------------------------------------------------------------


def test_round_trip_through_our_chatgpt_export_gives_back_every_message_and_extra() -> None:
    imported = parse_import(json.loads(json.dumps(exported())))
    assert [c.key for c in imported] == ["main", "a1b2c3d4e5f6"]
    main, other = imported
    assert main.messages == without_ids(MAIN_MESSAGES)  # the failed turn too, with its error
    assert other.messages == without_ids(OTHER_MESSAGES)
    assert (main.title, main.created_at, main.updated_at, main.pinned) == (
        "",
        MAIN["created_at"],
        MAIN["updated_at"],
        True,
    )
    assert (other.title, other.created_at, other.updated_at, other.pinned) == (
        "Trip 计划",
        OTHER["created_at"],
        OTHER["updated_at"],
        False,
    )


def test_export_is_chatgpt_shaped_a_tree_from_a_root_to_current_node() -> None:
    conversation = exported()[0]
    mapping = conversation["mapping"]
    roots = [node for node in mapping.values() if node["parent"] is None]
    assert len(roots) == 1 and roots[0]["message"] is None
    assert conversation["conversation_id"] == conversation["id"] == "main"
    assert conversation["create_time"] == pytest.approx(1795132800.0)  # 2026-11-20T00:00:00Z
    node, chain = roots[0], []
    while node["children"]:
        (child,) = node["children"]
        assert mapping[child]["parent"] == node["id"]
        node = mapping[child]
        chain.append(node["message"])
    assert node["id"] == conversation["current_node"]
    assert [m["content"]["parts"] for m in chain] == [[m["content"]] for m in MAIN_MESSAGES]
    reply = chain[1]
    assert reply["author"] == {"role": "assistant", "name": None, "metadata": {}}
    assert reply["content"]["content_type"] == "text" and reply["status"] == "finished_successfully"
    assert (reply["end_turn"], chain[0]["end_turn"], reply["weight"], reply["recipient"]) == (True, None, 1.0, "all")
    assert reply["create_time"] == pytest.approx(1795132802.48)
    assert reply["metadata"]["model_slug"] == "deepseek-ai/DeepSeek-V3"
    assert reply["metadata"][OURS]["reasoning"] == "The user wants a daily reminder."


def test_exporting_twice_gives_the_same_file() -> None:
    assert json.dumps(exported()) == json.dumps(exported())
    first, second = exported()
    assert not set(first["mapping"]) & set(second["mapping"])  # node ids differ between conversations


def test_markdown_has_the_title_roles_local_times_and_verbatim_content() -> None:
    text = conversation_markdown(OTHER, OTHER_MESSAGES)
    assert text.startswith("# Trip 计划\n")
    assert "**User** · 2026-11-21 09:00:00 -05:00\n\nPlan a weekend in Boston\n" in text
    assert "**Assistant** · 2026-11-21 09:01:00 -05:00 (stopped)\n\nDay 1: Freedom Trail.\n" in text


def test_markdown_marks_reminders_keeps_markdown_and_names_failed_turns() -> None:
    text = conversation_markdown(MAIN, MAIN_MESSAGES)
    assert text.startswith("# Main conversation\n")  # untitled main: the page's fallback
    assert "好的，已经设好提醒。\n\n```cron\n0 21 * * *\n```\n" in text
    assert "**Assistant · Reminder** · 2026-11-26 21:00:03 +08:00\n\n⏰ 该吃药了。" in text
    assert "**User** · 2026-11-26 13:10:00 +00:00" in text
    assert "_No reply: The upstream did not answer in time._" in text
    untitled = conversation_markdown({**OTHER, "title": ""}, [])
    assert untitled.startswith("# New chat\n")
    labels = {"user": "用户", "assistant": "助手", "reminder": "提醒", "main": "主对话", "untitled": "新对话"}
    assert "**用户** ·" in conversation_markdown(
        MAIN, MAIN_MESSAGES[:1], labels={**labels, "no_reply": "", "stopped": "", "incomplete": ""}
    )


def test_json_export_is_meta_and_messages() -> None:
    assert conversation_json(OTHER, OTHER_MESSAGES) == {"conversation": OTHER, "messages": OTHER_MESSAGES}
    assert parse_import(json.loads(json.dumps(conversation_json(OTHER, OTHER_MESSAGES))))[0].messages == without_ids(
        OTHER_MESSAGES
    )


def test_download_names_are_safe() -> None:
    assert download_name(OTHER, "md") == "conversation-a1b2c3d4e5f6.md"
    assert download_name({"id": '../"x\r\n'}, "json") == "conversation-x.json"


# --- importing ChatGPT's export -------------------------------------------------------------------


def chatgpt_sample() -> list[dict[str, Any]]:
    return json.loads(FIXTURE.read_text(encoding="utf-8"))


def test_a_chatgpt_export_imports_the_branch_the_user_last_saw() -> None:
    medicine, berlin = parse_import(chatgpt_sample())
    assert berlin.key == "6745b1c2-8a3c-800c-9d1e-5f0a2b3c4d5e"
    assert berlin.title == "Packing for Berlin"
    assert (berlin.created_at, berlin.updated_at) == ("2024-11-26T00:00:10.000+00:00", "2024-11-26T00:02:11.500+00:00")
    assert berlin.pinned is False
    assert [(m["role"], m["content"]) for m in berlin.messages] == [
        ("user", "What should I pack for **Berlin in December**?"),  # the edited prompt, not the first attempt
        ("assistant", "For Berlin in December:\n\n- a warm coat\n- gloves and a scarf\n- waterproof shoes"),
        ("user", "[image]\nWhat building is this?"),  # the photo as a placeholder
        ("assistant", "That is the **Brandenburg Gate** (Brandenburger Tor)."),  # after the code and its output
    ]
    assert berlin.messages[1] == {
        "role": "assistant",
        "content": berlin.messages[1]["content"],
        "timestamp": "2024-11-26T00:01:06.250+00:00",
        "model": "gpt-4o",
        "is_scheduled": False,
    }
    assert all("id" not in m for m in berlin.messages)


def test_chatgpt_tool_calls_browsing_thoughts_and_empty_replies_are_left_out() -> None:
    medicine = parse_import(chatgpt_sample())[0]
    assert medicine.title == "吃药提醒"
    assert [(m["role"], m["content"][:6]) for m in medicine.messages] == [
        ("user", "每天晚上九点"),
        ("assistant", "好的。布洛芬"),
        ("user", "谢谢！"),
    ]


@pytest.mark.parametrize("content_type", ["code", "execution_output", "reasoning_recap", "something_new"])
def test_only_text_and_multimodal_text_content_is_imported(content_type: str) -> None:
    berlin = chatgpt_sample()[1]
    reply = berlin["mapping"]["c1d2e3f4-0006-4a5b-8c6d-7e8f90a1b2c3"]["message"]
    reply["content"]["content_type"] = content_type  # its parts kept: only the type says it is no text
    contents = [m["content"] for m in parse_import(berlin)[0].messages]
    assert contents[-1] == "[image]\nWhat building is this?"


def test_without_current_node_the_newest_leaf_is_taken() -> None:
    sample = chatgpt_sample()
    berlin = sample[1]
    del berlin["current_node"]
    contents = [m["content"] for m in parse_import(berlin)[0].messages]
    assert contents[0] == "What should I pack for **Berlin in December**?"
    assert contents[-1].startswith("That is the **Brandenburg Gate**")
    berlin["current_node"] = "b0c1d2e3-0002-4a5b-8c6d-7e8f90a1b2c3"  # pointing at the old branch shows it
    assert [m["content"] for m in parse_import(berlin)[0].messages] == [
        "What should I pack for Berlin?",
        "Pack an umbrella (old branch).",
    ]


def test_importing_the_same_file_twice_gives_the_same_keys() -> None:
    assert [c.key for c in parse_import(chatgpt_sample())] == [c.key for c in parse_import(chatgpt_sample())]
    anonymous = chatgpt_sample()[0]
    del anonymous["conversation_id"], anonymous["id"], anonymous["create_time"], anonymous["update_time"]
    first, second = parse_import(anonymous)[0], parse_import(copy.deepcopy(anonymous))[0]
    assert first.key == second.key and first.key.startswith("sha256:")
    assert first.key != parse_import({**anonymous, "title": "another"})[0].key


def test_a_message_without_a_time_takes_the_one_before() -> None:
    berlin = chatgpt_sample()[1]
    berlin["mapping"]["c1d2e3f4-0003-4a5b-8c6d-7e8f90a1b2c3"]["message"]["create_time"] = None
    messages = parse_import(berlin)[0].messages
    assert messages[2]["timestamp"] == messages[1]["timestamp"]


def test_read_import_takes_bytes() -> None:
    assert [c.title for c in read_import(FIXTURE.read_bytes())] == ["吃药提醒", "Packing for Berlin"]


# --- bad input ------------------------------------------------------------------------------------


def cycle() -> dict[str, Any]:
    berlin = chatgpt_sample()[1]
    berlin["mapping"]["client-created-root"]["parent"] = "c1d2e3f4-0006-4a5b-8c6d-7e8f90a1b2c3"
    return berlin


def cycle_without_current_node() -> dict[str, Any]:
    looped = {"a": {"id": "a", "parent": "b", "children": ["b"], "message": None}}
    looped["b"] = {"id": "b", "parent": "a", "children": ["a"], "message": None}
    return {"title": "loop", "mapping": looped}


def deep_chain() -> dict[str, Any]:
    """100,000 nodes in one line: a recursive walk would overflow the stack."""
    mapping: dict[str, Any] = {"n0": {"id": "n0", "parent": None, "children": ["n1"], "message": None}}
    for number in range(1, 100_000):
        message = {"author": {"role": "user"}, "content": {"content_type": "text", "parts": [f"m{number}"]}}
        mapping[f"n{number}"] = {"id": f"n{number}", "parent": f"n{number - 1}", "children": [], "message": message}
    return {"title": "deep", "mapping": mapping, "current_node": "n99999"}


def test_a_deep_chain_is_walked_without_recursion() -> None:
    messages = parse_import(deep_chain())[0].messages
    assert len(messages) == 99_999 and messages[-1]["content"] == "m99999"


@pytest.mark.parametrize(
    ("data", "sentence"),
    [
        ("just a string", "must be a JSON list of conversations"),
        (42, "must be a JSON list"),
        (None, "must be a JSON list"),
        ({"title": "no mapping"}, "without a 'mapping'"),
        ([{"title": "x"}], "conversation 1 (\"x\") has no 'mapping'"),
        ([{"title": "x", "mapping": []}], "has no 'mapping' object"),
        ([["not", "an", "object"]], "Conversation 1 of the import is not a JSON object"),
        ([{"mapping": {"a": "node"}}], "'mapping' entry that is not a JSON object"),
        ({"conversation": [], "messages": {}}, "'conversation' must be an object"),
        (cycle(), "cycle in its parent links"),
        (cycle_without_current_node(), "cycle in its parent links"),
        ([{"mapping": {}}] * 10_001, "more than 10,000 conversations"),
        ({"mapping": {f"n{i}": {} for i in range(100_001)}}, "more than 100,000 messages"),
        (
            {
                "mapping": {
                    "a": {
                        "message": {
                            "author": {"role": "user"},
                            "content": {"content_type": "text", "parts": ["x" * 1_000_001]},
                        }
                    }
                }
            },
            "longer than 1,000,000 characters",
        ),
    ],
    ids=[
        "string",
        "number",
        "null",
        "object-without-mapping",
        "conversation-without-mapping",
        "mapping-not-object",
        "conversation-not-object",
        "node-not-object",
        "our-json-malformed",
        "cycle",
        "cycle-without-current-node",
        "too-many-conversations",
        "too-many-nodes",
        "message-too-long",
    ],
)
def test_bad_imports_are_refused_with_one_sentence(data: object, sentence: str) -> None:
    with pytest.raises(ValueError, match=sentence.replace("(", r"\(").replace(")", r"\)")):
        parse_import(data)


@pytest.mark.parametrize(
    ("raw", "sentence"),
    [
        (b"{not json", "not valid JSON"),
        (b"\xff\xfe\xfa", "not UTF-8|not valid JSON"),
        (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
        (b"", "not valid JSON"),
    ],
)
def test_unreadable_files_are_refused_with_one_sentence(raw: bytes, sentence: str) -> None:
    with pytest.raises(ValueError, match=sentence):
        read_import(raw)


@pytest.mark.parametrize(
    "breakage",
    [
        "author not object",
        "parts not list",
        "content not object",
        "metadata not object",
        "parent is a list",
        "numbers as times",
    ],
)
def test_odd_fields_never_raise_anything_but_value_error(breakage: str) -> None:
    berlin = chatgpt_sample()[1]
    node = berlin["mapping"]["c1d2e3f4-0002-4a5b-8c6d-7e8f90a1b2c3"]
    message = node["message"]
    if breakage == "author not object":
        message["author"] = "assistant"
    elif breakage == "parts not list":
        message["content"]["parts"] = "text"
    elif breakage == "content not object":
        message["content"] = ["text"]
    elif breakage == "metadata not object":
        message["metadata"] = [1]
    elif breakage == "parent is a list":
        node["parent"] = ["x"]
        del berlin["current_node"]
    else:
        message["create_time"] = float("inf")
        berlin["create_time"] = 1e300
        berlin["update_time"] = True
    try:
        result = parse_import(berlin)
    except ValueError:
        return
    assert all(isinstance(m["content"], str) and isinstance(m["timestamp"], str) for m in result[0].messages)


def test_titles_are_trimmed_to_a_sane_length() -> None:
    berlin = chatgpt_sample()[1]
    berlin["title"] = "  " + "长" * 1000
    assert parse_import(berlin)[0].title == "长" * MAX_TITLE_CHARS


ODD_VALUES: list[Any] = [
    None,
    True,
    0,
    -1,
    1e308,
    10**400,
    float("nan"),
    "",
    "x",
    [],
    {},
    ["a"],
    {"a": 1},
    [None],
    [{}],
]


def places(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path to a value inside `value`."""
    found = [path]
    if isinstance(value, dict):
        for key, child in value.items():
            found += places(child, (*path, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            found += places(child, (*path, index))
    return found


def test_a_thousand_damaged_exports_give_conversations_or_value_error_never_another_exception() -> None:
    rng = random.Random(14)
    sample = chatgpt_sample() + exported()
    paths = places(sample)[1:]
    for _ in range(1000):
        damaged = copy.deepcopy(sample)
        for path in rng.sample(paths, 3):
            parent = damaged
            try:
                for key in path[:-1]:
                    parent = parent[key]
                if rng.random() < 0.2 and isinstance(parent, dict):
                    del parent[path[-1]]
                else:
                    parent[path[-1]] = rng.choice(ODD_VALUES)
            except (KeyError, IndexError, TypeError):
                continue  # an earlier damage already replaced the way there
        try:
            imported = parse_import(damaged)
        except ValueError:
            continue
        for conversation in imported:
            assert isinstance(conversation.key, str) and isinstance(conversation.title, str)
            assert all(isinstance(m["content"], str) and isinstance(m["timestamp"], str) for m in conversation.messages)
            assert all(m["role"] in ("user", "assistant") and "id" not in m for m in conversation.messages)
