"""Several conversations: the API, where messages and reminders land, titles, the index, and the migration."""

from __future__ import annotations

import json
import multiprocessing
import shutil
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import requests

from conversations import Conversations
from history_store import HistoryStore
from tests.support.client import app_env
from tests.support.servers import Gunicorn
from tests.support.waiting import wait_until

LEGACY_PLAIN = [
    {"role": "user", "content": "旧消息", "timestamp": "2024-01-01T08:00:00", "is_scheduled": False},
    {"role": "assistant", "content": "旧回复", "timestamp": "2024-01-01T08:00:01"},
    {"role": "assistant", "content": "早安提醒", "timestamp": "2024-01-02T09:00:00", "is_scheduled": True},
]


def create(api, **body: Any) -> dict[str, Any]:
    response = api.post("/api/conversations", json=body)
    assert response.status_code == 201, response.text
    return response.json()["conversation"]


def listed(api) -> list[dict[str, Any]]:
    response = api.get("/api/conversations")
    assert response.status_code == 200, response.text
    return response.json()["conversations"]


def chat_in(api, conversation_id: str | None, text: str) -> dict[str, Any]:
    body = {"message": text} if conversation_id is None else {"message": text, "conversation_id": conversation_id}
    response = api.post("/api/chat", json=body)
    assert response.status_code == 200, response.text
    return response.json()["message"]


def contents(api, conversation_id: str | None = None) -> list[str]:
    params = {"limit": 200} if conversation_id is None else {"limit": 200, "conversation_id": conversation_id}
    return [m["content"] for m in api.history(**params)]


# ---- the API -----------------------------------------------------------------------------------


def test_the_main_conversation_is_always_there(api):
    assert [c["id"] for c in listed(api)] == ["main"]
    chat_in(api, None, "你好")
    main = listed(api)[0]
    assert (main["id"], main["title"], main["message_count"], main["pinned"]) == ("main", "", 2, False)
    assert main["created_at"] and main["updated_at"]


def test_messages_land_in_their_own_conversation_and_calls_without_an_id_use_main(api):
    trip = create(api, title="旅行计划")
    assert (trip["title"], trip["message_count"], trip["pinned"], trip["reminder_at"]) == ("旅行计划", 0, False, None)
    chat_in(api, None, "主线的话")
    chat_in(api, trip["id"], "去杭州")
    assert contents(api) == ["主线的话", "收到：主线的话"]
    assert contents(api, "main") == ["主线的话", "收到：主线的话"]
    assert contents(api, trip["id"]) == ["去杭州", "收到：去杭州"]
    stream = api.post("/api/chat/stream", json={"message": "流式", "conversation_id": trip["id"]})
    assert stream.status_code == 200 and '"type": "done"' in stream.text
    assert contents(api, trip["id"])[-2:] == ["流式", "收到：流式"]
    assert api.delete("/api/history", params={"conversation_id": trip["id"]}).json() == {"success": True, "cleared": 4}
    assert contents(api, trip["id"]) == [] and len(contents(api)) == 2


def test_the_model_sees_only_the_conversation_it_is_asked_in(api, upstream):
    other = create(api)
    chat_in(api, None, "主线的秘密")
    chat_in(api, other["id"], "另一个话题")
    asked = next(r for r in upstream.requests if r["messages"][-1]["content"] == "另一个话题")
    assert "主线的秘密" not in json.dumps(asked, ensure_ascii=False)


def test_listing_puts_pinned_first_then_the_most_recently_updated(api):
    first, second = create(api, title="一"), create(api, title="二")
    chat_in(api, first["id"], "更新一下")
    assert [c["id"] for c in listed(api)] == [first["id"], second["id"], "main"]
    response = api.patch(f"/api/conversations/{second['id']}", json={"pinned": True, "title": "  改过的 名字 "})
    assert response.status_code == 200, response.text
    assert response.json()["conversation"]["title"] == "改过的 名字"
    assert [c["id"] for c in listed(api)] == [second["id"], first["id"], "main"]


