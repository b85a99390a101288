"""The upstream client against a real loopback server: retries, timeouts and readable errors."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterator

import pytest

from errors import UpstreamError
from tests.support.fake_upstream import API_KEY
from tests.support.forward_proxy import ForwardProxy
from tests.support.servers import free_port
from tests.support.waiting import wait_until
from upstream_client import LONE_SURROGATE, Cancel, UpstreamClient, chat_completions_url, may_hold_surrogates


def test_429_is_retried_after_retry_after_then_succeeds(api, upstream):
    upstream.script(
        {
            "kind": "status",
            "status": 429,
            "headers": {"Retry-After": "1"},
            "body": {"error": {"message": "Too many requests"}},
        }
    )
    started = time.monotonic()
    response = api.chat("重试一下")
    elapsed = time.monotonic() - started
    assert response.status_code == 200
    assert len(upstream.requests) == 2
    assert elapsed >= 0.95  # waited as Retry-After asked


def test_429_that_persists_answers_429_with_retry_after(serve, upstream):
    api = serve(RETRY_ATTEMPTS="1")
    limited = {
        "kind": "status",
        "status": 429,
        "headers": {"Retry-After": "1"},
        "body": {"code": 50603, "message": "System is too busy now"},
    }
    upstream.script(limited, limited)
    response = api.chat("还在限流")
    assert response.status_code == 429
    assert response.json()["code"] == "upstream_rate_limited"
    assert "System is too busy now" in response.json()["error"]
    assert response.headers["Retry-After"] == "1"
    assert len(upstream.requests) == 2


def test_retry_after_beyond_the_retry_budget_gives_up_at_once(serve, upstream):
    api = serve(RETRY_MAX_SECONDS="3")
    upstream.script({"kind": "status", "status": 429, "headers": {"Retry-After": "60"}})
    started = time.monotonic()
    response = api.chat("等不了")
    assert response.status_code == 429
    assert time.monotonic() - started < 2
    assert len(upstream.requests) == 1


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_server_errors_are_retried_with_backoff(api, upstream, status):
    upstream.script({"kind": "status", "status": status, "body": {"error": {"message": "overloaded"}}})
    response = api.chat("再试")
    assert response.status_code == 200
    assert len(upstream.requests) == 2


def test_503_that_persists_is_a_502_with_the_upstream_message(serve, upstream):
    api = serve(RETRY_ATTEMPTS="2")
    busy = {"kind": "status", "status": 503, "body": {"error": {"message": "Service temporarily unavailable"}}}
    upstream.script(busy, busy, busy)
    response = api.chat("忙吗")
    assert response.status_code == 502
    assert response.json()["code"] == "upstream_error"
    assert "HTTP 503" in response.json()["error"]
    assert "Service temporarily unavailable" in response.json()["error"]
    assert len(upstream.requests) == 3


@pytest.mark.parametrize(
    ("status", "body", "code", "text"),
    [
        (
            400,
            {"code": 20015, "message": "Length of prompt exceeds limit"},
            "upstream_error",
            "Length of prompt exceeds limit",
        ),
        (401, {"error": {"message": "Invalid token"}}, "upstream_auth_failed", "API_KEY"),
        (
            403,
            {"code": 30011, "message": "The model is not available for your account"},
            "upstream_auth_failed",
            "not available for your account",
        ),
        (
            404,
            {"code": 20012, "message": "Model does not exist. Please check it carefully."},
            "upstream_error",
            "Model does not exist",
        ),
        (422, {"detail": "Input should be a valid list"}, "upstream_error", "valid list"),
    ],
)
def test_client_errors_are_never_retried_and_read_clearly(serve, upstream, status, body, code, text):
    # A 400 to a request offering the reminder tools is asked once more without them (tests/test_reminder_tools.py).
    api = serve(REMINDER_TOOLS="false") if status == 400 else serve()
    upstream.script({"kind": "status", "status": status, "body": body})
    response = api.chat("你好")
    assert response.status_code == 502
    assert response.json()["code"] == code
    assert text in response.json()["error"]
    assert f"HTTP {status}" in response.json()["error"]
    assert len(upstream.requests) == 1


def test_reply_slower_than_the_read_timeout_is_504(serve, upstream):
    api = serve(READ_TIMEOUT="1")
    upstream.script({"delay": 3})
    started = time.monotonic()
    response = api.chat("慢一点")
    assert response.status_code == 504
    assert response.json()["code"] == "upstream_timeout"
    assert time.monotonic() - started < 2.5
    assert len(upstream.requests) == 1  # a timeout is not retried: it would only double the wait


def test_malformed_json_reply_is_502(api, upstream):
    upstream.script({"kind": "malformed"})
    response = api.chat("坏的回复")
    assert response.status_code == 502
    assert response.json()["code"] == "upstream_bad_response"


def test_connection_refused_is_retried_then_502(serve):
    api = serve(API_URL=f"http://127.0.0.1:{free_port()}/v1/chat/completions", RETRY_ATTEMPTS="1")
    response = api.chat("有人吗")
    assert response.status_code == 502
    assert response.json()["code"] == "upstream_unreachable"
    assert "cannot be reached" in response.json()["error"]


def test_each_request_carries_the_model_and_bearer_key(api, upstream):
    api.chat("模型是谁")
    assert upstream.requests[0]["model"] == "fake/model"
    assert upstream.requests[0]["stream"] is False


def test_each_call_sends_the_key_its_json_and_what_it_accepts(api, upstream):
    assert api.chat("要整段").status_code == 200
    assert api.post("/api/chat/stream", json={"message": "要流式"}).status_code == 200
    whole, streamed = upstream.headers
    for headers in (whole, streamed):
        assert headers["Authorization"] == f"Bearer {API_KEY}"
        assert headers["Content-Type"] == "application/json"
    assert (whole["Accept"], streamed["Accept"]) == ("application/json", "text/event-stream")
    assert upstream.requests[0]["messages"][-1] == {"role": "user", "content": "要整段"}
    assert upstream.requests[1]["messages"][-1] == {"role": "user", "content": "要流式"}
    assert upstream.requests[1]["stream"] is True


def test_a_cookie_the_api_sets_goes_back_with_the_next_calls(api, upstream):
    upstream.script({"kind": "status", "status": 503, "headers": {"Set-Cookie": "lb=node-2; Path=/"}})
    assert api.chat("粘住同一台").status_code == 200  # retried after the 503
    assert api.chat("还是那台").status_code == 200
    assert "Cookie" not in upstream.headers[0]
    assert [headers.get("Cookie") for headers in upstream.headers[1:]] == ["lb=node-2", "lb=node-2"]


def test_a_reply_body_cut_off_mid_way_is_502(api, upstream):
    upstream.script({"kind": "cut_body"})
    response = api.chat("说一半")
    assert response.status_code == 502
    assert response.json()["code"] == "upstream_incomplete"


@pytest.mark.parametrize(
    "body",
    [
        {"choices": [{"message": "just text"}]},
        {"choices": [{"message": {"content": ["not", "text"]}}]},
        {"choices": []},
        {"no_choices": True},
    ],
)
def test_a_reply_of_the_wrong_shape_is_502_bad_response(api, upstream, body):
    upstream.script({"kind": "status", "status": 200, "body": body})
    response = api.chat("奇怪的回复")
    assert response.status_code == 502
    assert response.json()["code"] == "upstream_bad_response"


def test_credentials_in_api_url_stay_out_of_error_messages(serve):
    api = serve(API_URL=f"http://user:hunter2@127.0.0.1:{free_port()}/v1/chat/completions", RETRY_ATTEMPTS="0")
    response = api.chat("有人吗")
    assert response.status_code == 502
    assert "hunter2" not in response.text and "127.0.0.1" in response.json()["error"]


def test_a_fractional_retry_after_is_rounded_up(serve, upstream):
    api = serve(RETRY_ATTEMPTS="0")
    upstream.script({"kind": "status", "status": 429, "headers": {"Retry-After": "1.2"}})
    response = api.chat("多久以后")
    assert response.status_code == 429
    assert response.headers["Retry-After"] == "2"  # never tell a client to come back too early


def test_a_base_api_url_is_extended_to_chat_completions_and_logged_once(serve, upstream, caplog):
    base = upstream.url.removesuffix("/chat/completions")  # http://127.0.0.1:<port>/v1, as providers document
    with caplog.at_level(logging.INFO, logger="upstream_client"):
        api = serve(API_URL=base)
        first, second = api.chat("你好"), api.chat("再来")
    # The fake upstream answers only /v1/chat/completions: anything else would be a 404, i.e. a 502 here.
    assert first.status_code == 200 and second.status_code == 200, first.text
    said = [record.getMessage() for record in caplog.records if "is a base URL" in record.getMessage()]
    assert said == [f"API_URL {base} is a base URL: chat requests go to {upstream.url}"]


def test_a_full_chat_completions_url_is_used_unchanged_and_not_logged(serve, upstream, caplog):
    with caplog.at_level(logging.INFO, logger="upstream_client"):
        api = serve(API_URL=upstream.url)
        assert api.chat("原样").status_code == 200
    assert "base URL" not in caplog.text


def test_the_base_url_log_line_hides_credentials_and_query(serve, upstream, caplog):
    port = upstream.url.split(":")[2].split("/")[0]
    with caplog.at_level(logging.INFO, logger="upstream_client"):
        serve(API_URL=f"http://user:hunter2@127.0.0.1:{port}/v1?key=sk-secret")
    assert f"go to http://127.0.0.1:{port}/v1/chat/completions?…" in caplog.text
    assert "hunter2" not in caplog.text and "sk-secret" not in caplog.text


@pytest.mark.parametrize(
    ("api_url", "used"),
    [
        ("https://api.example.com/v1", "https://api.example.com/v1/chat/completions"),
        ("https://api.example.com/v1/", "https://api.example.com/v1/chat/completions"),
        ("https://api.deepseek.com", "https://api.deepseek.com/chat/completions"),
        ("https://open.bigmodel.cn/api/paas/v4?x=1", "https://open.bigmodel.cn/api/paas/v4/chat/completions?x=1"),
        ("https://api.example.com/v1/chat/completions", "https://api.example.com/v1/chat/completions"),
        ("https://api.example.com/v1/chat/completions/", "https://api.example.com/v1/chat/completions/"),
        ("https://h/openai/deployments/d/chat/completions?api-version=1", None),
    ],
)
def test_chat_completions_url_extends_only_a_base_url(api_url, used):
    assert chat_completions_url(api_url) == (used or api_url)


PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY")


@pytest.fixture
def forward_proxy(monkeypatch) -> Iterator[ForwardProxy]:
    """A forward proxy on loopback, and an environment with no proxy variable set but the test's own."""
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    proxy = ForwardProxy().start()
    yield proxy
    proxy.stop()


