"""Start the app for real: in a thread behind Werkzeug's server, or as a Gunicorn subprocess."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator, Sequence
from http.client import HTTPConnection
from pathlib import Path
from typing import Any

import requests
from flask import Flask
from werkzeug.serving import make_server

from tests.support.waiting import wait_until

ROOT = Path(__file__).resolve().parents[2]
# How often a threaded server checks for shutdown(): stopping one takes at most this long (the default is 0.5 s).
POLL_INTERVAL = 0.05


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def serve_in_thread(app: Flask) -> Iterator[str]:
    """Serve `app` on a loopback port with a threaded Werkzeug server; yields its base URL."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": POLL_INTERVAL}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()


def accepts_connections(address: str, port: int) -> bool:
    """Whether something listens on `port` at `address`: a server bound to 127.0.0.1 refuses one to 127.0.0.2."""
    try:
        with socket.create_connection((address, port), timeout=2):
            return True
    except OSError:
        return False


def stop_process_group(process: subprocess.Popen, signal_number: int = signal.SIGTERM, timeout: float = 20) -> None:
    """Ask a server started with start_new_session=True to stop; after `timeout`, or for anything its
    process group leaves behind (workers), SIGKILL."""
    if process.poll() is None:
        process.send_signal(signal_number)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=timeout)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def wait_until_healthy(base_url: str, timeout: float = 30.0, process: subprocess.Popen | None = None) -> None:
    """Poll GET /api/health until it answers 200; RuntimeError as soon as `process` exits."""

    def healthy() -> bool:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}")
        try:
            return requests.get(f"{base_url}/api/health", timeout=2).status_code == 200
        except requests.RequestException:
            return False

    wait_until(healthy, timeout, message=f"{base_url} healthy")


@contextlib.contextmanager
def server_process(
    command: Sequence[str | Path], *, cwd: Path, env: dict[str, str], port: int, log_path: Path, timeout: float = 30
) -> Iterator[str]:
    """Start a server as a user would (its own process group, output to `log_path`); yield its base URL
    once /api/health answers on 127.0.0.1:`port`, and stop it with whatever it started afterwards."""
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            command, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        base_url = f"http://127.0.0.1:{port}"
        wait_until_healthy(base_url, timeout, process)
        yield base_url
    finally:
        stop_process_group(process)


class Gunicorn:
    """A real Gunicorn master running `wsgi:app` from the project root, with its own environment."""

    def __init__(self, env: dict[str, str], args: list[str], log_path: Path):
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, **env, "PORT": str(self.port), "HOST": "127.0.0.1"}
        self.args = args
        self.log_path = log_path
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 30.0) -> Gunicorn:
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        command = [sys.executable, "-m", "gunicorn", *self.args, "wsgi:app"]
        self.process = subprocess.Popen(
            command, cwd=ROOT, env=self.env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True
        )
        wait_until_healthy(self.base_url, timeout, self.process)
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def worker_pids(self) -> list[int]:
        """Children of the master, read from /proc."""
        children = Path(f"/proc/{self.pid}/task/{self.pid}/children")
        return [int(pid) for pid in children.read_text().split()] if children.exists() else []

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.process is None:
            return
        stop_process_group(self.process)
        self._log.close()

    def __enter__(self) -> Gunicorn:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


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


@contextlib.contextmanager
def one_connection_per_worker(server: Gunicorn, workers: int = 2) -> Iterator[list[HTTPConnection]]:
    """Kept-alive connections (start Gunicorn with a long --keep-alive), one held by each of the `workers`
    workers: new ones until every worker, the last one booted too, has accepted one. Closed afterwards."""
    pinned: dict[int, HTTPConnection] = {}
    opened: list[HTTPConnection] = []

    def every_worker_holds_one() -> bool:
        connection = HTTPConnection("127.0.0.1", server.port, timeout=30)
        opened.append(connection)
        connection.request("GET", "/api/health")
        response = connection.getresponse()
        response.read()
        assert response.status == 200
        worker = worker_holding(connection, server)
        if worker is not None:
            pinned.setdefault(worker, connection)
        return len(pinned) == workers

    try:
        wait_until(every_worker_holds_one, 60, interval=0, message="a connection held by each worker")
        yield list(pinned.values())
    finally:
        for connection in opened:
            connection.close()


class GunicornUser:
    """A user of a Gunicorn-served app's API, beside the page a test drives (one kept-alive session)."""

    def __init__(self, gunicorn: Gunicorn):
        self.gunicorn = gunicorn
        self.base_url = gunicorn.base_url
        self.session = requests.Session()

    def call(self, method: str, path: str, status: int = 200, **kwargs: Any) -> dict:
        response = self.session.request(method, self.base_url + path, timeout=60, **kwargs)
        assert response.status_code == status, response.text
        return response.json()