def test_deleting_moves_the_files_aside_and_main_cannot_be_deleted(api):
    doomed = create(api, title="草稿")
    chat_in(api, doomed["id"], "写点什么")
    assert api.delete(f"/api/conversations/{doomed['id']}").json() == {"success": True}
    assert doomed["id"] not in [c["id"] for c in listed(api)]
    gone = api.post("/api/chat", json={"message": "还在吗", "conversation_id": doomed["id"]})
    assert (gone.status_code, gone.json()["code"]) == (404, "conversation_not_found")
    assert api.get("/api/history", params={"conversation_id": doomed["id"]}).status_code == 404
    kept = list((api.settings.data_dir / "conversations" / "deleted").glob(f"{doomed['id']}-*/{doomed['id']}.jsonl"))
    assert len(kept) == 1 and "写点什么" in kept[0].read_text()
    refused = api.delete("/api/conversations/main")
    assert (refused.status_code, refused.json()["code"]) == (409, "main_conversation")


def test_bad_ids_and_bodies_get_clear_errors(api):
    for path in ("/api/conversations/000000000000", "/api/conversations/../x", "/api/conversations/MAIN"):
        response = api.patch(path, json={"title": "x"})
        assert response.status_code == 404, (path, response.text)
    malformed = api.post("/api/chat", json={"message": "hi", "conversation_id": "not-an-id"})
    assert (malformed.status_code, malformed.json()["code"]) == (400, "invalid_conversation_id")
    assert api.get("/api/history", params={"conversation_id": "nope"}).status_code == 400
    assert api.post("/api/conversations", json={"title": 5}).status_code == 400
    assert api.post("/api/conversations", json={"title": "长" * 101}).status_code == 400
    assert api.patch("/api/conversations/main", json={"pinned": "yes"}).status_code == 400


# ---- titles ------------------------------------------------------------------------------------


def title_of(api, conversation_id: str) -> str:
    return next(c["title"] for c in listed(api) if c["id"] == conversation_id)


def test_a_new_conversation_is_titled_by_the_model_after_its_first_exchange(api, upstream):
    fresh = create(api)
    upstream.script({"content": "好的，我们来规划周末。"}, {"content": "「周末出游计划」。\n多余的一行"})
    chat_in(api, fresh["id"], "帮我规划一下这个周末去哪里玩")
    assert wait_until(lambda: title_of(api, fresh["id"]), 10, message="a title") == "周末出游计划"
    asked = upstream.requests[-1]["messages"]
    assert asked[0]["role"] == "system" and "title" in asked[0]["content"]
    assert "帮我规划一下这个周末去哪里玩" in asked[1]["content"]
    chat_in(api, fresh["id"], "再来一句")  # a later exchange does not title it again
    assert len(upstream.requests) == 3 and title_of(api, fresh["id"]) == "周末出游计划"


def test_without_the_model_the_title_is_the_first_words_and_a_users_title_is_never_replaced(api, upstream):
    fresh = create(api)
    upstream.script({"content": "回答"}, *[{"kind": "status", "status": 500, "body": {"error": {"message": "x"}}}] * 3)
    chat_in(api, fresh["id"], "Please summarise the quarterly report for the board meeting")
    assert wait_until(lambda: title_of(api, fresh["id"]), 15, message="a title") == "Please summarise the…"
    racing = create(api)  # renamed while the model is still thinking of a title
    upstream.script({"content": "回答"}, {"content": "模型的标题", "delay": 1.0})
    chat_in(api, racing["id"], "随便说点什么")

    def asked_title() -> bool:
        return any(len(r["messages"]) == 2 and "随便说点什么" in r["messages"][1]["content"] for r in upstream.requests)

    wait_until(asked_title, 10, message="the title request")
    api.patch(f"/api/conversations/{racing['id']}", json={"title": "我改的"})
    time.sleep(2.5)  # the title request answers after 1 s
    assert title_of(api, racing["id"]) == "我改的"
    named = create(api, title="我起的名字")
    chat_in(api, named["id"], "随便聊聊")
    chat_in(api, "main", "主线不需要标题")
    assert title_of(api, named["id"]) == "我起的名字" and title_of(api, "main") == ""


# ---- reminders in conversations ----------------------------------------------------------------


