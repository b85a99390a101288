"""Review of issue 14's store and conversations: each test here failed on the code reviewed (see the report)."""

from __future__ import annotations

import json
from pathlib import Path

import requests

from history_store import HistoryStore
from tests.support.client import app_env
from tests.support.servers import Gunicorn
from tests.support.waiting import wait_until


def _store(path: Path, live_limit: int = 200) -> HistoryStore:
    return HistoryStore(path, live_limit=live_limit, timezone="Asia/Shanghai")


# ---- the reader's incremental cache --------------------------------------------------------


def test_a_worker_never_reuses_an_id_after_another_worker_rewrote_the_log_to_the_same_size(tmp_path):
    """Two workers (two store objects, each with its own cache) on one log. Worker B clears twice: the
    second rewrite often lands on the inode worker A cached (ext4 reuses a freed inode at once), with the
    same size. A's cache then matches (inode, size) and A writes with its old next_id and floor."""
    failures = []
    for attempt in range(20):
        path = tmp_path / f"{attempt}" / "main.jsonl"
        path.parent.mkdir()
        a, b = _store(path), _store(path)
        b.append("user", "first")
        b.clear()
        assert a.recent(10) == []  # A caches the header-only log (next_id 2, floor 2)
        second = b.append("user", "second")
        b.clear()
        b.clear()  # the same header, next_id 3: the same size as the one A cached
        mine = a.append("user", "mine")
        shown = [m["content"] for m in b.page(10)[0]]  # what GET /api/history shows
        if mine["id"] <= second["id"] or shown != ["mine"]:
            failures.append({"attempt": attempt, "mine": mine["id"], "second": second["id"], "shown": shown})
    assert failures == []


def test_a_reader_sees_a_rename_made_by_another_worker_whatever_the_inode(tmp_path):
    """Meta changes fold into a rewrite once extra lines pass the limit; a rewrite of the same size on a
    reused inode must still be read again (the header's generation is checked only when the file grew)."""
    path = tmp_path / "c.jsonl"
    writer, reader = _store(path, live_limit=0), _store(path, live_limit=0)
    writer.initialise({"title": "t000"}, [])
    stale = []
    for i in range(1, 61, 2):
        reader.meta()
        writer.change_meta(title=f"t{i:03d}")
        writer.change_meta(title=f"t{i + 1:03d}")
        seen = reader.meta()["title"]
        if seen != f"t{i + 1:03d}":
            stale.append((f"t{i + 1:03d}", seen))
    assert stale == []


# ---- reminders and deleted conversations ------------------------------------------------------


def test_a_reminder_whose_conversation_was_deleted_can_be_marked_done_where_its_message_landed(api):
    """Its messages go to main once its conversation is deleted (ChatService.reminder_conversation), but
    done and snooze without a conversation_id (what the page sends) look in the deleted one: 404."""
    doomed = api.post("/api/conversations", json={"title": "将删"}).json()["conversation"]
    reminder = api.post(
        "/api/reminders", json={"text": "喝水", "cron": "0 9 * * *", "mode": "plain", "conversation_id": doomed["id"]}
    ).json()["reminder"]
    assert api.delete(f"/api/conversations/{doomed['id']}").status_code == 200
    sent = api.post(f"/api/reminders/{reminder['id']}/run", json={}).json()["message"]
    assert [m["id"] for m in api.history(limit=50)] == [sent["id"]]  # it landed in main
    done = api.post(f"/api/reminders/{reminder['id']}/done", json={"message_id": sent["id"]})
    assert done.status_code == 200, done.text
    snooze = api.post(f"/api/reminders/{reminder['id']}/snooze", json={"message_id": sent["id"], "minutes": 5})
    assert snooze.status_code == 201, snooze.text


# ---- a conversation deleted while a reply streams ---------------------------------------------


def test_a_stream_whose_conversation_is_deleted_mid_reply_ends_with_an_error_event(api, upstream):
    """The reply cannot be stored (ConversationGone) once the log moved away; the stream must still end
    with an event the page understands, not be cut off with a traceback in the log."""
    doomed = api.post("/api/conversations", json={"title": "将删"}).json()["conversation"]
    slow = ["慢", "慢", "地", "说"]
    upstream.script({"content": "".join(slow), "pieces": slow, "chunk_delay": 0.5})
    events = []
    with api.session.post(
        f"{api.base_url}/api/chat/stream", json={"message": "说吧", "conversation_id": doomed["id"]}, stream=True
    ) as turn:
        lines = turn.iter_lines()
        for line in lines:
            if line.startswith(b"data: "):
                events.append(json.loads(line[6:]))
                if events[-1]["type"] == "delta":
                    break
        assert api.delete(f"/api/conversations/{doomed['id']}").status_code == 200
        try:
            events += [json.loads(line[6:]) for line in lines if line.startswith(b"data: ")]
        except requests.exceptions.RequestException as error:
            events.append({"type": "cut", "error": repr(error)})
    assert events[-1]["type"] in ("error", "done"), events[-1]
    assert events[-1].get("code") == "conversation_not_found", events[-1]


