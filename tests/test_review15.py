"""Review of issue 15 (resumable replies, Stop, interrupted): each test shows one problem found, against real
Gunicorn, the fake upstream and real files."""

from __future__ import annotations

import contextlib
import json
import os
import time
from http.client import HTTPConnection

import pytest
import requests

from tests.support.client import app_env
from tests.support.servers import Gunicorn
from tests.support.waiting import wait_until
from tests.test_resume import events_of, gunicorn, open_events


def streamed(server, message: str) -> tuple[int, str]:
    """POST a turn to the stream route and read it to its end; returns the reply's message id and the body."""
    body = requests.post(server.base_url + "/api/chat/stream", json={"message": message}, timeout=30).text
    start = json.loads(body.split("data: ")[1].split("\n")[0])
    return start["message_id"], body


def test_resuming_after_the_terminal_event_id_ends_instead_of_hanging(upstream, tmp_path):
    """A client that asks for the events after the last one (its Last-Event-ID is the terminal's, or larger) must
    get an answer that ends; the follower used to poll forever, holding a Gunicorn thread per such request."""
    upstream.script({"pieces": ["一", "二"], "content": "一二"})
    with gunicorn(upstream, tmp_path) as server:
        message_id, body = streamed(server, "数")
        last = body.count("data: ")  # the terminal event's id
        url = f"{server.base_url}/api/chat/stream/{message_id}"
        for after in (last, last + 50):
            started = time.monotonic()
            answer = requests.get(url, params={"after": after}, timeout=(5, 8))
            assert answer.status_code == 200 and time.monotonic() - started < 8
            assert answer.text.count("data: ") <= 1


@pytest.mark.parametrize("header", ["\u00b2", "1\u00b9"])
def test_a_last_event_id_of_superscript_digits_is_not_a_500(upstream, tmp_path, header):
    """str.isdigit() accepts '²' (latin-1, so it reaches the app through WSGI) but int() refuses it."""
    upstream.script({"pieces": ["一"], "content": "一"})
    with gunicorn(upstream, tmp_path) as server:
        message_id, _ = streamed(server, "数")
        answer = requests.get(
            f"{server.base_url}/api/chat/stream/{message_id}", headers={"Last-Event-ID": header}, timeout=30
        )
        assert answer.status_code in (200, 400), answer.text
        assert "Traceback" not in server.log_text()


BUSY = {"kind": "status", "status": 503, "headers": {"Retry-After": "8"}, "body": {"error": {"message": "busy"}}}


@pytest.mark.parametrize(
    "next_request",
    [pytest.param([{"delay": 8, "content": "好的"}], id="slow-headers"), pytest.param([BUSY, {}], id="in-backoff")],
)
def test_stop_during_a_tool_round_whose_next_request_is_slow_to_answer_stops_within_a_second(
    upstream, tmp_path, next_request
):
    """After a reminder tool call the relay asks the model again; while that request waited for its headers (or
    for a retry after a 503) there was no stream to abort, so Stop answered only after STOP_WAIT_SECONDS with the
    reply still `streaming`, and the request ran on."""
    call = {"tool_calls": [{"name": "create_reminder", "arguments": {"text": "喝水", "cron": "0 9 * * *"}}]}
    upstream.script(call, *next_request)
    with (
        gunicorn(upstream, tmp_path, READ_TIMEOUT="30", RETRY_MAX_SECONDS="30") as server,
        contextlib.closing(HTTPConnection("127.0.0.1", server.port, timeout=30)) as connection,
    ):
        response = open_events(connection, "POST", "/api/chat/stream", {"message": "每天九点提醒我喝水"})
        events = events_of(response)
        start = next(events)
        assert next(events)["type"] == "reminder"  # the tool ran; the second request is waiting now
        time.sleep(0.5)
        asked = time.monotonic()
        stop = requests.post(f"{server.base_url}/api/chat/stream/{start['message_id']}/stop", json={}, timeout=30)
        answered = time.monotonic() - asked
        assert stop.status_code == 200
        stored = stop.json()["message"]
        assert answered < 1.0 and stored.get("stopped") is True and "streaming" not in stored, (answered, stored)
        if next_request[0] is BUSY:
            time.sleep(8)  # when the retry would have gone
            assert len(upstream.requests) == 2, "a stopped turn was retried"
        else:
            assert upstream.closed_at is not None and upstream.closed_at - asked < 1.0, "the request is still open"
        assert "Traceback" not in server.log_text()


def test_a_reminder_left_streaming_by_a_crash_a_day_ago_keeps_its_text_after_the_restart(make_settings, upstream):
    """A server down for more than KEEP_SECONDS after a crash mid-reply: at start-up its journal was removed unread,
    and the reply was then settled from nothing: a reminder's own text (and a reply's text so far) lost."""
    from app import create_app

    settings = make_settings()
    service = create_app(settings).extensions["chat"]
    store = service.conversations.main
    journal, placeholder = service._begin_reply(store, "main", "喝水", generated=True, is_scheduled=True)
    journal.write({"type": "delta", "content": "记得"})
    journal.end()  # as a process killed mid-reply leaves it: unlocked, no end
    day_old = time.time() - 2 * 24 * 3600
    os.utime(settings.data_dir / "replies" / f"main-{placeholder['id']}.jsonl", (day_old, day_old))

    restarted = create_app(settings).extensions["chat"]  # the server comes back two days later

    [shown] = [m for m in restarted.history(None)[0] if m["id"] == placeholder["id"]]
    assert shown["content"] == "喝水" and shown["generated"] is False and "streaming" not in shown