def test_a_reminder_lands_in_its_conversation_and_marks_it(api):
    trip = create(api, title="旅行")
    response = api.post(
        "/api/reminders", json={"text": "订酒店", "cron": "0 9 * * *", "mode": "plain", "conversation_id": trip["id"]}
    )
    assert response.status_code == 201, response.text
    reminder = response.json()["reminder"]
    assert reminder["conversation_id"] == trip["id"]
    sent = api.post(f"/api/reminders/{reminder['id']}/run", json={}).json()["message"]
    assert contents(api, trip["id"]) == ["订酒店"] and contents(api) == []
    entry = next(c for c in listed(api) if c["id"] == trip["id"])
    assert entry["reminder_at"] == sent["timestamp"]
    done = api.post(f"/api/reminders/{reminder['id']}/done", json={"message_id": sent["id"]})
    assert done.status_code == 200 and done.json()["message"]["done_at"]
    unknown = api.post("/api/reminders", json={"text": "x", "cron": "0 9 * * *", "conversation_id": "0123456789ab"})
    assert (unknown.status_code, unknown.json()["code"]) == (400, "unknown_conversation")
    assert api.get("/api/reminders").json()["reminders"][0]["conversation_id"] == "main"  # the .env one


def test_a_reminder_set_by_talking_reminds_in_that_conversation(api, upstream, serve):
    trip = create(api, title="旅行")
    call = {"tool_calls": [{"name": "create_reminder", "arguments": {"text": "收拾行李", "cron": "0 20 * * *"}}]}
    upstream.script(call, {"content": "好的"})
    chat_in(api, trip["id"], "每天晚上八点提醒我收拾行李")
    by_model = next(r for r in api.get("/api/reminders").json()["reminders"] if r["source"] == "user")
    assert (by_model["text"], by_model["conversation_id"]) == ("收拾行李", trip["id"])
    without_tools = serve(REMINDER_TOOLS="false")  # the phrase grammar reads the words instead
    other = create(without_tools, title="家务")
    chat_in(without_tools, other["id"], "10分钟后提醒我浇花")
    by_phrase = next(r for r in without_tools.get("/api/reminders").json()["reminders"] if r["text"] == "浇花")
    assert by_phrase["conversation_id"] == other["id"]


def test_a_reminder_whose_conversation_was_deleted_reminds_in_main(api):
    doomed = create(api, title="临时")
    reminder = api.post(
        "/api/reminders", json={"text": "别忘了", "cron": "0 9 * * *", "mode": "plain", "conversation_id": doomed["id"]}
    ).json()["reminder"]
    api.delete(f"/api/conversations/{doomed['id']}")
    assert api.post(f"/api/reminders/{reminder['id']}/run", json={}).status_code == 200
    assert contents(api) == ["别忘了"]


def test_a_turn_in_one_conversation_holds_back_only_that_conversations_reminders(api, upstream):
    busy = create(api, title="忙")
    to_main = api.post("/api/reminders", json={"text": "主线提醒", "cron": "0 9 * * *", "mode": "plain"}).json()
    to_busy = api.post(
        "/api/reminders", json={"text": "忙线提醒", "cron": "0 9 * * *", "mode": "plain", "conversation_id": busy["id"]}
    ).json()
    slow = ["慢", "慢", "地", "说"]
    upstream.script({"content": "".join(slow), "pieces": slow, "chunk_delay": 0.5})
    with api.session.post(
        f"{api.base_url}/api/chat/stream", json={"message": "说吧", "conversation_id": busy["id"]}, stream=True
    ) as turn:
        lines = turn.iter_lines()
        next(line for line in lines if b'"delta"' in line)  # the reply is under way
        landed: dict[str, Any] = {}
        held = threading.Thread(
            target=lambda: landed.update(
                api.post(f"/api/reminders/{to_busy['reminder']['id']}/run", json={}).json()["message"]
            )
        )
        held.start()
        sent = api.post(f"/api/reminders/{to_main['reminder']['id']}/run", json={}).json()["message"]
        assert sent["content"] == "主线提醒"
        assert not landed and held.is_alive(), "the busy conversation's reminder did not wait for the turn"
        done = json.loads(next(line for line in lines if b'"done"' in line)[6:])["message"]
    held.join(30)
    assert landed["id"] == done["id"] + 1, "the reminder landed between the question and its answer"


# ---- the index ---------------------------------------------------------------------------------


