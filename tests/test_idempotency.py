"""A message sent again with its idempotency key (a connection that dropped before the reply began) is stored once
and answered by the turn already under way: real Gunicorn with two workers, the fake upstream, real HTTP."""

from __future__ import annotations

import json
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from tests.support.servers import one_connection_per_worker, worker_holding
from tests.test_resume import events_of, gunicorn, history, open_events, text_of

KEY = "k-3f9a1c2b7d5e4f60"
PIECES = [f"第{i}句。" for i in range(20)]


def sent(server, body: dict, path: str = "/api/chat/stream") -> requests.Response:
    return requests.post(server.base_url + path, json=body, timeout=60)


def questions(server, text: str) -> list[dict]:
    return [m for m in history(server) if m["role"] == "user" and m["content"] == text]


def test_a_post_dropped_before_the_reply_began_sent_again_on_the_other_worker_follows_that_turn(upstream, tmp_path):
    """The page's case: the connection breaks while the model has not answered yet, so the page knows neither
    whether the message arrived nor any id to resume with; it sends the message again with the same key."""
    upstream.script({"delay": 1.5, "pieces": PIECES, "chunk_delay": 0.03})
    body = {"message": "讲个故事", "idempotency_key": KEY}
    with gunicorn(upstream, tmp_path, READ_TIMEOUT="30") as server, one_connection_per_worker(server) as (one, other):
        one.request("POST", "/api/chat/stream", body=json.dumps(body), headers={"Content-Type": "application/json"})
        time.sleep(0.5)  # the question is stored, the model has not answered: no event has come
        dropped_on = worker_holding(one, server)
        one.close()

        again = open_events(other, "POST", "/api/chat/stream", body)
        assert worker_holding(other, server) not in (None, dropped_on)
        events = list(events_of(again))
        stored = history(server)
    start, *_, done = events
    assert [e["id"] for e in events] == list(range(1, len(events) + 1)), "from the first event, none missing"
    assert start["type"] == "start" and start["user_message"]["idempotency_key"] == KEY
    assert done["type"] == "done" and done["message"]["content"] == text_of(events) == "".join(PIECES)
    assert [m["role"] for m in stored] == ["user", "assistant"] and stored[1]["content"] == "".join(PIECES)
    assert len(upstream.requests) == 1, "the model was asked once"


def test_the_same_message_sent_twice_at_once_on_two_workers_is_one_turn(upstream, tmp_path):
    upstream.script({"delay": 0.5, "pieces": PIECES[:5], "chunk_delay": 0.02})
    body = {"message": "同时发两次", "idempotency_key": KEY}
    with gunicorn(upstream, tmp_path, READ_TIMEOUT="30") as server, one_connection_per_worker(server) as pinned:
        ready = threading.Barrier(2)

        def send_on(connection):
            ready.wait()
            return list(events_of(open_events(connection, "POST", "/api/chat/stream", body)))

        with ThreadPoolExecutor(2) as pool:
            first, second = pool.map(send_on, pinned)
        stored = history(server)
    assert first[-1]["type"] == second[-1]["type"] == "done"
    assert first[0]["message_id"] == second[0]["message_id"] and text_of(first) == text_of(second)
    assert len(stored) == 2 and len(upstream.requests) == 1


@pytest.mark.parametrize("path", ["/api/chat", "/api/chat/stream"])
def test_a_message_answered_already_is_answered_the_same_again_without_asking_the_model(upstream, tmp_path, path):
    body = {"message": "你好", "idempotency_key": KEY}
    with gunicorn(upstream, tmp_path) as server:
        first, again = sent(server, body, path), sent(server, body, path)
        other = sent(server, {**body, "idempotency_key": "another-key-1"}, path)
        stored = history(server)
    assert first.status_code == again.status_code == other.status_code == 200
    assert first.text == again.text != other.text
    assert [m["role"] for m in stored] == ["user", "assistant"] * 2 and len(upstream.requests) == 2