# ---- done marks and an archive orphaned by a crash ----------------------------------------------


def test_a_done_mark_survives_in_export_and_search_after_a_rotation_that_a_crash_had_interrupted(tmp_path):
    """A writer killed between a rotation's archive and the log's rewrite leaves an archive overlapping the
    live log (simulated as tests/test_history_store.py does). A done mark added after that is folded into the
    next rotation's archive, but visible() (export, search) reads the overlap from the older, orphaned copy."""
    path = tmp_path / "main.jsonl"
    store = _store(path, live_limit=20)
    reminder = store.append("assistant", "吃药", is_scheduled=True, reminder_id="r1", scheduled_for="t1")
    for number in range(14):
        store.append("user", f"m{number}")
    live = store.recent(100)
    (tmp_path / "main-archive").mkdir()
    orphan = tmp_path / "main-archive" / f"{live[0]['id']:09d}-{live[9]['id']:09d}.json"
    orphan.write_text(json.dumps({"messages": live[:10]}, ensure_ascii=False))
    assert store.mark_done(reminder["id"], "r1")["done_at"]
    for number in range(14, 40):
        store.append("user", f"m{number}")
    paged = next(m for m in store.page(100)[0] if m["id"] == reminder["id"])
    assert paged.get("done_at")  # GET /api/history has it
    exported = next(m for m in _store(path, live_limit=20).visible() if m["id"] == reminder["id"])
    assert exported.get("done_at"), exported


# ---- import size limits -----------------------------------------------------------------------


def _chatgpt_export(text: str) -> list[dict]:
    node = {"id": "n1", "parent": None, "children": []}
    node["message"] = {"author": {"role": "user"}, "content": {"content_type": "text", "parts": [text]}}
    return [{"title": "大", "create_time": 1700000000.0, "mapping": {"n1": node}, "current_node": "n1"}]


def test_a_too_large_import_names_the_import_limit(serve):
    api = serve(MAX_BODY_BYTES="100000", IMPORT_MAX_BYTES="2048")
    payload = json.dumps(_chatgpt_export("长" * 5000), ensure_ascii=False).encode()
    refused = api.post("/api/import", data=payload, headers={"Content-Type": "application/json"})
    assert refused.status_code == 413, refused.text
    assert "2048" in refused.json()["error"], refused.json()


# ---- the listing --------------------------------------------------------------------------------


def _listed(api, conversation_id: str) -> dict:
    return next(c for c in api.get("/api/conversations").json()["conversations"] if c["id"] == conversation_id)


def test_a_cleared_conversation_has_no_reminder_badge_left(api):
    """The contract: `reminder_at` is the newest reminder message *in* the conversation, or null. Clearing
    hides every message, but the meta folded into the rewritten header keeps the old reminder_at."""
    trip = api.post("/api/conversations", json={"title": "旅行"}).json()["conversation"]
    reminder = api.post(
        "/api/reminders", json={"text": "订票", "cron": "0 9 * * *", "mode": "plain", "conversation_id": trip["id"]}
    ).json()["reminder"]
    assert api.post(f"/api/reminders/{reminder['id']}/run", json={}).status_code == 200
    assert _listed(api, trip["id"])["reminder_at"]
    cleared = api.delete("/api/history", params={"conversation_id": trip["id"]}).json()
    assert cleared == {"success": True, "cleared": 1}
    after = _listed(api, trip["id"])
    assert (after["message_count"], after["reminder_at"]) == (0, None), after


def test_message_count_counts_messages_after_a_bad_line_was_repaired(tmp_path):
    """message_count is next_id - floor_id; a repair skips ids for lines that did not parse, so the count
    then includes messages that are not there."""
    path = tmp_path / "c.jsonl"
    store = _store(path)
    store.append("user", "一")
    with path.open("ab") as log:
        log.write(b"{not json\n")  # a disk error or a bad edit
    store.append("user", "二")
    assert [m["content"] for m in store.page(10)[0]] == ["一", "二"]
    assert store.meta()["message_count"] == 2, store.meta()


# ---- the same, through real Gunicorn workers ----------------------------------------------------