def test_the_index_is_a_cache_rebuilt_from_the_logs(api):
    trip = create(api, title="旅行")
    chat_in(api, trip["id"], "一")
    before = listed(api)
    index = api.settings.data_dir / "conversations" / "index.json"
    assert index.exists()
    index.unlink()
    assert listed(api) == before
    index.write_text("{broken")
    assert listed(api) == before
    assert list(index.parent.glob("index.json.corrupt-*"))
    # Another worker's write (a new message) shows at once: the index follows the logs.
    HistoryStore(api.settings.data_dir / "conversations" / f"{trip['id']}.jsonl", creates=False).append("user", "二")
    assert next(c for c in listed(api) if c["id"] == trip["id"])["message_count"] == 3


# ---- many processes ----------------------------------------------------------------------------


def _chat_from_a_process(base_url: str, process: int, conversations: list[str], per_thread: int) -> list[str]:
    """8 threads, each chatting in both conversations in turn; returns the texts whose turn was answered."""

    def run(thread: int) -> list[str]:
        done = []
        with requests.Session() as session:
            for number in range(per_thread):
                conversation = conversations[number % 2]
                text = f"{conversation}/p{process}-t{thread}-{number}"
                body = {"message": text, "conversation_id": conversation}
                response = session.post(f"{base_url}/api/chat", json=body, timeout=60)
                assert response.status_code == 200, response.text
                done.append(text)
        return done

    with ThreadPoolExecutor(8) as pool:
        return [text for texts in pool.map(run, range(8)) for text in texts]


def test_two_conversations_chatted_in_parallel_by_two_processes_of_eight_threads(upstream, tmp_path):
    env = app_env(upstream, tmp_path / "data", HISTORY_LIVE_LIMIT="40")  # small: rotation happens meanwhile
    with Gunicorn(env, ["-c", "gunicorn.conf.py", "-w", "2", "--threads", "8"], tmp_path / "gunicorn.log") as server:
        ids = [requests.post(f"{server.base_url}/api/conversations", json={}, timeout=10).json()["conversation"]["id"]]
        ids.append("main")
        context = multiprocessing.get_context("spawn")
        with context.Pool(2) as pool:
            sent = pool.starmap(_chat_from_a_process, [(server.base_url, p, ids, 6) for p in range(2)])
        texts = [text for batch in sent for text in batch]
        assert len(texts) == 96
        for conversation in ids:
            history = requests.get(
                f"{server.base_url}/api/history", params={"conversation_id": conversation, "limit": 500}, timeout=10
            ).json()["messages"]
            questions = [m for m in history if m["role"] == "user"]
            expected = sorted(t for t in texts if t.startswith(f"{conversation}/"))
            assert sorted(m["content"] for m in questions) == expected, "a message is missing, twice or elsewhere"
            by_id = {m["id"]: m for m in history}
            answers = [m for m in history if m["role"] == "assistant"]
            assert sorted(by_id[a["reply_to"]]["content"] for a in answers) == expected
            assert all(a["content"] == "收到：" + by_id[a["reply_to"]]["content"] for a in answers)
            assert len({m["id"] for m in history}) == len(history) == 2 * len(expected) == 96


# ---- migration ---------------------------------------------------------------------------------


def write_legacy_v2(data_dir: Path, live: int, archived: int, floor_id: int = 1) -> list[dict[str, Any]]:
    """The pre-conversations format: a live file and immutable archives of 50 messages each."""
    messages = [
        {
            "id": number,
            "role": "user" if number % 2 else "assistant",
            "content": f"第{number}条",
            "timestamp": f"2026-01-01T08:{number // 60 % 60:02d}:{number % 60:02d}.000+08:00",
            "is_scheduled": number % 25 == 0,
        }
        for number in range(1, live + archived + 1)
    ]
    (data_dir / "chat_history-archive").mkdir(parents=True)
    for start in range(0, archived, 50):
        chunk = messages[start : min(start + 50, archived)]
        name = f"{chunk[0]['id']:09d}-{chunk[-1]['id']:09d}.json"
        (data_dir / "chat_history-archive" / name).write_text(json.dumps({"messages": chunk}, ensure_ascii=False))
    state = {"version": 2, "next_id": live + archived + 1, "floor_id": floor_id, "messages": messages[archived:]}
    (data_dir / "chat_history.json").write_text(json.dumps(state, ensure_ascii=False))
    return [m for m in messages if m["id"] >= floor_id]


