"""Review of issue 16 (Stop reaches a request not answered yet): each test shows one problem found, with real
sockets, real TLS and the app's own upstream client."""

from __future__ import annotations

import contextlib
import select
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from errors import UpstreamError
from tests.support.nginx import self_signed_certificate
from upstream_client import Cancel, UpstreamClient


class _Listener:
    """A TLS-speaking loopback server; each connection is handled by `handle(tls_socket)` in a thread."""

    def __init__(self, context: ssl.SSLContext):
        self.context = context
        self.socket = socket.create_server(("127.0.0.1", 0))
        self.port = self.socket.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self.socket.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(connection,), daemon=True).start()

    def _serve(self, connection: socket.socket) -> None:
        with contextlib.suppress(OSError), self.context.wrap_socket(connection, server_side=True) as tls:
            self.handle(tls)

    def handle(self, tls: ssl.SSLSocket) -> None:
        raise NotImplementedError

    def close(self) -> None:
        self.socket.close()


class SilentModel(_Listener):
    """An HTTPS model API that reads the request and never answers; `hung_up` is set when the client leaves."""

    def __init__(self, context: ssl.SSLContext):
        super().__init__(context)
        self.hung_up = threading.Event()

    def handle(self, tls: ssl.SSLSocket) -> None:
        try:
            while tls.recv(65536):
                pass
        finally:
            self.hung_up.set()


class HttpsProxy(_Listener):
    """An https:// forward proxy (HTTPS_PROXY=https://…): CONNECT over TLS, then bytes both ways."""

    def handle(self, tls: ssl.SSLSocket) -> None:
        head = b""
        while b"\r\n\r\n" not in head:
            data = tls.recv(4096)
            if not data:
                return
            head += data
        host, port = head.split()[1].decode().rsplit(":", 1)
        with socket.create_connection((host, int(port))) as target:
            tls.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
            while True:
                readable = [tls] if tls.pending() else select.select([tls, target], [], [], 30)[0]
                for source in readable:
                    data = source.recv(65536)
                    if not data:
                        return
                    (target if source is tls else tls).sendall(data)


@pytest.fixture
def tls_context(tmp_path: Path) -> tuple[Path, ssl.SSLContext]:
    cert, key = self_signed_certificate(tmp_path)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    return cert, context


@pytest.fixture
def https_proxy_env(monkeypatch, tls_context) -> Iterator[tuple[HttpsProxy, SilentModel]]:
    cert, context = tls_context
    proxy, model = HttpsProxy(context), SilentModel(context)
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    monkeypatch.setenv("HTTPS_PROXY", f"https://127.0.0.1:{proxy.port}")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(cert))
    yield proxy, model
    proxy.close()
    model.close()


@pytest.mark.parametrize(
    "route",
    [
        "direct",
        "through-an-https-proxy",
    ],
)
def test_stop_through_an_https_proxy_to_an_https_api_ends_the_request(
    make_settings, https_proxy_env, monkeypatch, route
):
    """Through an https:// proxy to an https:// API urllib3 speaks TLS inside TLS: the connection's `sock` is an
    SSLTransport, which has no shutdown(). Cancel.cancel() then raised AttributeError (in Stop's thread: a 500, or
    the death of the `reply-stops` watcher thread, after which no Stop from another worker is seen), and the
    request ran on until the read timeout. The adapter's docstring says HTTP(S) proxies are covered."""
    _, model = https_proxy_env
    if route == "direct":  # the same HTTPS API without the proxy: Stop works (TLS, not TLS in TLS)
        monkeypatch.delenv("HTTPS_PROXY")
    client = UpstreamClient(make_settings(API_URL=f"https://127.0.0.1:{model.port}/v1", READ_TIMEOUT="4"))
    cancel = Cancel()
    failures: list[BaseException] = []

    def stop() -> None:
        try:
            cancel.cancel()
        except BaseException as error:  # what Stop's own thread would die of
            failures.append(error)

    threading.Timer(0.5, stop).start()
    asked = time.monotonic()
    with pytest.raises(UpstreamError) as raised:
        client.stream([{"role": "user", "content": "你好"}], cancel=cancel)
    took = time.monotonic() - asked
    client.close()
    assert failures == [], failures
    assert raised.value.code == "stopped" and took < 2.0, (raised.value.code, took)
    assert model.hung_up.wait(2)


def test_stop_while_the_next_request_is_still_connecting_sends_nothing(make_settings):
    """A tool round's next request, or a retry after a failure to connect, may need a new connection. Stop while
    connect() waits cannot cut it short (the socket is not ours until then), but the request must never go out:
    the socket is handed to the Cancel as soon as it connects, and shut there."""
    listener = socket.create_server(("127.0.0.1", 0), backlog=0)  # accepts nothing at first: once its queue is
    port = listener.getsockname()[1]  # full, a new connect() waits, as to an API behind a slow network
    fillers = [socket.socket() for _ in range(3)]
    for filler in fillers:
        filler.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            filler.connect(("127.0.0.1", port))
    time.sleep(0.2)
    received: list[bytes] = []

    def accept_late() -> None:  # after Stop, the queue drains and the app's connect() succeeds
        time.sleep(1.0)
        listener.settimeout(10)
        for _ in range(len(fillers) + 1):
            with contextlib.suppress(OSError):
                connection, _ = listener.accept()
                connection.settimeout(3)
                with contextlib.suppress(OSError), connection:
                    received.append(connection.recv(65536))

    accepting = threading.Thread(target=accept_late)
    accepting.start()
    client = UpstreamClient(make_settings(API_URL=f"http://127.0.0.1:{port}/v1", CONNECT_TIMEOUT="8"))
    cancel = Cancel()
    threading.Timer(0.5, cancel.cancel).start()
    try:
        with pytest.raises(UpstreamError) as raised:
            client.stream([{"role": "user", "content": "你好"}], cancel=cancel)
    finally:
        client.close()
        for filler in fillers:
            filler.close()
        accepting.join(15)
        listener.close()
    assert raised.value.code == "stopped"
    assert not any(b"chat/completions" in data for data in received), received
