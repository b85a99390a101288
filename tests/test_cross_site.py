"""Requests from other sites: refused when a browser marks them so; every POST must be JSON, which no form sends."""

from __future__ import annotations

import pytest
import requests

from tests.support.client import app_env
from tests.support.nginx import Nginx, nginx_binary
from tests.support.servers import Gunicorn

TOKEN = "correct-horse-battery-staple-7f3a9c"
BEARER = {"Authorization": f"Bearer {TOKEN}"}
CHAT = {"json": {"message": "你好"}}


def call(api, method, path, **kwargs):
    return api.session.request(method, api.base_url + path, timeout=30, **kwargs)


def login(api, token=TOKEN):
    return api.post("/api/login", json={"token": token})


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