def every_message(api, conversation_id: str = "main") -> list[dict[str, Any]]:
    """Every visible message, paging back through the archives like the page does."""
    found: list[dict[str, Any]] = []
    params: dict[str, Any] = {"limit": 200, "conversation_id": conversation_id}
    while True:
        page = api.get("/api/history", params=params).json()
        found = page["messages"] + found
        if not page["has_more"]:
            return found
        params["before"] = found[0]["id"]


def test_the_original_apps_plain_list_migrates_into_main_with_nothing_lost(serve, tmp_path):
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    legacy = data_dir / "chat_history.json"
    legacy.write_text(json.dumps(LEGACY_PLAIN, ensure_ascii=False))
    api = serve()
    stored = every_message(api)
    assert [(m["id"], m["content"]) for m in stored] == [(1, "旧消息"), (2, "旧回复"), (3, "早安提醒")]
    assert len(stored) == len(LEGACY_PLAIN)
    assert stored[1]["is_scheduled"] is False and stored[2]["is_scheduled"] is True
    main = listed(api)[0]
    assert (main["message_count"], main["reminder_at"]) == (3, "2024-01-02T09:00:00")
    assert not legacy.exists() and json.loads((data_dir / "chat_history.json.migrated").read_text()) == LEGACY_PLAIN
    assert chat_in(api, None, "新消息")["id"] == 5  # ids go on from the old ones


def test_the_archived_format_migrates_with_every_message_its_ids_and_what_was_cleared(serve, tmp_path):
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    visible = write_legacy_v2(data_dir, live=120, archived=430, floor_id=101)  # the first 100 were cleared
    api = serve(HISTORY_LIVE_LIMIT="200")
    stored = every_message(api)
    assert len(stored) == len(visible) == 450
    assert stored == visible
    assert listed(api)[0]["message_count"] == 450
    assert sorted(p.name for p in (data_dir / "conversations" / "main-archive").glob("*.json")) == sorted(
        p.name for p in (data_dir / "chat_history-archive.migrated").glob("*.json")
    )
    assert api.delete("/api/history").json()["cleared"] == 120  # the live part; archives below stay hidden after


def test_migration_runs_once_and_an_interrupted_one_starts_over_from_the_untouched_files(make_settings, tmp_path):
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    visible = write_legacy_v2(data_dir, live=30, archived=100)
    original = {p.name: p.read_bytes() for p in data_dir.rglob("*.json")}
    settings = make_settings()
    # Killed mid-migration: archives copied, the new log never written. The old files are untouched.
    (data_dir / "conversations" / "main-archive").mkdir(parents=True)
    shutil.copy(next((data_dir / "chat_history-archive").glob("*.json")), data_dir / "conversations" / "main-archive")
    assert {p.name: p.read_bytes() for p in data_dir.glob("chat_history*/*.json")} | {
        "chat_history.json": (data_dir / "chat_history.json").read_bytes()
    } == original
    Conversations(settings)
    again = Conversations(settings)  # a second worker, or the next start: nothing to do
    store = again.store("main")
    assert list(store.visible()) == visible
    assert not (data_dir / "chat_history.json").exists()
    assert (data_dir / "chat_history.json.migrated").read_bytes() == original["chat_history.json"]


# ---- search ------------------------------------------------------------------------------------


def search(api, q: str, **params: Any) -> list[dict[str, Any]]:
    response = api.get("/api/search", params={"q": q, **params})
    assert response.status_code == 200, response.text
    return response.json()["results"]


def test_search_finds_chinese_words_and_any_case_across_conversations_newest_first(api):
    health = create(api, title="健康")
    chat_in(api, None, "记得每天吃药")
    chat_in(api, health["id"], "晚上吃药了吗")
    chat_in(api, health["id"], "Meeting with Dr. Wang about the MEDICINE")
    found = search(api, "吃药")
    assert [(r["conversation_id"], r["role"]) for r in found] == [
        (health["id"], "assistant"),
        (health["id"], "user"),
        ("main", "assistant"),
        ("main", "user"),
    ]
    assert found[1]["snippet"] == "晚上吃药了吗"
    message = api.history(conversation_id=health["id"])[0]
    assert (found[1]["message_id"], found[1]["timestamp"]) == (message["id"], message["timestamp"])
    assert [r["snippet"] for r in search(api, "medicine meeting")][-1] == "Meeting with Dr. Wang about the MEDICINE"
    assert search(api, "吃饭") == [] and len(search(api, "吃药", limit=1)) == 1
    for bad in ({"q": ""}, {"q": "   "}, {"q": "x" * 201}, {}, {"q": "药", "limit": 0}):
        response = api.get("/api/search", params=bad)
        assert response.status_code == 400 and response.json()["code"] in ("invalid_q", "missing_q", "invalid_limit")