def test_a_proxy_set_in_the_environment_carries_every_model_call(serve, upstream, forward_proxy, monkeypatch):
    monkeypatch.setenv("HTTP_PROXY", forward_proxy.url)
    api = serve()
    api.session.trust_env = False  # the test's own calls to the app go straight to it
    for question in ("经过代理吗", "再来一次"):
        assert api.chat(question).status_code == 200
    assert forward_proxy.targets == [upstream.url, upstream.url]
    assert len(upstream.requests) == 2


def test_no_proxy_naming_the_api_host_bypasses_the_proxy(serve, upstream, forward_proxy, monkeypatch):
    monkeypatch.setenv("HTTP_PROXY", forward_proxy.url)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    api = serve()
    api.session.trust_env = False
    assert api.chat("不经过代理").status_code == 200
    assert forward_proxy.targets == []
    assert len(upstream.requests) == 1


@pytest.mark.parametrize(
    "data",
    [
        b'{"content": "\\ud800"}',  # an escape, as a provider's ensure_ascii encoder writes it
        b'{"content": "\\uDFFF"}',
        b'{"content": "\xed\xa0\x80"}',  # U+D800's UTF-8 bytes, which json.loads lets through
        '{"content": "\ud800"}'.encode("utf-16", "surrogatepass"),
        '{"content": "\udc00"}'.encode("utf-32", "surrogatepass"),
    ],
)
def test_json_that_decodes_to_a_lone_surrogate_is_always_noticed(data):
    assert LONE_SURROGATE.search(json.loads(data)["content"])
    assert may_hold_surrogates(data)


