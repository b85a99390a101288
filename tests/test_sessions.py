"""The login cookie: signed with the data folder's secret, one live session per login, shared by every worker."""

from __future__ import annotations

import hashlib
import hmac
import json
import multiprocessing
import stat
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from http.client import HTTPConnection, HTTPResponse
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any

import pytest
from itsdangerous import BadSignature, TimestampSigner

from security import COOKIE_MAX_AGE, COOKIE_NAME, Guard
from sessions import SessionSecret
from tests.support.client import app_env
from tests.support.servers import Gunicorn, one_connection_per_worker

TOKEN = "correct-horse-battery-staple-7f3a9c"


def login(api, token=TOKEN):
    return api.post("/api/login", json={"token": token})


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


def _secret_after(start: threading.Barrier | Any, folder: Path, answers: Any) -> None:
    """In a forked process: wait for the others, then read or make the folder's secret."""
    start.wait()
    answers.put(SessionSecret(folder).value().hex())


def test_workers_starting_together_agree_on_one_secret(tmp_path):
    # Eight processes are released at the same moment into an empty folder, ten times over:
    # one secret wins each time, all eight read it, and no temporary file is left behind.
    forking = multiprocessing.get_context("forkserver")  # forks from a single-threaded server, unlike pytest's
    forking.set_forkserver_preload(["tests.test_sessions"])
    for round_number in range(10):
        folder = tmp_path / str(round_number)
        folder.mkdir()
        start, answers = forking.Barrier(8), forking.Queue()
        processes = [forking.Process(target=_secret_after, args=(start, folder, answers)) for _ in range(8)]
        for process in processes:
            process.start()
        seen = {answers.get(timeout=60) for _ in processes}
        for process in processes:
            process.join(timeout=60)
        assert len(seen) == 1 and len(seen.pop()) == 64, f"round {round_number}"
        assert [path.name for path in folder.iterdir()] == ["session_secret"]


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
    with Gunicorn(env, args, tmp_path / "gunicorn.log") as server, one_connection_per_worker(server) as workers:
        first, second = workers

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


@pytest.mark.parametrize(("age", "status"), [(COOKIE_MAX_AGE + 60, 401), (COOKIE_MAX_AGE - 3600, 200)])
def test_a_cookie_older_than_its_lifetime_is_refused(serve, age, status):
    api = serve(ACCESS_TOKEN=TOKEN)
    # A cookie issued `age` seconds ago: the app's own Guard, on the same data folder, with its clock set back.
    issued_then = Guard(api.settings, clock=lambda: time.time() - age)
    cookie = issued_then.start_session()
    assert api.get("/api/history", cookies={COOKIE_NAME: cookie}).status_code == status
