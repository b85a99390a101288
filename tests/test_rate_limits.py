"""Rate limits that hold across Gunicorn workers and servers: the data folder's shared file, or one Redis."""

from __future__ import annotations

import contextlib
import json
import logging
import subprocess
import sys
from collections.abc import Iterator
from http.client import HTTPConnection
from pathlib import Path
from typing import Any

import pytest
import redis
import requests

from rate_limits import LocalStorage
from security import AUTH_FAILURE_LIMIT
from tests.support.client import app_env
from tests.support.fake_upstream import FakeUpstream
from tests.support.redis_server import RedisServer
from tests.support.servers import ROOT, Gunicorn, free_port, one_connection_per_worker
from tests.support.waiting import wait_until

TOKEN = "correct-horse-battery-staple-7f3a9c"


@contextlib.contextmanager
def gunicorn(upstream: FakeUpstream, folder: Path, **env: str) -> Iterator[Gunicorn]:
    """The production start line with its default two workers; keep-alive long enough to pin connections."""
    environment = app_env(upstream, folder / "data", DOTENV_PATH=str(folder / "no.env"), **env)
    args = ["-c", "gunicorn.conf.py", "--keep-alive", "60"]
    folder.mkdir(parents=True, exist_ok=True)
    with Gunicorn(environment, args, folder / "gunicorn.log") as server:
        yield server


def send(connection: HTTPConnection, method: str, path: str, body: Any = None, **headers: str) -> tuple[int, Any]:
    """One request on a kept-alive connection: (status, JSON body)."""
    payload = None if body is None else json.dumps(body)
    connection.request(method, path, body=payload, headers={"Content-Type": "application/json", **headers})
    response = connection.getresponse()
    return response.status, json.loads(response.read() or b"null")


def test_rate_limit_is_exact_across_two_gunicorn_workers(upstream, tmp_path):
    with gunicorn(upstream, tmp_path, RATE_LIMIT="5/minute") as server, one_connection_per_worker(server) as workers:
        answers = [send(workers[n % 2], "POST", "/api/chat", {"message": f"第{n}条"}) for n in range(12)]
    assert [status for status, _ in answers] == [200] * 5 + [429] * 7  # not 5 from each worker
    assert {body["code"] for status, body in answers if status == 429} == {"rate_limited"}
    assert (tmp_path / "data" / "rate_limits.sqlite3").stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize("loss", ["deleted", "damaged"])
def test_the_local_file_is_made_again_when_lost_and_limits_stay_exact(upstream, tmp_path, loss):
    path = tmp_path / "data" / "rate_limits.sqlite3"
    with gunicorn(upstream, tmp_path, RATE_LIMIT="3/minute") as server, one_connection_per_worker(server) as workers:

        def chats(count: int) -> list[int]:
            return [send(workers[n % 2], "POST", "/api/chat", {"message": f"第{n}条"})[0] for n in range(count)]

        assert chats(4) == [200] * 3 + [429]
        if loss == "deleted":
            path.unlink()
        else:
            path.write_bytes(b"not a database, whatever it was " * 256)
        after = chats(8)
    # Counts start again from nothing, but shared: not three per worker in each one's memory.
    assert after == [200] * 3 + [429] * 5
    assert path.stat().st_mode & 0o777 == 0o600
    assert f"Rate-limit file {path} was {loss if loss == 'damaged' else 'removed'}" in server.log_text()


def test_wrong_tokens_are_counted_across_gunicorn_workers(upstream, tmp_path):
    allowed = int(AUTH_FAILURE_LIMIT.split("/")[0])
    with gunicorn(upstream, tmp_path, ACCESS_TOKEN=TOKEN) as server, one_connection_per_worker(server) as workers:
        statuses = [
            send(workers[n % 2], "GET", "/api/history", Authorization=f"Bearer guess-{n}")[0]
            for n in range(allowed + 2)
        ]
    assert statuses == [401] * allowed + [429] * 2


def test_two_gunicorn_servers_share_one_count_in_redis(upstream, tmp_path):
    with (
        RedisServer(tmp_path / "redis") as redis_server,
        gunicorn(upstream, tmp_path / "one", RATE_LIMIT="5/minute", RATE_LIMIT_STORAGE=redis_server.url) as one,
        gunicorn(upstream, tmp_path / "two", RATE_LIMIT="5/minute", RATE_LIMIT_STORAGE=redis_server.url) as two,
    ):
        servers = [one, two]  # separate data folders: only Redis is shared
        statuses = [
            requests.post(servers[n % 2].base_url + "/api/chat", json={"message": f"第{n}条"}, timeout=30).status_code
            for n in range(10)
        ]
    assert statuses == [200] * 5 + [429] * 5


