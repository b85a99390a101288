"""How the tests reach the app: the environment that points it at the fake upstream, and an HTTP user of it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import requests

from config import Settings
from history_store import HistoryStore
from tests.support.fake_upstream import API_KEY, FakeUpstream


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


def main_history(data_dir: Path, live_limit: int = 200) -> HistoryStore:
    """The main conversation's history, opened as another worker would open it."""
    return HistoryStore(data_dir / "conversations" / "main.jsonl", live_limit=live_limit, timezone="Asia/Shanghai")


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

    def patch(self, path: str, **kwargs: Any) -> requests.Response:
        return self.session.patch(self.base_url + path, timeout=30, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> requests.Response:
        return self.session.delete(self.base_url + path, timeout=30, **kwargs)

    def chat(self, message: Any) -> requests.Response:
        return self.post("/api/chat", json={"message": message})

    def history(self, **params: Any) -> list[dict[str, Any]]:
        response = self.get("/api/history", params=params)
        assert response.status_code == 200, response.text
        return response.json()["messages"]
