"""Replies that belong to the server, seen from the page: real Chromium, real Gunicorn (two workers), the fake
upstream streaming slowly. A reload mid-reply, a dropped connection, Stop during a stall, a reminder being
worded, and the death of the worker writing a reply."""

from __future__ import annotations

import json
import os
import re
import signal
import threading
import time
from collections.abc import Callable, Iterator
from http.client import HTTPConnection
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.support.browser import screenshot
from tests.support.client import app_env
from tests.support.servers import Gunicorn, GunicornUser, worker_holding
from tests.support.waiting import wait_until

pytestmark = pytest.mark.browser

REPLY = "article.message.assistant"
PIECES = [f"第{i}段。" for i in range(40)]
WHOLE = "".join(PIECES)
FOLLOW = re.compile(r"/api/chat/stream/\d+\?")
LOCALES = {"zh-CN": "zh", "en-US": "en"}
# The page's words for the states drawn here (static/js/i18n.js).
RECONNECTING = {"zh-CN": "正在重新连接", "en-US": "reconnecting"}
INTERRUPTED = {"zh-CN": "服务进程意外退出", "en-US": "process writing this reply died"}
RETRY = {"zh-CN": "重试", "en-US": "Retry"}


class Server(GunicornUser):
    """The app under Gunicorn as in production (two gthread workers), and a user of its API beside the page."""

    def history(self) -> list[dict]:
        return self.call("GET", "/api/history", params={"limit": 500})["messages"]

    def replies(self) -> list[dict]:
        return [m for m in self.history() if m["role"] == "assistant"]

    def finished_reply(self, timeout: float = 60) -> dict:
        """The newest reply once the server stored it complete (no longer a placeholder)."""
        return wait_until(
            lambda: next((m for m in self.replies()[-1:] if not m.get("streaming")), None),
            timeout,
            message="reply stored",
        )


@pytest.fixture
def server(upstream, tmp_path: Path) -> Iterator[Server]:
    # READ_TIMEOUT above the 30 s stall: only Stop may end that upstream request.
    env = app_env(upstream, tmp_path / "data", READ_TIMEOUT="60")
    gunicorn = Gunicorn(env, [], tmp_path / "gunicorn.log")
    gunicorn.args = ["-w", "2", "-k", "gthread", "--threads", "8", "-b", f"127.0.0.1:{gunicorn.port}"]
    with gunicorn:
        app = Server(gunicorn)
        yield app
        app.session.close()


def send(page: Page, text: str) -> None:
    page.fill("#input", text)
    page.press("#input", "Enter")


def bubble_text(page: Page) -> str:
    return page.locator(REPLY).last.locator(".bubble").inner_text()


def wait_finished(page: Page, stored: dict) -> None:
    """The page shows `stored` as the last reply, complete: its id, its text, Send back in the composer."""
    reply = page.locator(f'{REPLY}[data-id="{stored["id"]}"]')
    expect(reply).not_to_have_class("streaming", timeout=60_000)
    expect(reply.locator(".bubble")).to_have_text(stored["content"], timeout=60_000)
    expect(page.locator("#send")).to_be_visible(timeout=60_000)


def follow_requests(page: Page) -> list[str]:
    """The URLs of the page's requests following a reply (GET /api/chat/stream/<id>), from now on."""
    seen: list[str] = []
    page.on("request", lambda request: seen.append(request.url) if FOLLOW.search(request.url) else None)
    return seen


def growing_texts(page: Page) -> None:
    """Record every text the last reply's bubble shows, in the page, from now on (window.__texts)."""
    page.evaluate(
        """() => {
          window.__texts = [];
          const note = () => {
            const bubble = [...document.querySelectorAll('article.message.assistant')].at(-1)?.querySelector('.bubble');
            const text = (bubble?.textContent ?? '').trim();
            if (window.__texts.at(-1) !== text) window.__texts.push(text);
          };
          new MutationObserver(note).observe(document.getElementById('message-list'),
            { subtree: true, childList: true, characterData: true });
        }"""
    )


def assert_no_gap_no_repeat(texts: list[str], whole: str) -> None:
    """Each text the reply showed is a beginning of the whole reply: nothing skipped, nothing said twice."""
    for text in texts:
        assert whole.startswith(text), f"shown {text!r}, not a beginning of the reply"


# ---- (a) a reload mid-reply ---------------------------------------------------------------------------------


