"""The JSON history: atomic writes under kill -9, many processes, corruption, rotation and paging."""

from __future__ import annotations

import json
import logging
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from errors import StorageError
from history_store import HistoryStore
from tests.support.servers import ROOT


def all_contents(path: Path) -> list[str]:
    """Every visible message, paging back through the archives like the API does."""
    store = HistoryStore(path)
    messages, has_more = store.page(500)
    found = list(messages)
    while has_more:
        messages, has_more = store.page(500, before=found[0]["id"])
        found = messages + found
    return [m["content"] for m in found]


def spawn(path: Path, prefix: str, count: int, threads: int = 1, live_limit: int = 500) -> subprocess.Popen:
    command = [
        sys.executable,
        "-m",
        "tests.support.append_worker",
        str(path),
        prefix,
        str(count),
        str(threads),
        str(live_limit),
    ]
    return subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, text=True)


def log_records(path: Path) -> list[dict[str, Any]]:
    """Every line of a log, parsed: each complete line must be JSON."""
    return [json.loads(line) for line in path.read_bytes().splitlines()]


def live_messages(path: Path) -> list[dict[str, Any]]:
    return [record for record in log_records(path) if "role" in record]


def test_kill_9_at_random_moments_never_loses_an_acknowledged_write(tmp_path):
    path = tmp_path / "main.jsonl"
    acknowledged: list[str] = []
    rng = random.Random(1342)
    for round_number in range(30):
        child = spawn(path, f"r{round_number}", 100_000, live_limit=40)
        time.sleep(rng.uniform(0.15, 0.5))
        child.send_signal(signal.SIGKILL)
        output, _ = child.communicate()
        acknowledged += [line[4:] for line in output.splitlines() if line.startswith("ack ")]
        stored = all_contents(path)
        assert len(stored) == len(set(stored)), "a message was stored twice"
        missing = set(acknowledged) - set(stored)
        assert not missing, f"round {round_number}: acknowledged but lost: {sorted(missing)[:5]}"
    assert len(acknowledged) > 300  # the children really wrote between kills
    assert list((tmp_path / "main-archive").glob("*.json")), "rotation was exercised"
    HistoryStore(path, live_limit=40).append("user", "last")
    log_records(path)  # after the next write every line parses, a torn one repaired


def test_many_threads_in_two_processes_store_every_message_exactly_once(tmp_path):
    path = tmp_path / "main.jsonl"
    children = [spawn(path, f"p{n}", 25, threads=8, live_limit=120) for n in range(2)]
    for child in children:
        output, _ = child.communicate(timeout=120)
        assert child.returncode == 0
        assert output.count("ack ") == 200
    stored = all_contents(path)
    expected = {f"p{p}-{t}-{n}" for p in range(2) for t in range(8) for n in range(25)}
    assert len(stored) == 400
    assert set(stored) == expected
    ids = [m["id"] for m in HistoryStore(path).page(500)[0]]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)


