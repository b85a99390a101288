"""Putting the app on the internet: access token, login cookie, rate limits, headers, no leaked secrets."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import logging
import os
import stat
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from http.client import HTTPConnection, HTTPResponse
from http.cookies import SimpleCookie
from pathlib import Path

import pytest
import requests
from itsdangerous import BadSignature, TimestampSigner

from config import ConfigError, load_settings
from security import AUTH_FAILURE_LIMIT, CONTENT_SECURITY_POLICY, COOKIE_MAX_AGE, COOKIE_NAME, Guard
from tests.support.client import Api, app_env
from tests.support.fake_upstream import API_KEY
from tests.support.nginx import Nginx, nginx_binary
from tests.support.servers import ROOT, Gunicorn
from tests.support.waiting import wait_until

TOKEN = "correct-horse-battery-staple-7f3a9c"
BEARER = {"Authorization": f"Bearer {TOKEN}"}
WRONG_BEARER = {"Authorization": "Bearer not-the-token"}
CHAT = {"json": {"message": "你好"}}

# Every route behind the token, as (method, path, request arguments).
PROTECTED = [
    ("GET", "/api/history", {}),
    ("DELETE", "/api/history", {}),
    ("POST", "/api/chat", CHAT),
    ("POST", "/api/chat/stream", CHAT),
    ("GET", "/api/schedule", {}),
    ("POST", "/api/schedule/run", {"json": {}}),
    ("GET", "/api/openapi.json", {}),
    ("GET", "/api/no-such-route", {}),
]
WRONG_CREDENTIALS = {
    "nothing": {},
    "wrong bearer": {"headers": {"Authorization": "Bearer not-the-token"}},
    "token without Bearer": {"headers": {"Authorization": TOKEN}},
    "raw token as cookie": {"cookies": {COOKIE_NAME: TOKEN}},
    "garbage cookie": {"cookies": {COOKIE_NAME: "in.AAAA.BBBB"}},
}


def call(api, method, path, **kwargs):
    return api.session.request(method, api.base_url + path, timeout=30, **kwargs)


def login(api, token=TOKEN):
    return api.post("/api/login", json={"token": token})


@pytest.mark.parametrize("credentials", WRONG_CREDENTIALS.values(), ids=WRONG_CREDENTIALS.keys())
@pytest.mark.parametrize(("method", "path", "kwargs"), PROTECTED, ids=[f"{m} {p}" for m, p, _ in PROTECTED])
def test_protected_routes_refuse_missing_or_wrong_credentials(serve, upstream, method, path, kwargs, credentials):
    api = serve(ACCESS_TOKEN=TOKEN)
    extra = {**kwargs, **credentials}
    response = call(api, method, path, **extra)
    assert response.status_code == 401
    assert response.json() == {"success": False, "error": response.json()["error"], "code": "unauthorized"}
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert upstream.requests == []


@pytest.mark.parametrize(("method", "path", "kwargs"), PROTECTED[:-1], ids=[f"{m} {p}" for m, p, _ in PROTECTED[:-1]])
def test_bearer_token_opens_every_protected_route(serve, method, path, kwargs):
    api = serve(ACCESS_TOKEN=TOKEN)
    response = call(api, method, path, headers=BEARER, **kwargs)
    assert response.status_code != 401, response.text
    assert response.status_code < 500 or response.json()["code"] != "unauthorized"


def test_chat_with_bearer_token_works_like_without_a_token(serve, upstream):
    api = serve(ACCESS_TOKEN=TOKEN)
    response = api.post("/api/chat", headers=BEARER, **CHAT)
    assert response.status_code == 200
    assert response.json()["reply"] == "收到：你好"


def test_health_stays_open_and_says_a_token_is_required(serve):
    api = serve(ACCESS_TOKEN=TOKEN)
    response = api.get("/api/health")
    assert response.status_code == 200
    assert response.json()["auth_required"] is True
    assert TOKEN not in response.text and API_KEY not in response.text
    assert serve().get("/api/health").json()["auth_required"] is False


def test_page_and_its_files_stay_reachable_without_a_token(serve):
    api = serve(ACCESS_TOKEN=TOKEN)
    assert api.get("/").status_code == 200
    assert api.get("/static/index.html").status_code == 200


def test_login_sets_a_strict_httponly_cookie_that_opens_the_api(serve, upstream):
    api = serve(ACCESS_TOKEN=TOKEN)
    response = login(api)
    assert response.status_code == 200
    assert response.json() == {"success": True}
    set_cookie = response.headers["Set-Cookie"]
    assert set_cookie.startswith(f"{COOKIE_NAME}=")
    assert "HttpOnly" in set_cookie and "SameSite=Strict" in set_cookie and "Path=/" in set_cookie
    assert "Secure" not in set_cookie  # plain http here; see the https test below
    value = api.session.cookies[COOKIE_NAME]
    assert TOKEN not in value
    assert api.chat("用 cookie 登录").status_code == 200
    assert api.get("/api/history").status_code == 200


def test_login_without_a_configured_token_just_says_none_is_needed(api):
    response = login(api, "anything")
    assert response.json() == {"success": True, "auth_required": False}
    assert "Set-Cookie" not in response.headers


def test_wrong_login_token_is_refused_without_a_cookie(serve):
    api = serve(ACCESS_TOKEN=TOKEN)
    response = login(api, "guess")
    assert response.status_code == 401
    assert response.json()["code"] == "invalid_token"
    assert "Set-Cookie" not in response.headers
    assert api.get("/api/history").status_code == 401


@pytest.mark.parametrize(
    ("kwargs", "status", "code"),
    [
        ({"json": {}}, 400, "missing_token"),
        ({"json": {"token": 42}}, 400, "missing_token"),
        ({"data": {"token": TOKEN}}, 415, "unsupported_media_type"),
    ],
)
def test_malformed_login_bodies_are_refused(serve, kwargs, status, code):
    api = serve(ACCESS_TOKEN=TOKEN)
    response = api.post("/api/login", **kwargs)
    assert response.status_code == status
    assert response.json()["code"] == code
    assert "Set-Cookie" not in response.headers


def test_logout_clears_the_cookie_and_ends_the_session(serve):
    api = serve(ACCESS_TOKEN=TOKEN)
    login(api)
    cookie = {COOKIE_NAME: api.session.cookies[COOKIE_NAME]}
    response = api.post("/api/logout", json={})
    assert response.status_code == 200
    assert response.json() == {"success": True}
    assert f"{COOKIE_NAME}=;" in response.headers["Set-Cookie"]
    assert COOKIE_NAME not in api.session.cookies
    assert api.get("/api/history").status_code == 401
    # A copy of the cookie kept from before (a stolen one) no longer opens anything either.
    assert requests.get(api.base_url + "/api/history", cookies=cookie, timeout=30).status_code == 401


def test_login_cookie_survives_a_restart_but_not_a_new_token(serve):
    first = serve(ACCESS_TOKEN=TOKEN)
    login(first)
    cookie = {COOKIE_NAME: first.session.cookies[COOKIE_NAME]}
    same_token = serve(ACCESS_TOKEN=TOKEN)
    assert same_token.get("/api/history", cookies=cookie).status_code == 200
    new_token = serve(ACCESS_TOKEN=TOKEN + "-rotated")
    assert new_token.get("/api/history", cookies=cookie).status_code == 401


def test_cookie_is_secure_behind_a_trusted_https_proxy_only(serve):
    https = {"X-Forwarded-Proto": "https"}
    behind_proxy = serve(ACCESS_TOKEN=TOKEN, TRUSTED_PROXIES="1")
    assert "Secure" in behind_proxy.post("/api/login", json={"token": TOKEN}, headers=https).headers["Set-Cookie"]
    direct = serve(ACCESS_TOKEN=TOKEN)
    assert "Secure" not in direct.post("/api/login", json={"token": TOKEN}, headers=https).headers["Set-Cookie"]
    # Two proxies (a CDN, then nginx) add two X-Forwarded-For entries, but nginx's
    # `proxy_set_header X-Forwarded-Proto $scheme` leaves a single value.
    two_proxies = serve(ACCESS_TOKEN=TOKEN, TRUSTED_PROXIES="2")
    headers = {**https, "X-Forwarded-For": "203.0.113.9, 198.51.100.7"}
    assert "Secure" in two_proxies.post("/api/login", json={"token": TOKEN}, headers=headers).headers["Set-Cookie"]


def test_guessing_the_token_is_rate_limited(serve):
    api = serve(ACCESS_TOKEN=TOKEN)
    allowed = int(AUTH_FAILURE_LIMIT.split("/")[0])
    for number in range(allowed):
        headers = {"Authorization": f"Bearer guess-{number}"} if number % 2 else {}
        response = call(api, "GET", "/api/history", headers=headers) if number % 2 else login(api, f"guess-{number}")
        assert response.status_code == 401
    for response in (login(api, "one-guess-too-many"), api.get("/api/history", headers=WRONG_BEARER)):
        assert response.status_code == 429
        assert response.json()["code"] == "rate_limited"
        assert 1 <= int(response.headers["Retry-After"]) <= 60


def test_a_valid_token_or_cookie_always_passes_even_from_an_address_that_is_guessing(serve):
    # Behind nginx with TRUSTED_PROXIES=0, or one NAT, the guesser and the owner share 127.0.0.1.
    api = serve(ACCESS_TOKEN=TOKEN)
    owner = Api(api.base_url, api.settings)
    assert login(owner).status_code == 200
    for _ in range(int(AUTH_FAILURE_LIMIT.split("/")[0])):
        assert api.get("/api/history", headers=WRONG_BEARER).status_code == 401
    assert api.get("/api/history", headers=WRONG_BEARER).status_code == 429
    assert login(api, "still-guessing").status_code == 429
    assert owner.get("/api/history").status_code == 200  # the cookie
    assert api.get("/api/history", headers=BEARER).status_code == 200  # the token
    assert login(api).status_code == 200  # logging in with the right token
    owner.session.close()


def test_calls_without_any_token_do_not_count_as_guesses(serve):
    api = serve(ACCESS_TOKEN=TOKEN)
    for _ in range(int(AUTH_FAILURE_LIMIT.split("/")[0]) + 5):
        assert api.get("/api/history").status_code == 401  # the page before its user logs in
    assert login(api).status_code == 200


def test_rate_limit_answers_429_json_with_retry_after(serve, upstream):
    api = serve(RATE_LIMIT="3/minute")
    for number in range(3):
        assert api.chat(f"第{number}条").status_code == 200
    response = api.chat("太多了")
    assert response.status_code == 429
    body = response.json()
    assert body == {"success": False, "error": body["error"], "code": "rate_limited"}
    assert "3 per 1 minute" in body["error"]
    assert 1 <= int(response.headers["Retry-After"]) <= 60
    assert len(upstream.requests) == 3


def test_rate_limit_is_one_budget_for_every_call_that_spends_the_api_key(serve, upstream):
    api = serve(RATE_LIMIT="2/minute")
    assert api.chat("一").status_code == 200
    assert api.post("/api/chat/stream", **CHAT).status_code == 200
    assert api.post("/api/chat/stream", **CHAT).status_code == 429
    assert api.post("/api/schedule/run", json={}).status_code == 429
    for path in ("/api/history", "/api/health", "/api/schedule", "/"):
        assert api.get(path).status_code == 200


def test_refused_calls_do_not_use_up_the_budget(serve):
    api = serve(ACCESS_TOKEN=TOKEN, RATE_LIMIT="1/minute")
    for _ in range(3):
        assert api.chat("没有令牌").status_code == 401
    assert api.post("/api/chat", headers=BEARER, **CHAT).status_code == 200


def test_a_refused_message_does_not_use_up_the_budget(serve, upstream):
    api = serve(RATE_LIMIT="1/minute", MAX_MESSAGE_CHARS="10")
    assert api.chat("这条消息超过了十个字符的上限").status_code == 413
    assert api.chat("").status_code == 400
    assert api.chat("短").status_code == 200
    assert api.chat("短").status_code == 429


def test_simultaneous_calls_cannot_overrun_the_budget(serve, upstream):
    api = serve(RATE_LIMIT="1/minute", TRUSTED_PROXIES="1")
    switch_interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # threads take turns often, so a check-then-count race would show
    try:
        for client in range(8):  # each round a fresh client address, 12 calls at once
            barrier = threading.Barrier(12)
            headers = {"X-Forwarded-For": f"203.0.113.{client + 1}"}

            def chat(_: int, headers: dict = headers, barrier: threading.Barrier = barrier) -> int:
                barrier.wait()
                return requests.post(api.base_url + "/api/chat", headers=headers, timeout=30, **CHAT).status_code

            with ThreadPoolExecutor(12) as pool:
                statuses = sorted(pool.map(chat, range(12)))
            assert statuses == [200] + [429] * 11, f"round {client}"
    finally:
        sys.setswitchinterval(switch_interval)


def test_a_wrong_method_on_an_open_route_is_405_not_401(serve):
    api = serve(ACCESS_TOKEN=TOKEN)
    for method, path in (("GET", "/api/login"), ("POST", "/api/health"), ("GET", "/api/logout")):
        response = call(api, method, path)
        assert response.status_code == 405, (method, path)
        assert response.json()["code"] == "method_not_allowed"
    assert call(api, "PUT", "/api/history").status_code == 401  # a guarded route tells nothing without the token


def test_which_routes_are_open_and_which_spend_the_api_key_is_declared_on_each_route(api):
    from app import create_app

    views = create_app(api.settings).view_functions
    assert {name for name, view in views.items() if getattr(view, "is_public", False)} == {
        "api.health",
        "api.login",
        "api.logout",
    }
    assert {name for name, view in views.items() if getattr(view, "spends_api_key", False)} == {
        "api.chat",
        "api.chat_stream",
        "api.run_schedule",
    }


def test_forwarded_for_is_ignored_unless_proxies_are_trusted(serve):
    direct = serve(RATE_LIMIT="1/minute")
    assert direct.post("/api/chat", headers={"X-Forwarded-For": "203.0.113.1"}, **CHAT).status_code == 200
    assert direct.post("/api/chat", headers={"X-Forwarded-For": "203.0.113.2"}, **CHAT).status_code == 429

    proxied = serve(RATE_LIMIT="1/minute", TRUSTED_PROXIES="1")
    assert proxied.post("/api/chat", headers={"X-Forwarded-For": "203.0.113.1"}, **CHAT).status_code == 200
    assert proxied.post("/api/chat", headers={"X-Forwarded-For": "203.0.113.1"}, **CHAT).status_code == 429
    # A client cannot escape by prepending an address: only the last (the proxy's own) entry counts.
    spoofed = {"X-Forwarded-For": "198.51.100.7, 203.0.113.1"}
    assert proxied.post("/api/chat", headers=spoofed, **CHAT).status_code == 429
    assert proxied.post("/api/chat", headers={"X-Forwarded-For": "203.0.113.2"}, **CHAT).status_code == 200


def test_oversized_body_gets_413_json_once_authenticated(serve, upstream):
    api = serve(ACCESS_TOKEN=TOKEN, MAX_BODY_BYTES="2048")
    response = api.post("/api/chat", headers=BEARER, json={"message": "x" * 5000})
    assert response.status_code == 413
    assert response.json()["code"] == "payload_too_large"
    assert api.post("/api/chat", json={"message": "x" * 5000}).status_code == 401
    assert upstream.requests == []


def test_chat_body_that_is_not_json_gets_415(api, upstream):
    for path in ("/api/chat", "/api/chat/stream"):
        response = api.post(path, data={"message": "表单"})  # what curl -d sends without a Content-Type
        assert response.status_code == 415
        assert response.json()["code"] == "unsupported_media_type"
        assert "application/json" in response.json()["error"]
    assert upstream.requests == []


def assert_security_headers(response: requests.Response) -> None:
    assert response.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
    assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"] == "no-referrer"
    assert response.headers["X-Frame-Options"] == "DENY"


def test_every_kind_of_response_carries_the_security_headers(serve):
    api = serve(ACCESS_TOKEN=TOKEN, RATE_LIMIT="2/minute")
    responses = {
        "page": api.get("/"),
        "static file": api.get("/static/index.html"),
        "health": api.get("/api/health"),
        "401": api.get("/api/history"),
        "404": api.get("/nowhere"),
        "api 404": api.get("/api/nowhere", headers=BEARER),
        "chat": api.post("/api/chat", headers=BEARER, **CHAT),
        "login": login(api),
        "stream": api.post("/api/chat/stream", **CHAT),
        "429": api.post("/api/chat", **CHAT),
    }
    assert [r.status_code for r in responses.values()] == [200, 200, 200, 401, 404, 404, 200, 200, 200, 429]
    for response in responses.values():
        assert_security_headers(response)
    assert responses["health"].headers["Cache-Control"] == "no-store"
    assert responses["stream"].headers["Cache-Control"] == "no-cache"


def test_start_up_warns_when_no_token_is_set_and_never_logs_it(serve, caplog):
    with caplog.at_level(logging.INFO):
        serve()
    warnings = [
        r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and "ACCESS_TOKEN" in r.getMessage()
    ]
    assert len(warnings) == 1 and "spend the API key" in warnings[0]
    caplog.clear()
    with caplog.at_level(logging.DEBUG):
        api = serve(ACCESS_TOKEN=TOKEN)
        login(api)
        api.get("/api/history", headers={"Authorization": "Bearer wrong"})
    assert not any("is not set" in r.getMessage() for r in caplog.records)
    assert TOKEN not in caplog.text


@pytest.mark.parametrize("value", ["short", "fifteen-chars-x"])
def test_a_short_token_stops_start_up_with_one_line_that_does_not_show_it(value):
    with pytest.raises(ConfigError) as caught:
        load_settings({"ACCESS_TOKEN": value})
    message = str(caught.value)
    assert message.startswith(f"ACCESS_TOKEN ({len(value)} characters) is invalid: expected at least 16 characters")
    assert value not in message and "\n" not in message
    assert load_settings({"ACCESS_TOKEN": "sixteen-chars-xy"}).access_token == "sixteen-chars-xy"


def test_secrets_never_reach_responses_or_gunicorn_log(upstream, tmp_path):
    env = app_env(upstream, tmp_path / "data", ACCESS_TOKEN=TOKEN, RATE_LIMIT="4/minute", LOG_LEVEL="DEBUG")
    log_path = tmp_path / "gunicorn.log"
    upstream.script(
        {"kind": "status", "status": 401, "body": {"error": {"message": f"Incorrect API key provided: {API_KEY}"}}},
        {"kind": "status", "status": 500, "body": {"error": {"message": f"boom {API_KEY}"}}},
        {"kind": "status", "status": 500, "body": {"error": {"message": f"boom {API_KEY}"}}},
        {"kind": "malformed"},
    )
    with Gunicorn(env, ["-c", "gunicorn.conf.py", "-w", "1"], log_path) as server, requests.Session() as session:

        def send(method, path, **kwargs) -> tuple[int, str]:
            # Only what the client saw is kept: a live response would hold its connection, delaying the stop by 2 s.
            response = session.request(method, server.base_url + path, timeout=30, **kwargs)
            return response.status_code, response.text + str(response.headers)

        responses = [
            send("GET", "/api/history"),
            send("GET", "/api/history", headers={"Authorization": "Bearer wrong"}),
            send("POST", "/api/login", json={"token": "wrong"}),
            send("POST", "/api/login", json={"token": TOKEN}),
            send("POST", "/api/chat", **CHAT),  # upstream 401 quoting the key
            send("POST", "/api/chat", **CHAT),  # upstream 500 twice (retried)
            send("POST", "/api/chat/stream", **CHAT),  # malformed
            send("POST", "/api/chat", data="not json", headers={"Content-Type": "application/json"}),
            send("POST", "/api/chat", **CHAT),
            send("POST", "/api/chat", **CHAT),  # over the rate limit
            send("GET", "/api/nowhere"),
            send("GET", "/api/schedule"),
            send("GET", "/api/health"),
            send("GET", "/"),
        ]
        statuses = [status for status, _ in responses]
        assert {400, 401, 429}.issubset(statuses) and any(s >= 500 for s in statuses), statuses
    for _, text in responses:
        assert API_KEY not in text and TOKEN not in text
    log = server.log_text()
    assert "POST /api/chat" in log and " 429 " in log  # the log did record this run
    assert API_KEY not in log
    assert TOKEN not in log


@pytest.mark.parametrize("value", ["30", "abc", "30/fortnight", "0/minute"])
def test_bad_rate_limit_setting_stops_start_up_with_one_line(value):
    with pytest.raises(ConfigError) as caught:
        load_settings({"RATE_LIMIT": value})
    assert str(caught.value).startswith(f"RATE_LIMIT={value!r} is invalid")
    assert "\n" not in str(caught.value)


# ---- warnings about proxies ------------------------------------------------------------------------


def proxy_warnings(caplog) -> list[str]:
    messages = [record.getMessage() for record in caplog.records if record.levelno == logging.WARNING]
    return [message for message in messages if "TRUSTED_PROXIES" in message]


def test_forwarded_for_while_no_proxy_is_trusted_is_warned_about_once(serve, caplog):
    with caplog.at_level(logging.INFO):
        api = serve()
        for number in range(3):
            assert api.get("/api/health", headers={"X-Forwarded-For": f"203.0.113.{number}"}).status_code == 200
    warnings = proxy_warnings(caplog)
    assert len(warnings) == 1, warnings
    assert "TRUSTED_PROXIES=0" in warnings[0] and "set TRUSTED_PROXIES=1" in warnings[0]
    assert "203.0.113" not in warnings[0]  # the header's value, which a client chose, is not logged
    caplog.clear()
    with caplog.at_level(logging.INFO):
        trusting = serve(TRUSTED_PROXIES="1", HOST="127.0.0.1")
        trusting.get("/api/health", headers={"X-Forwarded-For": "203.0.113.9"})
        serve().get("/api/health")
    assert proxy_warnings(caplog) == []


@pytest.mark.parametrize(("host", "warned"), [("0.0.0.0", True), ("::", True), ("127.0.0.1", False), ("::1", False)])
def test_trusting_proxies_while_listening_beyond_loopback_is_warned_about_at_start_up(serve, caplog, host, warned):
    with caplog.at_level(logging.INFO):
        serve(TRUSTED_PROXIES="1", HOST=host)
    warnings = proxy_warnings(caplog)
    assert len(warnings) == warned, warnings
    if warned:
        assert f"HOST={host}" in warnings[0] and "forge X-Forwarded-For" in warnings[0]


# ---- requests from other sites ---------------------------------------------------------------------

STATE_CHANGES = [
    ("POST", "/api/chat", CHAT),
    ("POST", "/api/chat/stream", CHAT),
    ("POST", "/api/schedule/run", {"json": {}}),
    ("DELETE", "/api/history", {}),
    ("POST", "/api/login", {"json": {"token": TOKEN}}),
    ("POST", "/api/logout", {"json": {}}),
]
FOREIGN = {
    "Sec-Fetch-Site cross-site": {"Sec-Fetch-Site": "cross-site"},
    "Sec-Fetch-Site same-site (a sibling)": {"Sec-Fetch-Site": "same-site"},
    "Origin of another site": {"Origin": "https://evil.example"},
    "Origin of another port": {"Origin": "http://127.0.0.1:1"},
    "Origin https of this host": {"Origin": "https://127.0.0.1"},
    "Origin null": {"Origin": "null"},
    "garbage Origin": {"Origin": "http://127.0.0.1:port"},
}


@pytest.mark.parametrize("headers", FOREIGN.values(), ids=FOREIGN.keys())
@pytest.mark.parametrize(("method", "path", "kwargs"), STATE_CHANGES, ids=[f"{m} {p}" for m, p, _ in STATE_CHANGES])
def test_state_changes_from_another_site_or_origin_are_refused(serve, upstream, method, path, kwargs, headers):
    api = serve(ACCESS_TOKEN=TOKEN)
    login(api)
    api.chat("之前的消息")
    upstream.reset()
    response = call(api, method, path, headers=headers, **kwargs)
    assert response.status_code == 403, response.text
    body = response.json()
    assert body == {"success": False, "error": body["error"], "code": "cross_site_request"}
    assert upstream.requests == []
    assert [m["content"] for m in api.history()] == ["之前的消息", "收到：之前的消息"]


def test_same_origin_browsers_and_scripts_may_change_state(serve, upstream):
    api = serve(ACCESS_TOKEN=TOKEN)
    assert login(api).status_code == 200
    own_origin = [{"Sec-Fetch-Site": "same-origin"}, {"Sec-Fetch-Site": "none"}, {"Origin": api.base_url}, {}]
    for headers in own_origin:
        assert api.post("/api/chat", headers=headers, **CHAT).status_code == 200, headers
    # Sec-Fetch-Site decides when a browser sends it: the browser knows the page's origin whatever a
    # proxy did to the scheme or port the app sees.
    both = {"Sec-Fetch-Site": "same-origin", "Origin": "https://127.0.0.1"}
    assert api.post("/api/chat", headers=both, **CHAT).status_code == 200
    foreign_reads = {"Sec-Fetch-Site": "cross-site", "Origin": "https://evil.example"}
    assert api.get("/api/health", headers=foreign_reads).status_code == 200  # reading changes nothing


@pytest.mark.parametrize(
    ("path", "kwargs"),
    [
        ("/api/schedule/run", {}),
        ("/api/schedule/run", {"data": "", "headers": {"Content-Type": "text/plain"}}),
        ("/api/logout", {"data": {"x": "1"}}),
        ("/api/login", {"data": {"token": TOKEN}}),
        ("/api/chat", {"data": {"message": "表单"}}),
        ("/api/chat/stream", {"data": '{"message": "表单"}', "headers": {"Content-Type": "text/plain"}}),
    ],
)
def test_every_post_must_be_sent_as_json_which_a_form_cannot(serve, upstream, path, kwargs):
    api = serve(ACCESS_TOKEN=TOKEN)
    login(api)
    response = api.post(path, **kwargs)
    assert response.status_code == 415
    assert response.json()["code"] == "unsupported_media_type"
    assert "Content-Type: application/json" in response.json()["error"]
    assert upstream.requests == []


def test_posts_without_a_body_work_with_the_json_content_type_as_the_readme_shows(serve, upstream):
    api = serve(ACCESS_TOKEN=TOKEN)
    json_header = {**BEARER, "Content-Type": "application/json"}
    # curl -X POST -H 'Content-Type: application/json' -H "Authorization: Bearer ..." .../api/schedule/run
    response = api.post("/api/schedule/run", headers=json_header)
    assert response.status_code == 200, response.text
    assert len(upstream.requests) == 1
    assert api.post("/api/logout", headers=json_header).status_code == 200


def test_a_form_on_a_sibling_origin_cannot_post_with_the_login_cookie(serve, upstream, browser):
    # 127.0.0.1 on another port is the same site, so the SameSite=Strict cookie goes along: the
    # cross-site check and the JSON content type are what stop the form.
    api = serve(ACCESS_TOKEN=TOKEN)
    sibling = "http://127.0.0.1:9"
    context = browser.new_context()
    try:
        assert context.request.post(api.base_url + "/api/login", data={"token": TOKEN}).status == 200
        page = context.new_page()
        form = (
            f'<form method="post" action="{api.base_url}/api/schedule/run" enctype="text/plain">'
            "<input name='{\"a\":\"' value='\"}'><button>go</button></form>"
        )
        page.route(f"{sibling}/", lambda route: route.fulfill(content_type="text/html", body=form))
        page.goto(f"{sibling}/")
        with page.expect_navigation() as navigation:
            page.click("button")
        assert navigation.value.status == 403
        assert '"cross_site_request"' in page.content()
        assert context.request.get(api.base_url + "/api/history").status == 200  # the cookie was valid all along
    finally:
        context.close()
    assert upstream.requests == []


# ---- the login cookie ------------------------------------------------------------------------------


def test_the_cookie_is_signed_with_a_secret_from_the_data_folder_not_with_the_token(serve):
    api = serve(ACCESS_TOKEN=TOKEN)
    login(api)
    value = api.session.cookies[COOKIE_NAME]
    secret = api.settings.data_dir / "session_secret"
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    assert len(secret.read_bytes()) >= 32
    assert stat.S_IMODE((api.settings.data_dir / "sessions.json").stat().st_mode) == 0o600
    # Whoever holds a cookie but not the secret cannot check token guesses against it: no key made
    # from the token alone verifies it (this is how the cookie used to be signed).
    key_from_token = hmac.new(TOKEN.encode(), b"chat-assistant login cookie key v1", hashlib.sha256).digest()
    with pytest.raises(BadSignature):
        TimestampSigner(key_from_token, salt="login", digest_method=hashlib.sha256).unsign(value)


def test_workers_starting_together_agree_on_one_secret(tmp_path):
    # Eight processes race to make the secret in an empty folder: one wins, all read the same.
    script = "import sys; from sessions import SessionSecret; from pathlib import Path; "
    script += "print(SessionSecret(Path(sys.argv[1])).value().hex())"
    processes = [
        subprocess.Popen([sys.executable, "-c", script, str(tmp_path)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
        for _ in range(8)
    ]
    secrets_seen = {process.communicate(timeout=60)[0].strip() for process in processes}
    assert len(secrets_seen) == 1 and len(secrets_seen.pop()) == 64
    assert [path.name for path in tmp_path.iterdir()] == ["session_secret"]  # no temporary file left


def worker_holding(connection: HTTPConnection, server: Gunicorn) -> int | None:
    """The worker process that accepted `connection`: its socket's inode, found among the workers' descriptors."""
    client_port = connection.sock.getsockname()[1]
    inode = None
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if int(fields[1].split(":")[1], 16) == server.port and int(fields[2].split(":")[1], 16) == client_port:
            inode = fields[9]
    for pid in server.worker_pids():
        with contextlib.suppress(OSError):  # a descriptor closed while listed
            if any(os.readlink(fd) == f"socket:[{inode}]" for fd in Path(f"/proc/{pid}/fd").iterdir()):
                return pid
    return None


def send(connection: HTTPConnection, method: str, path: str, cookie: str = "", body: object = None) -> HTTPResponse:
    """One request on a kept-alive connection (so on the worker holding it), read to the end."""
    headers = {"Content-Type": "application/json", **({"Cookie": f"{COOKIE_NAME}={cookie}"} if cookie else {})}
    connection.request(method, path, body=None if body is None else json.dumps(body), headers=headers)
    response = connection.getresponse()
    response.read()
    return response


def test_logout_ends_the_session_in_every_gunicorn_worker(upstream, tmp_path):
    env = app_env(upstream, tmp_path / "data", ACCESS_TOKEN=TOKEN, DOTENV_PATH=str(tmp_path / "no.env"))
    args = ["-c", "gunicorn.conf.py", "-w", "2", "--keep-alive", "60"]
    opened: list[HTTPConnection] = []
    pinned: dict[int, HTTPConnection] = {}  # worker pid → a connection it holds

    def every_worker_holds_one() -> bool:
        connection = HTTPConnection("127.0.0.1", server.port, timeout=30)
        opened.append(connection)
        assert send(connection, "GET", "/api/health").status == 200
        worker = worker_holding(connection, server)
        if worker is not None:
            pinned.setdefault(worker, connection)
        return len(pinned) == 2

    with Gunicorn(env, args, tmp_path / "gunicorn.log") as server:
        try:
            wait_until(every_worker_holds_one, 60, interval=0, message="a connection held by each worker")
            first, second = pinned.values()

            def log_in(connection: HTTPConnection) -> str:
                response = send(connection, "POST", "/api/login", body={"token": TOKEN})
                assert response.status == 200
                return SimpleCookie(response.getheader("Set-Cookie"))[COOKIE_NAME].value

            with ThreadPoolExecutor(2) as pool:  # both workers' first logins race to make the secret
                cookie, other_cookie = pool.map(log_in, (first, second))
            for connection in (first, second):  # each worker knows the other's sessions
                assert send(connection, "GET", "/api/history", cookie).status == 200
                assert send(connection, "GET", "/api/history", other_cookie).status == 200
            assert send(second, "POST", "/api/logout", cookie, body={}).status == 200  # logged in on the first
            for connection in (first, second):
                assert send(connection, "GET", "/api/history", cookie).status == 401
                assert send(connection, "GET", "/api/history", other_cookie).status == 200  # other sessions go on
        finally:
            for connection in opened:
                connection.close()


@pytest.mark.parametrize(("age", "status"), [(COOKIE_MAX_AGE + 60, 401), (COOKIE_MAX_AGE - 3600, 200)])
def test_a_cookie_older_than_its_lifetime_is_refused(serve, age, status):
    api = serve(ACCESS_TOKEN=TOKEN)
    # A cookie issued `age` seconds ago: the app's own Guard, on the same data folder, with its clock set back.
    issued_then = Guard(api.settings, clock=lambda: time.time() - age)
    cookie = issued_then.start_session()
    assert api.get("/api/history", cookies={COOKIE_NAME: cookie}).status_code == status


@pytest.mark.skipif(nginx_binary() is None, reason="nginx is not installed")
def test_the_page_origin_matches_behind_the_shipped_nginx(upstream, tmp_path):
    # An older browser sends Origin but no Sec-Fetch-Site: the app must see the same scheme, host and
    # port as the browser, through nginx (Host with its port, X-Forwarded-Proto with TRUSTED_PROXIES=1).
    env = app_env(upstream, tmp_path / "data", ACCESS_TOKEN=TOKEN, TRUSTED_PROXIES="1", HOST="127.0.0.1")
    (tmp_path / "nginx").mkdir()
    with (
        Gunicorn(
            {**env, "DOTENV_PATH": str(tmp_path / "no.env")}, ["-c", "gunicorn.conf.py", "-w", "1"], tmp_path / "g.log"
        ) as app,
        Nginx(tmp_path / "nginx", app.port) as nginx,
        requests.Session() as browser,
    ):
        browser.verify = str(nginx.certificate)
        browser.trust_env = False

        def log_in(origin: str) -> requests.Response:
            return browser.post(
                nginx.https_url + "/api/login", json={"token": TOKEN}, headers={"Origin": origin}, timeout=30
            )

        assert log_in(nginx.https_url).status_code == 200
        for foreign in ("https://127.0.0.1", nginx.http_url, "https://chat.example.com"):
            response = log_in(foreign)
            assert response.status_code == 403, foreign
            assert response.json()["code"] == "cross_site_request"


def test_the_document_declares_the_cross_site_and_json_refusals(serve):
    paths = serve(ACCESS_TOKEN=TOKEN).get("/api/openapi.json", headers=BEARER).json()["paths"]
    for path, operations in paths.items():
        for method, operation in operations.items():
            codes = set(operation["responses"])
            if method in ("post", "put", "patch", "delete"):
                assert "403" in codes, f"{method.upper()} {path}"
                assert "cross_site_request" in operation["responses"]["403"]["description"]
            if method == "post":
                assert "415" in codes and "application/json" in operation["requestBody"]["content"], path
