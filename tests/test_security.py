"""Putting the app on the internet: access token, login cookie, rate limits, headers, no leaked secrets."""

from __future__ import annotations

import logging
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from config import ConfigError, load_settings
from security import AUTH_FAILURE_LIMIT, CONTENT_SECURITY_POLICY, COOKIE_MAX_AGE, COOKIE_NAME
from tests.support.client import Api, app_env
from tests.support.fake_upstream import API_KEY
from tests.support.servers import Gunicorn, free_port

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
    ("GET", "/api/schedule/preview", {"params": {"cron": "0 8 * * *"}}),
    ("POST", "/api/reminders/1/snooze", {"json": {"message_id": 1}}),
    ("POST", "/api/reminders/1/done", {"json": {"message_id": 1}}),
    ("GET", "/api/push/key", {}),
    ("GET", "/api/usage", {}),
    ("POST", "/api/push/subscriptions", {"json": {"subscription": {"endpoint": "https://push.example.com/x"}}}),
    ("DELETE", "/api/push/subscriptions", {"json": {"endpoint": "https://push.example.com/x"}}),
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
    assert f"Max-Age={COOKIE_MAX_AGE}" in set_cookie  # kept by the browser for its lifetime, not just this session
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


@pytest.mark.parametrize("unusable", ["session_secret", "sessions.json"])
def test_an_unusable_login_file_is_a_clear_503_that_does_not_show_the_folder(serve, unusable):
    api = serve(ACCESS_TOKEN=TOKEN)
    (api.settings.data_dir / unusable).mkdir(parents=True)  # a folder where the file should be: reading fails
    response = login(api)
    assert response.status_code == 503
    assert response.json()["code"] == "storage_unavailable"
    assert str(api.settings.data_dir) not in response.text  # login is public: no paths for strangers
    assert api.get("/api/history", headers=BEARER).status_code == 200  # scripts with the token still work


def test_login_cookie_needs_the_data_folders_secret_not_just_the_token(serve):
    first = serve(ACCESS_TOKEN=TOKEN)
    login(first)
    cookie = {COOKIE_NAME: first.session.cookies[COOKIE_NAME]}
    # Whoever knows (or guesses) the token but not the secret cannot make or check a cookie offline.
    (first.settings.data_dir / "session_secret").write_bytes(b"another secret, 32 bytes or more!!")
    same_token_other_secret = serve(ACCESS_TOKEN=TOKEN)
    assert same_token_other_secret.get("/api/history", cookies=cookie).status_code == 401


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
        "api.run_reminder",
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


@pytest.mark.parametrize("storage", ["", "redis"])
def test_start_up_says_where_the_rate_limit_is_counted(serve, caplog, storage):
    port = free_port()  # nothing listens: the count falls back to memory, the log line still names Redis
    with caplog.at_level(logging.INFO, logger="security"):
        api = serve(RATE_LIMIT="30/minute", RATE_LIMIT_STORAGE=f"redis://:s3cret@127.0.0.1:{port}/0" if storage else "")
    [said] = [r.getMessage() for r in caplog.records if r.getMessage().startswith("Rate limit ")]
    where = f"redis://127.0.0.1:{port}/0" if storage else str(api.settings.data_dir / "rate_limits.sqlite3")
    assert said == f"Rate limit 30/minute per client address on chat calls, counted in {where}"


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