def test_an_append_adds_one_line_and_rewrites_nothing(tmp_path):
    path = tmp_path / "main.jsonl"
    store = HistoryStore(path, live_limit=20)
    store.append("user", "一")
    inode, size = path.stat().st_ino, path.stat().st_size
    message = store.append("user", "二", reply_to=1)
    assert path.stat().st_ino == inode, "the log was replaced, not appended to"
    assert path.read_bytes()[size:] == json.dumps(message, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"


def test_a_torn_last_line_is_ignored_by_readers_and_repaired_by_the_next_writer(tmp_path, caplog):
    path = tmp_path / "main.jsonl"
    writer = HistoryStore(path)
    writer.append("user", "完整")
    with path.open("ab") as log:  # a writer that died mid-line (or a full disk)
        log.write('{"id":2,"role":"user","content":"半'.encode())
    reader = HistoryStore(path)
    assert [m["content"] for m in reader.recent(10)] == ["完整"]
    with caplog.at_level(logging.WARNING):
        message = writer.append("user", "之后")
    assert message["id"] == 2
    assert [m["content"] for m in live_messages(path)] == ["完整", "之后"]
    assert [m["content"] for m in reader.recent(10)] == ["完整", "之后"]
    aside = list(tmp_path.glob("main.jsonl.corrupt-*"))
    assert len(aside) == 1 and aside[0].read_bytes().endswith("半".encode())
    assert "torn last line" in caplog.text


def test_a_bad_line_in_the_middle_is_skipped_kept_aside_and_the_rest_kept(tmp_path):
    path = tmp_path / "main.jsonl"
    store = HistoryStore(path)
    for text in ("一", "二", "三"):
        store.append("user", text)
    lines = path.read_bytes().splitlines(keepends=True)
    lines[2] = lines[3] = b"not json at all\n"  # messages 2 and 3, damaged by a bad edit
    path.write_bytes(b"".join(lines))
    assert [m["content"] for m in HistoryStore(path).recent(10)] == ["一"]
    assert store.append("user", "四")["id"] == 4  # never reuses an id a page may have seen
    assert [m["content"] for m in live_messages(path)] == ["一", "四"]
    assert [p.read_bytes().count(b"not json at all") for p in tmp_path.glob("main.jsonl.corrupt-*")] == [2]


def test_live_log_stays_capped_and_paging_reaches_the_archives(tmp_path):
    path = tmp_path / "main.jsonl"
    store = HistoryStore(path, live_limit=20)
    for number in range(95):
        store.append("user", f"m{number}")
    live = live_messages(path)
    assert len(live) <= 20
    archived = [json.loads(p.read_text())["messages"] for p in (tmp_path / "main-archive").glob("*.json")]
    assert sum(map(len, archived)) + len(live) == 95
    assert all_contents(path) == [f"m{n}" for n in range(95)]
    page, has_more = store.page(5, before=12)
    assert [m["content"] for m in page] == ["m6", "m7", "m8", "m9", "m10"] and has_more


def test_done_marks_and_meta_changes_are_lines_folded_in_when_the_log_is_rewritten(tmp_path):
    path = tmp_path / "main.jsonl"
    store = HistoryStore(path, live_limit=20)
    sent = store.append("assistant", "喝水", is_scheduled=True, reminder_id="1", scheduled_for="t1")
    store.change_meta(title="日常")
    done = store.mark_done(sent["id"], "1")
    assert log_records(path)[-1] == {"done": sent["id"], "at": done["done_at"]}
    for number in range(12):
        store.append("user", f"m{number}")
    reread = HistoryStore(path, live_limit=20)
    assert reread.recent(20)[0]["done_at"] == done["done_at"] and reread.meta()["title"] == "日常"
    for number in range(30):  # past the limit: rotated and rewritten
        store.change_meta(pinned=number % 2 == 0)
    records = log_records(path)
    assert len(records) <= 1 + 13 + 20 and not any("done" in r for r in records)  # header, messages, few changes
    assert HistoryStore(path).meta()["title"] == "日常"


def test_reads_parse_only_what_was_appended_since_the_last_read(tmp_path):
    path = tmp_path / "main.jsonl"
    writer, reader = HistoryStore(path), HistoryStore(path)
    writer.append("user", "一")
    first = reader._read()
    assert reader._read() is first  # unchanged file: no second parse
    writer.append("user", "二")
    second = reader._read()
    assert [m["content"] for m in second.messages] == ["一", "二"]
    assert second.messages[0] is first.messages[0], "the first line was parsed again"


def test_a_log_rewritten_in_place_is_read_again_from_the_start(tmp_path):
    path = tmp_path / "main.jsonl"
    writer, reader = HistoryStore(path), HistoryStore(path)
    writer.append("user", "旧")
    reader.recent(1)
    # Same inode, longer content that is not a continuation (e.g. restored from a backup with cp).
    other = tmp_path / "other.jsonl"
    donor = HistoryStore(other)
    for text in ("甲", "乙", "丙"):
        donor.append("user", text)
    path.write_bytes(other.read_bytes())
    assert [m["content"] for m in reader.recent(10)] == ["甲", "乙", "丙"]


def test_a_reminder_tick_is_stored_once(tmp_path):
    store = HistoryStore(tmp_path / "main.jsonl")
    first = store.append("assistant", "提醒", is_scheduled=True, scheduled_for="2026-01-01T09:00:00+08:00")
    again = store.append("assistant", "又一次", is_scheduled=True, scheduled_for="2026-01-01T09:00:00+08:00")
    assert again == first
    assert len(store.page(10)[0]) == 1


def test_an_archive_orphaned_by_a_crash_mid_rotation_is_not_shown_twice(tmp_path):
    path = tmp_path / "main.jsonl"
    store = HistoryStore(path, live_limit=20)
    for number in range(15):
        store.append("user", f"m{number}")
    # A writer killed after writing a rotation's archive but before replacing the live log leaves
    # an archive that overlaps the live messages.
    live = live_messages(path)
    (tmp_path / "main-archive").mkdir()
    orphan = tmp_path / "main-archive" / f"{live[0]['id']:09d}-{live[9]['id']:09d}.json"
    orphan.write_text(json.dumps({"messages": live[:10]}, ensure_ascii=False))
    for number in range(15, 40):
        store.append("user", f"m{number}")
    assert all_contents(path) == [f"m{n}" for n in range(40)]


def test_a_log_overwritten_while_running_is_copied_aside_on_the_next_write(tmp_path):
    path = tmp_path / "main.jsonl"
    store = HistoryStore(path)
    store.append("user", "之前")
    path.write_text("not json at all")  # e.g. an operator's bad edit
    store.append("user", "之后")
    assert [m["content"] for m in store.page(10)[0]] == ["之后"]
    assert [p.read_text() for p in tmp_path.glob("main.jsonl.corrupt-*")] == ["not json at all"]


def test_an_unreadable_log_is_reported_and_left_in_place(tmp_path, caplog):
    path = tmp_path / "main.jsonl"
    path.mkdir()  # reading it fails with an OS error, as a permission or I/O problem would
    store = HistoryStore(path)
    with caplog.at_level(logging.ERROR):
        store.recover()
    assert "cannot be read" in caplog.text
    assert path.is_dir() and not list(tmp_path.glob("*.corrupt-*"))
    try:
        store.append("user", "存不下")
    except StorageError as error:
        assert error.status == 503 and error.code == "storage_unavailable"
    else:
        raise AssertionError("append succeeded on an unreadable history")


def test_polling_after_an_id_that_was_rotated_away_still_gets_everything_newer(tmp_path):
    store = HistoryStore(tmp_path / "main.jsonl", live_limit=20)
    for number in range(60):
        store.append("user", f"m{number}")
    newer, has_more = store.newer(after=5, limit=100)
    assert [m["content"] for m in newer] == [f"m{n}" for n in range(5, 60)] and not has_more
    newer, has_more = store.newer(after=5, limit=10)
    assert [m["content"] for m in newer] == [f"m{n}" for n in range(5, 15)] and has_more


def test_polling_from_before_a_clear_sees_only_what_came_after_it(tmp_path):
    store = HistoryStore(tmp_path / "main.jsonl", live_limit=20)
    for number in range(50):
        store.append("user", f"old{number}")
    store.clear()
    store.append("user", "new")
    newer, has_more = store.newer(after=3, limit=10)
    assert [m["content"] for m in newer] == ["new"] and not has_more


# ---- durability: fsync of the temp file before the rename, of the folder after it ------------


def record_fsync_and_replace(monkeypatch) -> list[tuple[str, ...]]:
    """Record every os.fsync (as the path its descriptor names) and os.replace, in order, then do them."""
    calls: list[tuple[str, ...]] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(descriptor: int) -> None:
        calls.append(("fsync", os.readlink(f"/proc/self/fd/{descriptor}")))
        real_fsync(descriptor)

    def replace(source: Any, target: Any, **kwargs: Any) -> None:
        calls.append(("replace", os.fspath(source), os.fspath(target)))
        real_replace(source, target, **kwargs)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    return calls


def assert_replaced_durably(calls: list[tuple[str, ...]], folder: Path, name_pattern: str = "*") -> None:
    """Each replace of a file in `folder`: its temp file fsynced before, the folder fsynced after (before the next)."""
    folder = folder.resolve()
    replaces = [
        index
        for index, call in enumerate(calls)
        if call[0] == "replace" and Path(call[2]).parent.resolve() == folder and Path(call[2]).match(name_pattern)
    ]
    assert replaces, f"nothing named {name_pattern} was replaced in {folder}"
    for index in replaces:
        temp = calls[index][1]
        assert ("fsync", str(Path(temp).resolve())) in calls[:index], f"{temp} renamed before it was fsynced"
        following = [i for i, call in enumerate(calls) if call[0] == "replace" and i > index]
        until = following[0] if following else len(calls)
        assert ("fsync", str(folder)) in calls[index + 1 : until], f"{folder} not fsynced after the rename"


def test_an_append_is_fdatasynced_before_it_returns(tmp_path, monkeypatch):
    path = tmp_path / "main.jsonl"
    store = HistoryStore(path)
    store.append("user", "第一")
    synced: list[tuple[str, int]] = []
    real_fdatasync = os.fdatasync

    def fdatasync(descriptor: int) -> None:
        synced.append((os.readlink(f"/proc/self/fd/{descriptor}"), os.fstat(descriptor).st_size))
        real_fdatasync(descriptor)

    monkeypatch.setattr(os, "fdatasync", fdatasync)
    store.append("user", "落盘")
    assert synced == [(str(path.resolve()), path.stat().st_size)], "the appended line was not synced"


def test_a_rewritten_log_and_its_archives_are_fsynced_before_their_rename_and_their_folder_after(tmp_path, monkeypatch):
    store = HistoryStore(tmp_path / "main.jsonl", live_limit=20)
    calls = record_fsync_and_replace(monkeypatch)
    for number in range(25):
        store.append("user", f"m{number}")
    assert_replaced_durably(calls, tmp_path / "main-archive", "*.json")
    assert_replaced_durably(calls, tmp_path, "main.jsonl")


def test_the_reminder_state_file_is_fsynced_before_its_rename_and_its_folder_after(serve, upstream, monkeypatch):
    api = serve()  # in this process, so the recording sees the server's calls
    upstream.script({"content": "该喝水了"})
    calls = record_fsync_and_replace(monkeypatch)
    assert api.post("/api/schedule/run", json={}).status_code == 200
    assert_replaced_durably(calls, api.settings.data_dir, "scheduler_state.json")


def test_lines_that_parse_but_are_no_record_of_ours_are_damage_not_a_crash(tmp_path):
    path = tmp_path / "main.jsonl"
    store = HistoryStore(path)
    store.append("user", "好")
    with path.open("ab") as log:  # hand edits: a message without content, a header-like line with text ids
        log.write(b'{"id": 7, "role": "user"}\n{"version": 3, "next_id": "x", "floor_id": null, "meta": {}}\n')
    assert [m["content"] for m in HistoryStore(path).recent(10)] == ["好"]
    assert store.append("user", "再来")["id"] >= 2
    path.write_bytes(b'{"version": 3, "next_id": "many", "floor_id": 1, "meta": {}}\n')
    assert HistoryStore(path).recent(10) == [] and HistoryStore(path).append("user", "新")["id"] >= 1


def test_a_streamed_reply_is_stored_at_once_and_finished_in_place_by_one_line(tmp_path):
    path = tmp_path / "main.jsonl"
    store = HistoryStore(path)
    question = store.append("user", "问")
    bound: list[int] = []
    placeholder = store.append("assistant", "", on_id=bound.append, streaming=True, reply_to=question["id"])
    assert bound == [placeholder["id"]] and HistoryStore(path).recent(5)[-1]["streaming"] is True
    finished = store.finish(placeholder["id"], {"content": "答", "usage": {"total_tokens": 3}})
    assert finished == {
        **{k: v for k, v in placeholder.items() if k != "streaming"},
        "content": "答",
        "usage": {"total_tokens": 3},
    }
    assert HistoryStore(path).recent(5)[-1] == finished  # a fresh reader folds the finish line in
    assert store.finish(placeholder["id"], {"content": "again"}) == finished  # once only
    assert store.finish(999, {"content": "x"}) is None
    assert HistoryStore(path).message(placeholder["id"]) == finished and store.message(999) is None


def test_rotation_keeps_a_reply_being_written_in_the_live_log(tmp_path):
    path = tmp_path / "main.jsonl"
    store = HistoryStore(path, live_limit=10)
    store.append("user", "早")
    writing = store.append("assistant", "", streaming=True)
    for number in range(30):  # well past the limit while the reply is still being written
        store.append("user", f"第{number}条")
    assert store.recent(100)[0]["id"] <= writing["id"], "the reply being written was archived"
    finished = store.finish(writing["id"], {"content": "写完了"})
    assert finished["content"] == "写完了" and HistoryStore(path).message(writing["id"]) == finished
    store.append("user", "再来一条")  # now the rotation may archive it
    assert len(store.recent(100)) <= 10
    assert HistoryStore(path).message(writing["id"]) == finished
