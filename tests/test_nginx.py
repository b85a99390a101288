"""The shipped nginx site in front of real Gunicorn: streaming passes event by event, the app sees each
client's own address (so the rate limit is per client and cannot be dodged), HTTPS cookies are Secure.

Clients connect from different loopback addresses (127.0.0.2, 127.0.0.3, ...), so nginx sees
genuinely different clients and the app can only tell them apart through X-Forwarded-For.
"""

from __future__ import annotations

import contextlib
import json
import re
import socket
import ssl
import time
from collections.abc import Iterator

import pytest
import requests
from requests.adapters import HTTPAdapter

from security import CONTENT_SECURITY_POLICY
from tests.support.client import app_env
from tests.support.nginx import SITE_FILE, Nginx, nginx_binary
from tests.support.servers import Gunicorn
from tests.support.waiting import wait_until

pytestmark = pytest.mark.skipif(nginx_binary() is None, reason="nginx is not installed")

TOKEN = "nginx-test-token-5d1e8b2a9c"
BEARER = {"Authorization": f"Bearer {TOKEN}"}


class FromAddress(HTTPAdapter):
    """Open every connection from a given local address."""

    def __init__(self, address: str):
        self.address = address
        super().__init__()

    def init_poolmanager(self, *args, **kwargs):
        kwargs["source_address"] = (self.address, 0)
        super().init_poolmanager(*args, **kwargs)


class Stack:
    """nginx → Gunicorn → fake upstream; `client(address)` is a browser at that address."""

    def __init__(self, nginx: Nginx, gunicorn: Gunicorn):
        self.nginx = nginx
        self.gunicorn = gunicorn

    def client(self, address: str) -> requests.Session:
        session = requests.Session()
        session.mount("https://", FromAddress(address))
        session.mount("http://", FromAddress(address))
        session.trust_env = False  # else REQUESTS_CA_BUNDLE from the environment would replace `verify`
        session.verify = str(self.nginx.certificate)  # real TLS verification against the test's own certificate
        return session

    def url(self, path: str) -> str:
        return self.nginx.https_url + path