def _pinned_sessions(server: Gunicorn) -> tuple[requests.Session, requests.Session]:
    """Two keep-alive sessions served by two different workers (gthread keeps each connection on its worker),
    told apart by the worker's pid that the access log (format set on the command line) records."""
    by_pid: dict[str, requests.Session] = {}
    for number in range(40):
        session = requests.Session()
        marker = f"pin{number}x"
        assert session.get(f"{server.base_url}/api/health", params={"m": marker}, timeout=10).status_code == 200
        wait_until(lambda marker=marker: marker in server.log_text(), 10)
        line = next(line for line in server.log_text().splitlines() if marker in line)
        by_pid.setdefault(line.split()[0], session)
        if len(by_pid) == 2:
            first, second = by_pid.values()
            return first, second
    raise AssertionError("every connection went to one worker")


def test_every_acknowledged_chat_shows_in_the_history_when_two_gunicorn_workers_clear_and_chat(upstream, tmp_path):
    """Worker A caches the log right after a clear. Worker B chats and clears twice: two rewrites, the
    second on the inode A cached (freed by the first) with the same size. A's next chat then uses its old
    next_id and floor: answered 200, stored under the floor, never shown (and its id is one given before)."""
    env = app_env(upstream, tmp_path / "data")
    args = ["-c", "gunicorn.conf.py", "-w", "2", "--threads", "2", "--access-logformat", "%(p)s %(r)s %(s)s"]
    with Gunicorn(env, args, tmp_path / "gunicorn.log") as server:
        a, b = _pinned_sessions(server)

        def call(session: requests.Session, method: str, path: str, **kwargs) -> requests.Response:
            response = session.request(method, server.base_url + path, timeout=30, **kwargs)
            assert response.status_code == 200, response.text
            return response

        lost = []
        for cycle in range(10):
            call(a, "DELETE", "/api/history")  # A caches the header-only log
            call(b, "POST", "/api/chat", json={"message": f"b {cycle}"})
            call(b, "DELETE", "/api/history")
            call(b, "DELETE", "/api/history")
            sent = call(a, "POST", "/api/chat", json={"message": f"a {cycle}"}).json()["message"]
            shown = [m["id"] for m in call(b, "GET", "/api/history", params={"limit": 50}).json()["messages"]]
            if sent["id"] not in shown:
                lost.append({"cycle": cycle, "reply": sent["id"], "shown": shown})
        assert lost == []


# ---- a migration that failed, then a chat ------------------------------------------------------


def test_a_failed_migration_is_not_abandoned_once_a_chat_created_the_main_log(serve, tmp_path):
    """The app starts even when the migration fails (logged), and the first chat then starts an empty
    main.jsonl (creates=True). The next start sees main.jsonl and never migrates: the old history is gone
    from the app for good. (The failure here: the new archive folder's name is taken by a file.)"""
    data_dir = tmp_path / "data"
    (data_dir / "conversations").mkdir(parents=True)
    old = [
        {
            "id": 1,
            "role": "user",
            "content": "旧问题",
            "timestamp": "2026-01-01T08:00:00.000+08:00",
            "is_scheduled": False,
        },
        {"id": 2, "role": "assistant", "content": "旧回答", "timestamp": "2026-01-01T08:00:01.000+08:00"},
    ]
    (data_dir / "chat_history.json").write_text(json.dumps({"next_id": 3, "floor_id": 1, "messages": old}))
    (data_dir / "chat_history-archive").mkdir()
    blocker = data_dir / "conversations" / "main-archive"
    blocker.write_text("in the way")
    first = serve()
    chatted = first.post("/api/chat", json={"message": "新问题"})
    blocker.unlink()  # the problem is fixed; the app restarts
    again = serve()
    contents = [m["content"] for m in again.history(limit=50)]
    assert contents[:2] == ["旧问题", "旧回答"], (chatted.status_code, contents)


def test_a_deleted_reminders_message_in_another_conversation_can_still_be_snoozed(api):
    """Snoozing a message of a reminder deleted since is meant to work (snooze_reminder's docstring), but
    without a conversation_id the lookup falls back to main, not to where the message is: 404."""
    trip = api.post("/api/conversations", json={"title": "旅行"}).json()["conversation"]
    reminder = api.post(
        "/api/reminders", json={"text": "订票", "cron": "0 9 * * *", "mode": "plain", "conversation_id": trip["id"]}
    ).json()["reminder"]
    sent = api.post(f"/api/reminders/{reminder['id']}/run", json={}).json()["message"]
    assert api.delete(f"/api/reminders/{reminder['id']}").status_code == 200
    snooze = api.post(f"/api/reminders/{reminder['id']}/snooze", json={"message_id": sent["id"], "minutes": 5})
    assert snooze.status_code == 201, snooze.text