@pytest.mark.parametrize("path", ["/api/chat", "/api/chat/stream"])
def test_a_failed_turn_sent_again_with_its_key_asks_again_with_the_question_stored_once(upstream, tmp_path, path):
    upstream.script({"kind": "status", "status": 401, "body": {"error": {"message": "Invalid API key"}}})
    body = {"message": "再试一次", "idempotency_key": KEY}
    with gunicorn(upstream, tmp_path) as server:
        failed = sent(server, body, path)
        answered = sent(server, body, path)
        stored = history(server)
    assert failed.status_code == 502 and answered.status_code == 200
    assert len([m for m in stored if m["role"] == "user"]) == 1 and len(upstream.requests) == 2
    assert stored[-1]["reply_to"] == stored[0]["id"] and stored[-1]["content"] and "error_code" not in stored[-1]


def test_a_key_sent_with_other_text_or_malformed_is_refused_clearly(upstream, tmp_path):
    with gunicorn(upstream, tmp_path) as server:
        assert sent(server, {"message": "一", "idempotency_key": KEY}, "/api/chat").status_code == 200
        for path in ("/api/chat", "/api/chat/stream"):
            reused = sent(server, {"message": "二", "idempotency_key": KEY}, path)
            assert reused.status_code == 409 and reused.json()["code"] == "idempotency_key_reused", reused.text
            for bad in ("short", "有中文的键有中文的键", "a" * 65, 12345678, ""):
                refused = sent(server, {"message": "三", "idempotency_key": bad}, path)
                assert refused.status_code == 400 and refused.json()["code"] == "invalid_idempotency_key", bad
        assert len(history(server)) == 2 and "Traceback" not in server.log_text()


def test_a_question_whose_sender_died_before_any_reply_is_asked_again_at_once(make_settings, upstream):
    """kill -9 while the model had not answered leaves the question with no reply; the dead sender's hold on the
    key went with it, so a resend asks at once instead of waiting for a reply that never comes."""
    from app import create_app

    service = create_app(make_settings()).extensions["chat"]
    store = service.conversations.main
    store.append("user", "还在吗", idempotency_key=KEY)  # what the dead turn left
    asked = time.monotonic()
    reply = service.reply("还在吗", key=KEY)
    assert time.monotonic() - asked < 1.5
    assert [m["role"] for m in store.recent(10)] == ["user", "assistant"] and reply["reply_to"] == 1
    assert len(upstream.requests) == 1


def answered_a_day_ago(make_settings):
    """A service that answered a keyed message, and that key's lock file, made two days old."""
    from app import create_app

    service = create_app(make_settings()).extensions["chat"]
    service.reply("你好", key=KEY)
    [lock] = service.replies.folder.glob("*.lock")
    day_old = time.time() - 2 * 24 * 3600
    os.utime(lock, (day_old, day_old))
    return service, lock


def test_a_keys_lock_file_is_swept_after_a_day(make_settings, upstream):
    service, lock = answered_a_day_ago(make_settings)
    service.settle_orphans()
    assert not lock.exists()


def test_retry_of_with_a_key_never_seen_retries_that_question_as_before(upstream, tmp_path):
    upstream.script({"kind": "status", "status": 401, "body": {"error": {"message": "Invalid API key"}}})
    with gunicorn(upstream, tmp_path) as server:
        failed = sent(server, {"message": "重试", "idempotency_key": KEY}, "/api/chat")
        question = failed.json()["user_message"]
        retried = sent(server, {"message": "重试", "retry_of": question["id"], "idempotency_key": "fresh-key-2"})
        stored = history(server)
    assert failed.status_code == 502 and retried.status_code == 200
    assert [m["id"] for m in stored if m["role"] == "user"] == [question["id"]]
    assert stored[-1]["reply_to"] == question["id"] and stored[-1]["content"]