@pytest.fixture(scope="module")
def running_stack(fake_upstream_server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """One nginx and one Gunicorn for the module (each test is a client at its own address, with its own budget)."""
    folder = tmp_path_factory.mktemp("nginx-stack")
    # One worker: rate-limit counters live in each worker's memory (see NETWORK_SETUP.md).
    env = app_env(
        fake_upstream_server,
        folder / "data",
        ACCESS_TOKEN=TOKEN,
        RATE_LIMIT="2/minute",
        TRUSTED_PROXIES="1",
        READ_TIMEOUT="10",
        DOTENV_PATH=str(folder / "no.env"),
    )
    nginx_folder = folder / "nginx"
    nginx_folder.mkdir()
    with Gunicorn(env, ["-c", "gunicorn.conf.py", "-w", "1"], folder / "gunicorn.log") as gunicorn:
        nginx = Nginx(nginx_folder, gunicorn.port)
        with nginx:
            yield Stack(nginx, gunicorn)


@pytest.fixture
def stack(running_stack: Stack, upstream) -> Stack:
    """The module's stack, its fake upstream's script and request log emptied for this test."""
    return running_stack


def timed_events(response: requests.Response) -> list[tuple[float, dict]]:
    """Server-sent events with the moment each one arrived."""
    events, buffer = [], b""
    for data in response.iter_content(chunk_size=None):
        buffer += data
        while b"\n\n" in buffer:
            frame, buffer = buffer.split(b"\n\n", 1)
            for line in frame.split(b"\n"):  # each event: its `id:` line, then its `data:` line
                if line.startswith(b"data: "):
                    events.append((time.monotonic(), json.loads(line[len(b"data: ") :])))
    return events


def test_stream_arrives_through_nginx_event_by_event(stack, upstream):
    upstream.script({"content": "一二三四五六", "pieces": ["一二", "三四", "五六"], "chunk_delay": 0.4})
    client = stack.client("127.0.0.6")
    with client.post(
        stack.url("/api/chat/stream"), json={"message": "慢慢说"}, headers=BEARER, stream=True, timeout=30
    ) as response:
        assert response.status_code == 200
        assert response.headers["Content-Type"].startswith("text/event-stream")
        events = timed_events(response)
    kinds = [event["type"] for _, event in events]
    assert kinds[0] == "start" and kinds[-1] == "done"
    deltas = [(moment, event["content"]) for moment, event in events if event["type"] == "delta"]
    assert [text for _, text in deltas] == ["一二", "三四", "五六"]
    # Buffered, all three would land together at the end; streamed, they come 0.4 s apart.
    assert deltas[-1][0] - deltas[0][0] > 0.5
    assert events[-1][0] - deltas[0][0] > 0.5


def test_rate_limit_is_per_client_address_behind_nginx(stack):
    alice, bob = stack.client("127.0.0.2"), stack.client("127.0.0.3")

    def chat(client: requests.Session, **headers: str) -> requests.Response:
        return client.post(stack.url("/api/chat"), json={"message": "你好"}, headers={**BEARER, **headers}, timeout=30)

    assert chat(alice).status_code == 200
    assert chat(alice).status_code == 200
    refused = chat(alice)
    assert refused.status_code == 429
    assert refused.json()["code"] == "rate_limited"
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    # Claiming another address does not help: nginx appends the real one, and the app reads only that.
    assert chat(alice, **{"X-Forwarded-For": "198.51.100.23"}).status_code == 429
    # Another client through the same nginx still has its whole budget: the app sees addresses, not nginx.
    assert chat(bob).status_code == 200
    assert chat(bob).status_code == 200
    assert chat(bob).status_code == 429


def test_login_through_https_sets_a_secure_cookie(stack):
    browser = stack.client("127.0.0.4")
    assert browser.get(stack.url("/api/history"), timeout=30).status_code == 401
    response = browser.post(stack.url("/api/login"), json={"token": TOKEN}, timeout=30)
    assert response.status_code == 200
    assert "Secure" in response.headers["Set-Cookie"]  # the app learnt https from X-Forwarded-Proto
    assert browser.get(stack.url("/api/history"), timeout=30).status_code == 200


def test_headers_pass_through_and_plain_http_redirects(stack):
    browser = stack.client("127.0.0.5")
    page = browser.get(stack.url("/"), timeout=30)
    assert page.status_code == 200
    assert page.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
    assert page.headers["Strict-Transport-Security"].startswith("max-age=")
    assert "nginx/" not in page.headers.get("Server", "")  # server_tokens off
    redirect = browser.get(stack.nginx.http_url + "/api/health", allow_redirects=False, timeout=30)
    assert redirect.status_code == 301
    assert redirect.headers["Location"].startswith("https://")


# ---- limits and TLS of the shipped site ------------------------------------------------------------


def site_number(pattern: str) -> int:
    """A number the shipped site file states, e.g. the burst of its limit_req."""
    found = re.search(pattern, SITE_FILE.read_text())
    assert found, f"{SITE_FILE.name} has no match for {pattern!r}"
    return int(found.group(1))


RATE_PER_SECOND = site_number(r"limit_req_zone .* rate=(\d+)r/s;")
BURST = site_number(r"limit_req zone=\S+ burst=(\d+) nodelay;")
CONNECTIONS = site_number(r"limit_conn \S+ (\d+);")


def assert_refused_by_nginx(response: requests.Response) -> None:
    assert response.status_code == 429
    assert response.headers["Content-Type"].startswith("application/json")
    assert response.json()["code"] == "rate_limited"
    assert response.headers["Retry-After"] == "1"
    assert response.headers["Strict-Transport-Security"].startswith("max-age=")  # a refusal is still HTTPS-only


def test_a_flood_from_one_address_is_refused_while_others_pass(stack):
    flooder, neighbour = stack.client("127.0.0.20"), stack.client("127.0.0.21")
    started, answered, refusal = time.monotonic(), 0, None
    while refusal is None and answered < 100 * BURST:
        response = flooder.get(stack.url("/api/health"), timeout=30)
        if response.status_code == 200:
            answered += 1
        else:
            refusal = response
    elapsed = time.monotonic() - started
    assert refusal is not None, f"{answered} requests in {elapsed:.1f}s and none refused"
    assert_refused_by_nginx(refusal)
    # The burst, plus what the rate refilled while it was spent: not one request more.
    assert BURST <= answered <= BURST + 1 + RATE_PER_SECOND * elapsed
    # Another client is not affected, and the flooder gets through again once its rate refills.
    assert neighbour.get(stack.url("/"), timeout=30).status_code == 200
    wait_until(lambda: flooder.get(stack.url("/api/health"), timeout=30).status_code == 200, 10)


def tls_connection(stack: Stack, address: str, context: ssl.SSLContext | None = None) -> ssl.SSLSocket:
    """A TLS connection from `address` to nginx, verified against the test's certificate."""
    if context is None:
        context = ssl.create_default_context(cafile=str(stack.nginx.certificate))
    raw = socket.create_connection(("127.0.0.1", stack.nginx.https_port), timeout=30, source_address=(address, 0))
    return context.wrap_socket(raw, server_hostname="127.0.0.1")


def test_too_many_requests_in_progress_from_one_address_are_refused(stack):
    """Requests whose body never comes (a slow client) hold a slot each; past the limit nginx refuses at once."""
    held = [tls_connection(stack, "127.0.0.22") for _ in range(CONNECTIONS + 5)]
    head = (
        "POST /api/chat HTTP/1.1\r\nHost: chat.example.com\r\n"
        "Content-Type: application/json\r\nContent-Length: 100\r\n\r\n"
    )
    answers: dict[int, bytes] = {}
    try:
        for connection in held:
            connection.sendall(head.encode())

        def five_answered() -> bool:
            for index, connection in enumerate(held):
                if index not in answers:
                    connection.settimeout(0.01)
                    with contextlib.suppress(TimeoutError, ssl.SSLWantReadError):
                        answers[index] = connection.recv(4096)
            return len(answers) >= 5

        wait_until(five_answered, 15, message="five requests refused")
        five_answered()  # one more look: no sixth answer may have come meanwhile
        assert len(answers) == 5
        assert all(answer.startswith(b"HTTP/1.1 429 ") for answer in answers.values())
    finally:
        for connection in held:
            connection.close()
    # The slots are freed when the slow clients go.
    client = stack.client("127.0.0.22")
    wait_until(lambda: client.get(stack.url("/api/health"), timeout=30).status_code == 200, 15)


def test_tls_is_mozilla_intermediate(stack):
    context = ssl.create_default_context(cafile=str(stack.nginx.certificate))
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers("ECDHE-ECDSA-AES128-GCM-SHA256")
    with tls_connection(stack, "127.0.0.23", context) as connection:
        assert connection.version() == "TLSv1.2"
        assert connection.cipher()[0] == "ECDHE-ECDSA-AES128-GCM-SHA256"
    with tls_connection(stack, "127.0.0.23") as connection:
        assert connection.version() == "TLSv1.3"
    # A CBC cipher that nginx's default list (HIGH:!aNULL:!MD5) still offers is outside the intermediate list.
    context.set_ciphers("ECDHE-ECDSA-AES128-SHA256")
    with pytest.raises(ssl.SSLError):
        tls_connection(stack, "127.0.0.23", context).close()