def test_search_sees_new_messages_and_not_deleted_or_cleared_ones(api):
    doomed = create(api, title="待删")
    chat_in(api, doomed["id"], "独一无二的词")
    assert len(search(api, "独一无二")) == 2
    api.delete(f"/api/conversations/{doomed['id']}")
    assert search(api, "独一无二") == []
    chat_in(api, None, "另一个独特的词")
    assert len(search(api, "独特")) == 2
    api.delete("/api/history")
    assert search(api, "独特") == []


def test_search_reaches_messages_rotated_into_archives(serve):
    api = serve(HISTORY_LIVE_LIMIT="20")
    for number in range(30):
        chat_in(api, None, f"第{number}号备忘")
    assert [r["snippet"] for r in search(api, "第0号")] == ["收到：第0号备忘", "第0号备忘"]
    assert list((api.settings.data_dir / "conversations" / "main-archive").glob("*.json"))


# ---- export and import -------------------------------------------------------------------------

FIXTURE = Path(__file__).parent / "fixtures" / "chatgpt_conversations.json"


def test_one_conversation_exports_as_markdown_and_json(api):
    trip = create(api, title="旅行计划")
    chat_in(api, trip["id"], "去**杭州**")
    markdown = api.get(f"/api/conversations/{trip['id']}/export", params={"format": "markdown"})
    assert markdown.status_code == 200 and markdown.headers["Content-Type"].startswith("text/markdown")
    assert "attachment" in markdown.headers["Content-Disposition"]
    assert "旅行计划" in markdown.text and "去**杭州**" in markdown.text and "收到：去**杭州**" in markdown.text
    saved = api.get(f"/api/conversations/{trip['id']}/export", params={"format": "json"}).json()
    assert saved["conversation"]["id"] == trip["id"] and saved["messages"] == api.history(conversation_id=trip["id"])
    assert api.get("/api/conversations/000000000000/export").status_code == 404
    assert api.get(f"/api/conversations/{trip['id']}/export", params={"format": "pdf"}).status_code == 400


WITHOUT_IDS = ("id", "reply_to")


def comparable(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in m.items() if k not in WITHOUT_IDS} for m in messages]


def test_export_then_import_on_another_server_gives_the_same_conversations_and_twice_adds_nothing(serve, tmp_path):
    source = serve()
    trip = create(source, title="旅行")
    chat_in(source, trip["id"], "去杭州")
    chat_in(source, None, "主线")
    reminder = source.post("/api/reminders", json={"text": "喝水", "cron": "0 9 * * *", "mode": "plain"}).json()
    source.post(f"/api/reminders/{reminder['reminder']['id']}/run", json={})
    exported = source.get("/api/export")
    assert exported.status_code == 200 and "conversations.json" in exported.headers["Content-Disposition"]
    data = exported.json()
    assert {c["title"] for c in data} == {"旅行", ""} and all("mapping" in c and "current_node" in c for c in data)

    target = serve(CHAT_HISTORY_FILE=str(tmp_path / "other" / "chat_history.json"))
    response = target.post("/api/import", json=data)
    assert response.status_code == 200, response.text
    assert (response.json()["imported"], response.json()["skipped"]) == (2, 0)
    imported = {c["title"]: c["id"] for c in response.json()["conversations"]}
    assert comparable(every_message(target, imported["旅行"])) == comparable(every_message(source, trip["id"]))
    assert comparable(every_message(target, imported[""])) == comparable(every_message(source, "main"))
    again = target.post("/api/import", files={"file": ("conversations.json", exported.content, "application/json")})
    assert again.status_code == 200, again.text
    assert (again.json()["imported"], again.json()["skipped"]) == (0, 2)
    back_home = source.post("/api/import", json=data).json()  # our own export, into the server it came from
    assert (back_home["imported"], back_home["skipped"]) == (0, 2)
    assert len(listed(target)) == 3 and len(listed(source)) == 2