def test_a_reload_mid_reply_shows_the_text_so_far_within_1s_and_ends_with_the_complete_reply(
    server, upstream, open_page
):
    upstream.script({"pieces": PIECES, "chunk_delay": 0.15})
    page = open_page(server.base_url, "?poll=1000")
    send(page, "讲个长故事")
    expect(page.locator(REPLY).last.locator(".bubble")).to_contain_text("第5段", timeout=15_000)

    follows = follow_requests(page)
    page.reload()  # returns after the load event
    shown_at = page.wait_for_function(
        """() => {
          const bubble = [...document.querySelectorAll('article.message.assistant')].at(-1)?.querySelector('.bubble');
          return bubble && bubble.textContent.includes('第5段') ? performance.now() : false;
        }""",
        polling="raf",
        timeout=15_000,
    ).json_value()
    loaded_at = page.evaluate("performance.getEntriesByType('navigation')[0].loadEventStart")
    so_far = bubble_text(page)
    resume_ms = shown_at - loaded_at
    print(f"\nreload → text so far visible: {resume_ms:.0f} ms after the load event ({len(so_far)} characters)")
    assert resume_ms <= 1000, f"the text so far took {resume_ms:.0f} ms after the load event"
    assert "第39段" not in so_far, "the reply was already complete: the reload was not mid-reply"
    expect(page.locator("#stop")).to_be_visible()  # the user's turn, still being written
    growing_texts(page)

    stored = server.finished_reply()
    assert stored["content"] == WHOLE
    wait_finished(page, stored)
    assert_no_gap_no_repeat(page.evaluate("window.__texts"), WHOLE)
    expect(page.locator(REPLY)).to_have_count(1)
    expect(page.locator("article.message.user")).to_have_count(1)
    page.wait_for_timeout(1500)  # a poll or two later: still one copy
    expect(page.locator(REPLY)).to_have_count(1)
    assert len(follows) == 1 and "after=0" in follows[0], follows  # one follower, from the first event


# ---- (b) a dropped connection ------------------------------------------------------------------------------


@pytest.mark.parametrize("locale", list(LOCALES))
def test_a_dropped_connection_reconnects_by_itself_with_no_gap_and_no_repeat(server, upstream, open_page, locale):
    upstream.script({"pieces": PIECES, "chunk_delay": 0.12})
    page = open_page(server.base_url, "?poll=1000", locale=locale)
    send(page, "讲个长故事")
    expect(page.locator(REPLY).last.locator(".bubble")).to_contain_text("第3段", timeout=15_000)
    growing_texts(page)

    page.context.set_offline(True)
    note = page.locator(f"{REPLY} .reconnecting-note")
    expect(note).to_contain_text(RECONNECTING[locale])
    screenshot(page, f"resume-reconnecting-{LOCALES[locale]}")
    page.wait_for_timeout(2000)
    assert "第39段" not in bubble_text(page), "text arrived while offline"
    page.context.set_offline(False)

    stored = server.finished_reply()
    assert stored["content"] == WHOLE, "the server went on writing while the page was away"
    wait_finished(page, stored)
    expect(note).to_have_count(0)
    texts = page.evaluate("window.__texts")
    assert_no_gap_no_repeat(texts, WHOLE)
    assert bubble_text(page) == WHOLE


def break_the_first_send(page: Page, server: Server) -> list[dict]:
    """The page's next POST /api/chat/stream reaches the server, but its answer never comes back (a phone changing
    networks while the model thinks); later ones go through. Returns the bodies the page posted."""
    posts: list[dict] = []

    def arrives_but_breaks(body: bytes) -> None:
        connection = HTTPConnection("127.0.0.1", server.gunicorn.port, timeout=30)
        connection.request("POST", "/api/chat/stream", body=body, headers={"Content-Type": "application/json"})
        time.sleep(0.3)
        connection.close()

    def first_breaks(route) -> None:
        posts.append(json.loads(route.request.post_data))
        if len(posts) == 1:
            threading.Thread(target=arrives_but_breaks, args=(route.request.post_data_buffer,)).start()
            route.abort("connectionreset")
        else:
            route.continue_()

    page.route("**/api/chat/stream", first_breaks)
    return posts


def test_a_send_whose_connection_breaks_before_any_answer_is_sent_again_and_answered_once(server, upstream, open_page):
    """The page cannot know whether the message arrived, so it sends it again with the same idempotency key,
    and the server answers with the turn it already began: one question, one reply, one call to the model."""
    upstream.script({"delay": 1.0, "pieces": PIECES[:10], "chunk_delay": 0.05})
    page = open_page(server.base_url, "?poll=1000")
    posts = break_the_first_send(page, server)
    send(page, "想好了再说")
    stored = server.finished_reply()
    wait_finished(page, stored)
    page.wait_for_timeout(1500)  # a poll or two later: still one copy of each
    expect(page.locator("article.message.user")).to_have_count(1)
    expect(page.locator(REPLY)).to_have_count(1)
    assert stored["content"] == "".join(PIECES[:10]) and bubble_text(page) == stored["content"]
    assert len(posts) == 2 and posts[0]["idempotency_key"] == posts[1]["idempotency_key"], posts
    assert [m["role"] for m in server.history()] == ["user", "assistant"] and len(upstream.requests) == 1


