"""Start the app for real: in a thread behind Werkzeug's server, or as a Gunicorn subprocess."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

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