def test_a_reminder_whose_journal_cannot_be_written_still_ends_with_its_own_text(upstream, tmp_path):
    """A full disk while a reminder is worded (here: the workers' file size limit, EFBIG, as ENOSPC would): the
    OSError from the journal left `_word` before the message was finished and the journal released, so the
    reminder stayed `streaming` (locked by a live process: never settled) and its text never arrived."""
    words = ["记得喝水，别忘了。"] * 1500  # a journal of ~100 KB
    upstream.script({"pieces": words, "content": "".join(words)})
    limited = tmp_path / "limited.conf.py"
    limited.write_text(
        'exec(open("gunicorn.conf.py").read())\n'
        "import resource\n\n\n"
        "def post_fork(server, worker):\n"
        "    resource.setrlimit(resource.RLIMIT_FSIZE, (48_000, 48_000))\n"
    )
    environment = app_env(upstream, tmp_path / "data", DOTENV_PATH=str(tmp_path / "no.env"))
    with Gunicorn(environment, ["-c", str(limited)], tmp_path / "gunicorn.log") as server:
        made = requests.post(server.base_url + "/api/reminders", json={"text": "喝水", "cron": "0 9 * * *"}, timeout=30)
        requests.post(f"{server.base_url}/api/reminders/{made.json()['reminder']['id']}/run", json={}, timeout=60)

        def ended() -> dict | None:
            messages = requests.get(server.base_url + "/api/history", timeout=30).json()["messages"]
            return next((m for m in messages if m.get("is_scheduled") and not m.get("streaming")), None)

        stored = wait_until(ended, 15, message="the reminder's message ended")
    assert stored["content"] == "喝水" and stored["generated"] is False


def test_a_server_that_runs_for_days_removes_its_day_old_journals(api, upstream):
    """KEEP_SECONDS says a journal outlives its reply a day, but sweep() runs only in create_app: a server up for
    months keeps every reply's journal (each a line per streamed piece) and every Stop mark. Proposed: sweep at a
    reply's start when the folder's `.swept` mark is over an hour old (one worker a time, any worker)."""
    upstream.script({"pieces": ["一", "二"], "content": "一二"}, {"pieces": ["三"], "content": "三"})
    first = api.post("/api/chat/stream", json={"message": "数"}).text
    message_id = json.loads(first.split("data: ")[1].split("\n")[0])["message_id"]
    replies = api.settings.data_dir / "replies"
    two_days_ago = time.time() - 2 * 24 * 3600
    for path in replies.iterdir():  # the journal, and any mark the server keeps there, as if two days had passed
        os.utime(path, (two_days_ago, two_days_ago))
    assert (replies / f"main-{message_id}.jsonl").exists()

    api.post("/api/chat/stream", json={"message": "再数"})

    wait_until(lambda: not (replies / f"main-{message_id}.jsonl").exists(), 10, message="the old journal removed")


def test_a_writer_that_died_after_storing_its_reply_but_before_its_last_event_ends_done(make_settings, upstream):
    """The final message was stored, then the process died before the journal's terminal event: settling found
    the message finished (store.finish leaves it as it is) yet still told followers `error: interrupted`."""
    from app import create_app
    from upstream_client import Completion

    service = create_app(make_settings()).extensions["chat"]
    store = service.conversations.main
    journal, placeholder = service._begin_reply(store, "main", None)
    journal.write({"type": "delta", "content": "完整的回答"})
    service._finish_reply(store, placeholder, Completion(content="完整的回答", model="m"))
    journal.end()  # killed here: unlocked, no terminal event

    *_, last = service.follow_reply("main", placeholder["id"])
    assert last["type"] == "done" and last["message"]["content"] == "完整的回答", last
    assert "interrupted" not in last["message"] and "streaming" not in last["message"]


def test_a_journal_whose_first_line_cannot_be_written_leaves_no_descriptor_and_no_file(tmp_path):
    """A full disk (here EFBIG from a file size limit of 0) while a journal was made leaked its descriptor and left
    its temporary file behind, once per reply tried."""
    import resource
    import signal

    from replies import Replies

    replies = Replies(tmp_path / "replies")
    replies.folder.mkdir()
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (0, hard))
    try:
        for _ in range(3):
            with pytest.raises(OSError):
                replies.open("main", "喝水")
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous)
    held = [path for fd in os.listdir("/proc/self/fd") if str(replies.folder) in (path := _target(fd))]
    assert held == [] and list(replies.folder.iterdir()) == []


def _target(fd: str) -> str:
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError:  # closed meanwhile (another thread's)
        return ""
