"""Shared fixtures: a fake upstream per session, a fresh app on a real loopback port per test.

Helpers live in tests/support (import them from there, never from this file); the browser fixtures
(`browser`, `open_page`) come from tests/support/browser.py, registered below as a plugin.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from app import create_app
from config import Settings, load_settings
from tests.support.client import Api, app_env
from tests.support.fake_upstream import FakeUpstream
from tests.support.servers import serve_in_thread

pytest_plugins = ["tests.support.browser"]


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


@pytest.fixture
def make_settings(upstream: FakeUpstream, tmp_path: Path) -> Callable[..., Settings]:
    def make(**env: str) -> Settings:
        return load_settings(app_env(upstream, tmp_path / "data", **env))

    return make


@pytest.fixture
def serve(make_settings: Callable[..., Settings]) -> Iterator[Callable[..., Api]]:
    """Start the app (built by create_app) on a loopback port; returns an Api for it."""
    with contextlib.ExitStack() as running:

        def start(**env: str) -> Api:
            settings = make_settings(**env)
            api = Api(running.enter_context(serve_in_thread(create_app(settings))), settings)
            running.callback(api.session.close)  # before the server stops: no handler thread left waiting
            return api

        yield start


@pytest.fixture
def api(serve: Callable[..., Api]) -> Api:
    """The app with default test settings."""
    return serve()