def test_an_unreachable_redis_at_start_up_counts_in_memory_with_one_warning(serve, upstream, caplog):
    with caplog.at_level(logging.INFO, logger="rate_limits"):
        api = serve(RATE_LIMIT="2/minute", RATE_LIMIT_STORAGE=f"redis://:s3cret@127.0.0.1:{free_port()}/0")
        statuses = [api.chat(f"第{n}条").status_code for n in range(3)]
    assert statuses == [200, 200, 429]  # still limited, in this process's memory
    said = [record for record in caplog.records if record.name == "rate_limits"]
    assert [record.levelname for record in said] == ["WARNING"]
    assert "redis://127.0.0.1:" in said[0].getMessage() and "does not answer at start-up" in said[0].getMessage()
    assert "s3cret" not in caplog.text


def test_redis_failing_mid_way_never_fails_a_request(serve, upstream, tmp_path, caplog):
    with RedisServer(tmp_path / "redis") as redis_server:
        api = serve(RATE_LIMIT="3/minute", RATE_LIMIT_STORAGE=redis_server.url)
        assert api.chat("第一条").status_code == 200
    with caplog.at_level(logging.WARNING, logger="rate_limits"):
        answers = [api.chat(f"第{n}条") for n in range(4)]
    # The call counted in Redis is forgotten: memory starts empty, so three more pass, then 429.
    assert [answer.status_code for answer in answers] == [200, 200, 200, 429], answers[-1].text
    assert answers[-1].json()["code"] == "rate_limited"
    assert len([record for record in caplog.records if "Rate-limit storage" in record.getMessage()]) == 1


COUNTING_PROCESS = """
import sys
from pathlib import Path
from rate_limits import LocalStorage

storage = LocalStorage(Path(sys.argv[1]))
granted = sum(storage.acquire_entry("budget/client", 50, 60) for _ in range(40))
print(granted)
"""


def test_the_local_file_grants_exactly_the_limit_to_processes_counting_at_once(tmp_path):
    path = tmp_path / "rate_limits.sqlite3"
    command = [sys.executable, "-c", COUNTING_PROCESS, str(path)]
    processes = [subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, text=True) for _ in range(4)]
    granted = [int(process.communicate(timeout=120)[0]) for process in processes]
    assert sum(granted) == 50  # 160 attempts at once, never one more than the limit
    assert LocalStorage(path).get_moving_window("budget/client", 50, 60)[1] == 50


def test_counts_are_shared_again_once_redis_is_back(serve, upstream, tmp_path, caplog):
    redis_server = RedisServer(tmp_path / "redis").start()
    try:
        api = serve(RATE_LIMIT="100/minute", RATE_LIMIT_STORAGE=redis_server.url)
        redis_server.stop()
        with caplog.at_level(logging.INFO, logger="rate_limits"):
            assert api.chat("Redis 停了").status_code == 200
            redis_server.start()  # the same port
            # Tried again every STORAGE_RETRY_SECONDS: wait for a request that finds it back.
            wait_until(
                lambda: api.chat("还在吗").status_code == 200 and "counts are shared again" in caplog.text,
                60,
                interval=1,
                message="the storage taken back",
            )
        keys = redis.Redis(host="127.0.0.1", port=redis_server.port).keys("LIMITS*")
        assert keys, "the calls after the return were counted in Redis"
    finally:
        redis_server.stop()


@pytest.mark.parametrize("storage", ["", "redis"])
def test_without_rate_limit_or_token_nothing_is_counted_anywhere(serve, upstream, caplog, storage):
    unreachable = {"RATE_LIMIT_STORAGE": f"redis://127.0.0.1:{free_port()}/0"} if storage else {}
    with caplog.at_level(logging.INFO, logger="rate_limits"):
        api = serve(**unreachable)
        assert [api.chat(f"第{n}条").status_code for n in range(3)] == [200] * 3
        assert api.get("/api/history", headers={"Authorization": "Bearer a-wrong-token"}).status_code == 200
    assert not (api.settings.data_dir / "rate_limits.sqlite3").exists()
    assert "Rate-limit storage" not in caplog.text  # an unreachable Redis is not even tried