def test_a_retry_with_a_new_key_sent_again_after_a_drop_before_start_is_asked_once(upstream, tmp_path):
    """Retry of a question stored without a key (an older page, an API client): the page makes up a key, and a
    connection lost before `start` sends the same retry again with it, as for any message."""
    upstream.script(
        {"kind": "status", "status": 401, "body": {"error": {"message": "Invalid API key"}}},
        {"delay": 1.5, "pieces": PIECES[:5], "chunk_delay": 0.02},
    )
    with gunicorn(upstream, tmp_path, READ_TIMEOUT="30") as server, one_connection_per_worker(server) as (one, other):
        failed = sent(server, {"message": "重试一下"}, "/api/chat")
        question = failed.json()["user_message"]
        body = {"message": "重试一下", "retry_of": question["id"], "idempotency_key": "fresh-key-3"}
        one.request("POST", "/api/chat/stream", body=json.dumps(body), headers={"Content-Type": "application/json"})
        time.sleep(0.5)  # the model has not answered: no event has come, the page sends the retry again
        one.close()
        events = list(events_of(open_events(other, "POST", "/api/chat/stream", body)))
        time.sleep(0.5)
        stored = history(server)
    assert failed.status_code == 502 and events[-1]["type"] == "done"
    assert [m["id"] for m in stored if m["role"] == "user"] == [question["id"]], "the question is stored once"
    assert len(upstream.requests) == 2, "the model was asked once for the retry"


def test_the_sweep_leaves_a_keys_lock_file_alone_while_it_is_held(make_settings, upstream):
    """Retry the day after: the key's lock file from the first sending is still there, a day old, when the hourly
    sweep runs while the retry holds it."""
    from conversations import MAIN

    service, _ = answered_a_day_ago(make_settings)
    held_by_second = threading.Event()

    def second_sender():
        with service.replies.sending(MAIN, KEY):
            held_by_second.set()

    with service.replies.sending(MAIN, KEY):
        service.settle_orphans()
        second = threading.Thread(target=second_sender, daemon=True)
        second.start()
        took_it = held_by_second.wait(1.0)
    second.join(5)
    assert not took_it, "a second sender held the key while the first still did"


def test_a_sender_that_waited_on_a_lock_file_swept_meanwhile_takes_the_new_one(tmp_path):
    """A sender opens the key's lock file and waits; the file is swept (unlinked) before it gets the lock. Holding
    the unlinked file would let a later sender create and lock a new one: two senders at once."""
    from replies import Replies

    replies = Replies(tmp_path / "replies")
    path = replies.folder / f".main-{KEY}.lock"
    b_holds, c_holds = threading.Event(), threading.Event()

    def sender(holds: threading.Event, until: threading.Event) -> None:
        with replies.sending("main", KEY):
            holds.set()
            until.wait(5)

    release_b = threading.Event()
    with replies.sending("main", KEY):
        b = threading.Thread(target=sender, args=(b_holds, release_b))
        b.start()
        time.sleep(0.3)  # b has opened the file and waits for its lock
        path.unlink()  # the sweep removes it
    assert b_holds.wait(5)
    c = threading.Thread(target=sender, args=(c_holds, threading.Event()))
    c.start()
    c_took_it = c_holds.wait(1.0)
    release_b.set()
    b.join(5)
    c.join(10)
    assert not c_took_it, "a later sender held the key while the waiting one did"


@pytest.mark.parametrize("path", ["/api/chat", "/api/chat/stream"])
def test_a_keys_lock_that_cannot_be_made_is_a_clear_503_not_a_500(upstream, tmp_path, path):
    with gunicorn(upstream, tmp_path) as server:
        (tmp_path / "data" / "replies" / f".main-{KEY}.lock").mkdir(parents=True)  # where the lock file must go
        refused = sent(server, {"message": "你好", "idempotency_key": KEY}, path)
        assert refused.status_code == 503 and refused.json()["code"] == "storage_unavailable", refused.text
        assert "Traceback" not in server.log_text()