def test_a_retry_whose_connection_breaks_too_is_answered_once(server, upstream, open_page):
    """Retry sends the key the question was first sent with: sent again after its own connection broke, it joins
    the retry under way instead of storing the question a second time."""
    upstream.script(
        {"kind": "status", "status": 401, "body": {"error": {"message": "Invalid API key"}}},
        {"delay": 1.0, "pieces": PIECES[:10], "chunk_delay": 0.05},
    )
    page = open_page(server.base_url, "?poll=1000")
    send(page, "第一次失败")
    retry = page.locator(f"{REPLY} .turn-error").get_by_role("button", name=RETRY["zh-CN"])
    expect(retry).to_be_visible(timeout=15_000)
    first_key = json.loads(page.evaluate("JSON.stringify(document.querySelector('article.message.user').message)"))[
        "idempotency_key"
    ]
    posts = break_the_first_send(page, server)
    retry.click()
    stored = server.finished_reply()
    wait_finished(page, stored)
    page.wait_for_timeout(1500)
    expect(page.locator("article.message.user")).to_have_count(1)
    assert [p["idempotency_key"] for p in posts] == [first_key, first_key], posts
    questions = [m for m in server.history() if m["role"] == "user"]
    assert len(questions) == 1 and stored["reply_to"] == questions[0]["id"] and len(upstream.requests) == 2


def poll_answered_before_the_turn(page: Page, press: Callable[[], None]) -> None:
    """Hold the page's next poll, `press` (Send or Retry), hold its POST, and let the server store the whole turn;
    then answer the poll first, holding the turn's messages, and only then the POST: a poll sent just before the
    turn and answered after the server stored it, but before the page read `start`."""
    polls, posts = [], []

    def hold_one_poll(route) -> None:
        if not polls and "after=" in route.request.url:
            polls.append(route)  # answered below
        else:
            route.continue_()

    page.route("**/api/history?*", hold_one_poll)
    page.route("**/api/chat/stream", lambda route: posts.append(route))  # answered below
    while not polls:
        page.wait_for_timeout(50)
    press()
    while not posts:
        page.wait_for_timeout(50)
    answer = posts[0].fetch()  # the whole turn, stored on the server; the page has seen none of it yet
    polls[0].fulfill(response=polls[0].fetch())
    page.wait_for_timeout(300)
    posts[0].fulfill(response=answer)


def test_a_poll_in_flight_when_send_is_pressed_leaves_the_turn_to_draw_itself(server, upstream, open_page):
    """Such a poll brought the question and the reply as new: they were drawn twice. The page knows its question
    by the idempotency key it sent."""
    upstream.script({"pieces": PIECES[:10], "chunk_delay": 0.02})
    page = open_page(server.base_url, "?poll=300")
    poll_answered_before_the_turn(page, lambda: send(page, "轮询途中发送"))

    stored = server.finished_reply()
    wait_finished(page, stored)
    page.wait_for_timeout(1000)
    expect(page.locator("article.message.user")).to_have_count(1)
    expect(page.locator(REPLY)).to_have_count(1)
    assert bubble_text(page) == stored["content"] == "".join(PIECES[:10])


def test_a_poll_in_flight_when_retry_is_pressed_leaves_the_retry_to_draw_itself(server, upstream, open_page):
    """A retry's question is old, so no poll brings it: the page knows the retry's reply by the question it
    answers."""
    upstream.script(
        {"kind": "status", "status": 401, "body": {"error": {"message": "Invalid API key"}}},
        {"pieces": PIECES[:10], "chunk_delay": 0.02},
    )
    page = open_page(server.base_url, "?poll=300")
    send(page, "重试时轮询")
    retry = page.locator(f"{REPLY} .turn-error").get_by_role("button", name=RETRY["zh-CN"])
    expect(retry).to_be_visible(timeout=15_000)
    page.wait_for_timeout(1000)  # polls have brought the failure record
    poll_answered_before_the_turn(page, retry.click)

    stored = server.finished_reply()
    expect(page.locator(f'{REPLY}[data-id="{stored["id"]}"]').last).not_to_have_class("streaming", timeout=60_000)
    page.wait_for_timeout(1000)
    expect(page.locator("article.message.user")).to_have_count(1)
    assert page.locator(f'{REPLY}[data-id="{stored["id"]}"]').count() == 1, "the retry's reply is drawn once"
    assert page.locator(f"{REPLY}:not([data-id])").count() == 0, "no second, unnumbered copy of it"