@pytest.mark.parametrize("data", [b'{"content": "\xe4\xbd\xa0\xe5\xa5\xbd"}', b'{"content": "\\u4f60 ok"}'])
def test_ordinary_json_skips_the_surrogate_walk(data):
    assert not may_hold_surrogates(data)


# ---- Stop: Cancel ends a turn's requests from another thread ------------------------------------------------------


@pytest.mark.parametrize(
    ("route", "retries"), [("direct", "2"), ("direct", "0"), ("through-a-proxy", "2")], ids=lambda v: v
)
def test_cancel_ends_a_request_still_waiting_for_its_headers_at_once(
    make_settings, upstream, forward_proxy, monkeypatch, route, retries
):
    """The shut socket is a stop, never a failure to retry or to report as the model's."""
    if route == "through-a-proxy":
        monkeypatch.setenv("HTTP_PROXY", forward_proxy.url)
    client = UpstreamClient(make_settings(READ_TIMEOUT="30", RETRY_ATTEMPTS=retries))
    upstream.script({"delay": 8, "content": "迟到的回答"})
    cancel = Cancel()
    threading.Timer(0.3, cancel.cancel).start()
    asked = time.monotonic()
    with pytest.raises(UpstreamError) as raised:
        client.stream([{"role": "user", "content": "你好"}], cancel=cancel)
    assert raised.value.code == "stopped" and time.monotonic() - asked < 1.5
    assert len(upstream.requests) == 1  # never retried
    if route == "direct":
        wait_until(lambda: upstream.closed_at, 2, message="the upstream seeing its connection closed")
    else:
        assert forward_proxy.targets == [upstream.url]
    client.close()


