"""Shared fixtures: a fake upstream per session, a fresh app on a real loopback port per test."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from app import create_app
from config import Settings, load_settings
from tests.support.fake_upstream import API_KEY, FakeUpstream
from tests.support.servers import serve_in_thread


@pytest.fixture(scope="session")
def fake_upstream_server() -> Iterator[FakeUpstream]:
    server = FakeUpstream().start()
    yield server
    server.stop()


@pytest.fixture
def upstream(fake_upstream_server: FakeUpstream) -> FakeUpstream:
    """The session's fake upstream with an empty script and request log."""
    fake_upstream_server.reset()
    return fake_upstream_server


def app_env(upstream: FakeUpstream, data_dir: Path, **extra: str) -> dict[str, str]:
    """Environment variables that point the app at the fake upstream and a temporary data folder."""
    return {
        "API_KEY": API_KEY,
        "API_URL": upstream.url,
        "MODEL": "fake/model",
        "CHAT_HISTORY_FILE": str(data_dir / "chat_history.json"),
        "SCHEDULER_ENABLED": "false",
        "TIMEZONE": "Asia/Shanghai",
        "CONNECT_TIMEOUT": "2",
        "READ_TIMEOUT": "2",
        "RETRY_ATTEMPTS": "2",
        "RETRY_MAX_SECONDS": "5",
        "LOG_LEVEL": "INFO",
        **extra,
    }


@pytest.fixture
def make_settings(upstream: FakeUpstream, tmp_path: Path) -> Callable[..., Settings]:
    def make(**env: str) -> Settings:
        return load_settings(app_env(upstream, tmp_path / "data", **env))

    return make


class Api:
    """A user of the HTTP API: a requests session bound to the app's base URL."""

    def __init__(self, base_url: str, settings: Settings):
        self.base_url = base_url
        self.settings = settings
        self.session = requests.Session()

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        return self.session.get(self.base_url + path, timeout=30, **kwargs)

    def post(self, path: str, **kwargs: Any) -> requests.Response:
        return self.session.post(self.base_url + path, timeout=30, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> requests.Response:
        return self.session.delete(self.base_url + path, timeout=30, **kwargs)

    def chat(self, message: Any) -> requests.Response:
        return self.post("/api/chat", json={"message": message})

    def history(self, **params: Any) -> list[dict[str, Any]]:
        response = self.get("/api/history", params=params)
        assert response.status_code == 200, response.text
        return response.json()["messages"]


@pytest.fixture
def serve(make_settings: Callable[..., Settings]) -> Iterator[Callable[..., Api]]:
    """Start the app (built by create_app) on a loopback port; returns an Api for it."""
    stack: list[Any] = []

    def start(**env: str) -> Api:
        settings = make_settings(**env)
        app = create_app(settings)
        context = serve_in_thread(app)
        base_url = context.__enter__()
        stack.append(context)
        return Api(base_url, settings)

    yield start
    for context in reversed(stack):
        context.__exit__(None, None, None)


@pytest.fixture
def api(serve: Callable[..., Api]) -> Api:
    """The app with default test settings."""
    return serve()