def test_a_chatgpt_export_imports_as_a_json_body_or_a_file(api, upstream):
    upload = {"file": ("conversations.json", FIXTURE.read_bytes(), "application/json")}
    response = api.post("/api/import", files=upload)
    assert response.status_code == 200, response.text
    created = response.json()["conversations"]
    assert [c["title"] for c in created] == ["吃药提醒", "Packing for Berlin"]
    berlin = api.history(conversation_id=created[1]["id"])
    assert berlin[0]["content"] == "What should I pack for **Berlin in December**?"
    assert {m["role"] for m in berlin} == {"user", "assistant"}
    # Each reply answers the question before it, so the model sees the imported turns as context.
    assert all(m["reply_to"] == berlin[i - 1]["id"] for i, m in enumerate(berlin) if m["role"] == "assistant")
    api.post("/api/chat", json={"message": "And in January?", "conversation_id": created[1]["id"]})
    asked = upstream.requests[0]["messages"]
    assert [m["content"] for m in asked[1:3]] == [berlin[0]["content"], berlin[1]["content"]]
    assert created[1]["created_at"] == "2024-11-26T00:00:10.000+00:00"
    as_body = api.post("/api/import", data=FIXTURE.read_bytes(), headers={"Content-Type": "application/json"})
    assert (as_body.json()["imported"], as_body.json()["skipped"]) == (0, 2)
    assert len(search(api, "Berlin")) >= 1


def test_bad_imports_get_a_clear_400_and_change_nothing(api):
    for body, kind in (
        (b"not json", "application/json"),
        (b'{"mapping": 5}', "application/json"),
        (b"[1, 2]", "application/json"),
    ):
        response = api.post("/api/import", data=body, headers={"Content-Type": kind})
        assert (response.status_code, response.json()["code"]) == (400, "invalid_import"), response.text
    form = api.post("/api/import", files={"other": ("x.json", b"[]", "application/json")})
    assert form.status_code == 400
    assert api.post("/api/import", data=b"[]", headers={"Content-Type": "text/plain"}).status_code == 415
    cross_site = api.post(
        "/api/import", files={"file": ("c.json", FIXTURE.read_bytes())}, headers={"Origin": "https://evil.example"}
    )
    assert cross_site.status_code == 403
    assert [c["id"] for c in listed(api)] == ["main"]


def test_an_import_larger_than_the_chat_body_limit_is_accepted_up_to_its_own(serve):
    api = serve(IMPORT_MAX_BYTES="200000")
    big = json.loads(FIXTURE.read_text())
    big[0]["title"] = "大" + "。" * 100_000  # about 300 KB: over MAX_BODY_BYTES (64 KB) and IMPORT_MAX_BYTES
    too_big = api.post("/api/import", json=big)
    assert (too_big.status_code, too_big.json()["code"]) == (413, "payload_too_large")
    big[0]["title"] = "大" + "。" * 30_000  # about 90 KB: over MAX_BODY_BYTES, under IMPORT_MAX_BYTES
    assert api.post("/api/import", json=big).status_code == 200


def test_a_migration_that_fails_leaves_the_old_files_in_place_and_the_next_start_completes_it(
    make_settings, tmp_path, monkeypatch, caplog
):
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    visible = write_legacy_v2(data_dir, live=30, archived=100)
    before = {p.relative_to(data_dir): p.read_bytes() for p in data_dir.rglob("*.json")}
    settings = make_settings()

    def disk_full(*args: Any, **kwargs: Any) -> None:
        raise OSError(28, "No space left on device")

    with monkeypatch.context() as patched:
        patched.setattr(HistoryStore, "write_log", disk_full)
        Conversations(settings)
    assert "cannot be prepared" in caplog.text
    legacy = {
        p.relative_to(data_dir): p.read_bytes() for p in data_dir.rglob("*.json") if "conversations" not in p.parts
    }
    assert legacy == before
    assert list(Conversations(settings).store("main").visible()) == visible