def test_a_late_cancel_never_reaches_the_connection_once_it_is_pooled_again(make_settings, upstream):
    """A turn's stream read whole gives its connection back to the pool; Stop on that turn afterwards (say during
    its tool round) must not shut the connection the next turn is reading from."""
    client = UpstreamClient(make_settings())
    first = Cancel()
    finished = client.stream([{"role": "user", "content": "一"}], cancel=first)
    assert "".join(piece.text for piece in finished if piece.kind == "delta")
    finished.close()
    upstream.script({"content": "第二个回答慢慢地来", "chunk_delay": 0.1})
    second = client.stream([{"role": "user", "content": "二"}])
    texts = []
    for piece in second:
        if piece.kind == "delta":
            texts.append(piece.text)
        if len(texts) == 2:
            first.cancel()
    second.close()
    assert upstream.connections == 1 and "".join(texts) == "第二个回答慢慢地来"
    client.close()


def test_no_request_is_sent_once_the_turn_was_stopped(make_settings, upstream):
    client = UpstreamClient(make_settings())
    cancel = Cancel()
    cancel.cancel()  # Stop while the turn's reminder tools ran
    with pytest.raises(UpstreamError) as raised:
        client.stream([{"role": "user", "content": "你好"}], cancel=cancel)
    assert raised.value.code == "stopped" and upstream.requests == []
    client.close()


def test_a_late_cancel_never_reaches_the_connection_of_a_stream_that_ended_without_done(make_settings, upstream):
    """review16: a body that ends without [DONE] (or one with a Content-Length) is read to its end while the turn
    still iterates, and urllib3 pools the connection then, before `close()` releases it from the turn's Cancel.
    Stop on that turn meanwhile (its last events still being relayed) shut the next turn's connection."""
    finish = {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
    ended = {"frames": [json.dumps({"choices": [{"index": 0, "delta": {"content": "一"}}]}), json.dumps(finish)]}
    upstream.script({**ended, "ending": "eof"}, {"content": "第二个回答慢慢地来", "chunk_delay": 0.1})
    client = UpstreamClient(make_settings())
    first = Cancel()
    ending = client.stream([{"role": "user", "content": "一"}], cancel=first)
    assert [piece.kind for piece in ending] == ["delta", "finish"]  # not closed yet: the relay is still at work
    second = client.stream([{"role": "user", "content": "二"}])  # another turn of this worker, on the pooled connection
    texts = []
    try:
        for piece in second:
            if piece.kind == "delta":
                texts.append(piece.text)
            if len(texts) == 1:
                first.cancel()  # Stop pressed on the first turn just as it ends
    except UpstreamError as error:
        texts.append(f"<{error.code}>")
    ending.close()
    second.close()
    assert upstream.connections == 1 and "".join(texts) == "第二个回答慢慢地来", texts
    client.close()


def test_a_late_cancel_never_reaches_the_next_turn_through_a_buffering_proxy(
    make_settings, upstream, forward_proxy, monkeypatch
):
    """review16: a proxy that sends the stream with a Content-Length (as tests/support/forward_proxy.py does, and
    buffering gateways) lets urllib3 pool the connection at the stream's last read, [DONE] or not, before the turn
    has relayed its events and closed it. Stop on that turn then shut the next turn's request while it waited for
    its headers: a failure to connect, so that request was silently sent to the model a second time."""
    monkeypatch.setenv("HTTP_PROXY", forward_proxy.url)
    client = UpstreamClient(make_settings(READ_TIMEOUT="30"))
    upstream.script({"content": "第一个回答"}, {"content": "第二个回答", "delay": 1.0})
    first = Cancel()
    ending = client.stream([{"role": "user", "content": "一"}], cancel=first)
    assert "".join(piece.text for piece in ending if piece.kind == "delta") == "第一个回答"  # not closed yet
    threading.Timer(0.3, first.cancel).start()  # Stop on the first turn while the second waits for its headers
    second = client.stream([{"role": "user", "content": "二"}])
    text = "".join(piece.text for piece in second if piece.kind == "delta")
    ending.close()
    second.close()
    client.close()
    assert text == "第二个回答" and len(upstream.requests) == 2, [
        r["messages"][-1]["content"] for r in upstream.requests
    ]