def test_retry_of_a_reply_followed_after_a_reload_sends_the_key_the_question_was_stored_with(
    server, upstream, open_page
):
    upstream.script({"pieces": PIECES[:20], "chunk_delay": 0.15, "ending": "bad_chunk"}, {"pieces": PIECES[:5]})
    page = open_page(server.base_url, "?poll=1000")
    send(page, "重新加载后失败")
    expect(page.locator(REPLY).last.locator(".bubble")).to_contain_text("第3段", timeout=15_000)
    page.reload()  # the reply is followed from here on, and fails
    retry = page.locator(f"{REPLY} .turn-error").get_by_role("button", name=RETRY["zh-CN"])
    expect(retry).to_be_visible(timeout=15_000)
    posts: list[dict] = []

    def record(route) -> None:
        posts.append(json.loads(route.request.post_data))
        route.continue_()

    page.route("**/api/chat/stream", record)
    retry.click()
    server.finished_reply()
    [question] = [m for m in server.history() if m["role"] == "user"]
    assert posts and posts[0].get("retry_of") == question["id"], posts
    assert posts[0]["idempotency_key"] == question["idempotency_key"], "Retry passes the key the question came with"


# ---- (c) Stop during a stall ---------------------------------------------------------------------------------


def click_stop_and_time_it(page: Page) -> float:
    """Press Stop; seconds until the reply shows as stopped (timed in the page)."""
    return page.evaluate(
        """() => new Promise(resolve => {
          const began = performance.now();
          const reply = () => [...document.querySelectorAll('article.message.assistant')].at(-1);
          const check = () => (reply().classList.contains('stopped')
            ? resolve((performance.now() - began) / 1000) : requestAnimationFrame(check));
          document.getElementById('stop').click();
          check();
        })"""
    )


@pytest.mark.parametrize("reload", [False, True], ids=["sent-here", "after-reload"])
def test_stop_during_a_30s_upstream_stall_shows_the_stopped_reply_within_1s(server, upstream, open_page, reload):
    upstream.script({"pieces": PIECES[:10], "chunk_delay": 0.05, "stall_at": 4, "stall": 30})
    page = open_page(server.base_url, "?poll=1000")
    send(page, "讲个长故事")
    expect(page.locator(REPLY).last.locator(".bubble")).to_contain_text("第2段", timeout=15_000)
    if reload:  # Stop works on a reply this page joined, not only on one it sent
        page.reload()
        expect(page.locator(REPLY).last.locator(".bubble")).to_contain_text("第2段", timeout=5_000)
    page.wait_for_timeout(500)  # well inside the stall
    expect(page.locator("#stop")).to_be_visible()

    seconds = click_stop_and_time_it(page)
    print(f"\nStop during the stall → stopped reply shown after {seconds * 1000:.0f} ms")
    assert seconds <= 1.0
    reply = page.locator(REPLY).last
    expect(reply.locator(".flag")).to_have_text("已停止")
    expect(page.locator("#send")).to_be_visible()
    stored = server.replies()[-1]
    assert stored["stopped"] is True and stored["content"] == "第0段。第1段。第2段。"
    expect(reply).to_have_attribute("data-id", str(stored["id"]))
    expect(reply.locator(".bubble")).to_have_text(stored["content"])  # the server's record, not the page's guess
    assert upstream.closed_streams.wait(5), "the upstream request was not ended"


# ---- (d) a reminder being worded -----------------------------------------------------------------------------


def test_a_reminder_being_worded_streams_into_an_open_page(server, upstream, open_page):
    words = [f"提醒{i}，" for i in range(20)] + ["该喝水了。"]
    reminder = server.call(
        "POST", "/api/reminders", 201, json={"text": "喝水", "cron": "0 9 * * *", "mode": "generate"}
    )["reminder"]
    page = open_page(server.base_url, "?poll=300")
    follows = follow_requests(page)
    upstream.script({"pieces": words, "chunk_delay": 0.2})
    run = threading.Thread(
        target=server.call, args=("POST", f"/api/reminders/{reminder['id']}/run"), kwargs={"json": {}}, daemon=True
    )
    run.start()

    message = page.locator("article.message.scheduled")
    expect(message.locator(".bubble")).to_contain_text("提醒3", timeout=15_000)
    partial = message.locator(".bubble").inner_text()
    assert "该喝水了" not in partial, "the reminder appeared only once complete"
    expect(message).to_have_class(re.compile(r"\bstreaming\b"))
    expect(page.locator("#send")).to_be_visible()  # a reminder is not the user's turn: no Stop for it

    run.join(60)
    stored = wait_until(
        lambda: next((m for m in server.history() if m.get("is_scheduled") and not m.get("streaming")), None),
        60,
        message="reminder stored",
    )
    assert stored["content"] == "".join(words)
    expect(message.locator(".bubble")).to_have_text(stored["content"], timeout=30_000)
    expect(message).to_have_attribute("data-id", str(stored["id"]))
    page.wait_for_timeout(1000)  # a few polls later: still one copy
    expect(page.locator("article.message.scheduled")).to_have_count(1)
    assert len(follows) == 1, follows  # polled again and again while it streamed: followed once


# ---- (e) the worker writing the reply dies ---------------------------------------------------------------------


def start_turn(server: Server, text: str) -> tuple[HTTPConnection, int, int]:
    """Send a turn over a connection of our own, read up to its start event: (connection, reply id, worker pid)."""
    connection = HTTPConnection("127.0.0.1", server.gunicorn.port, timeout=30)
    connection.request(
        "POST", "/api/chat/stream", body=json.dumps({"message": text}), headers={"Content-Type": "application/json"}
    )
    response = connection.getresponse()
    assert response.status == 200
    while True:
        line = response.fp.readline().decode()
        if line.startswith("data:") and json.loads(line[5:])["type"] == "start":
            message_id = json.loads(line[5:])["message_id"]
            break
    pid = worker_holding(connection, server.gunicorn)
    assert pid is not None
    return connection, message_id, pid


@pytest.mark.parametrize("locale", list(LOCALES))
def test_kill_9_of_the_worker_writing_a_reply_shows_interrupted_and_retry_answers(server, upstream, open_page, locale):
    upstream.script({"pieces": PIECES, "chunk_delay": 0.15})
    connection, message_id, pid = start_turn(server, "讲个长故事")
    try:
        page = open_page(server.base_url, "?poll=1000", locale=locale)  # the page joins the reply being written
        reply = page.locator(f'{REPLY}[data-id="{message_id}"]')
        expect(reply.locator(".bubble")).to_contain_text("第3段", timeout=15_000)
        os.kill(pid, signal.SIGKILL)
        killed_at = time.monotonic()

        error = reply.locator(".turn-error")
        expect(error).to_contain_text(INTERRUPTED[locale], timeout=30_000)
        print(f"\nkill -9 → interrupted shown after {time.monotonic() - killed_at:.1f} s")
        expect(reply).not_to_have_class("streaming")
        stored = next(m for m in server.history() if m["id"] == message_id)
        assert stored.get("interrupted") is True and stored.get("incomplete") is True
        assert stored["error_code"] == "interrupted"
        assert WHOLE.startswith(bubble_text(page)) and bubble_text(page) == stored["content"]
        expect(page.locator("#send")).to_be_visible()
        retry = error.get_by_role("button", name=RETRY[locale])
        expect(retry).to_be_visible()
        screenshot(page, f"resume-interrupted-{LOCALES[locale]}")

        page.reload()  # from the history, the same: the error and Retry
        error = page.locator(f'{REPLY}[data-id="{message_id}"] .turn-error')
        expect(error).to_contain_text(INTERRUPTED[locale])
        retry = error.get_by_role("button", name=RETRY[locale])
        expect(retry).to_be_visible()
        retry.click()
        answer = page.locator(REPLY).last
        expect(answer.locator(".bubble")).to_have_text("收到：讲个长故事", timeout=30_000)
        expect(page.locator("#send")).to_be_visible()
        expect(page.get_by_role("button", name=RETRY[locale])).to_have_count(0)
        expect(page.locator("article.message.user")).to_have_count(1)
        history = server.history()
        assert [m["content"] for m in history if m["role"] == "user"] == ["讲个长故事"]
        assert history[-1]["reply_to"] == stored["reply_to"]

        page.reload()  # from the history: interrupted, answered since, so no Retry
        expect(page.locator(f'{REPLY}[data-id="{message_id}"] .turn-error')).to_contain_text(INTERRUPTED[locale])
        expect(page.get_by_role("button", name=RETRY[locale])).to_have_count(0)
    finally:
        connection.close()
