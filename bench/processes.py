"""The processes a benchmark runs: a fake upstream in its own process and Gunicorn with the production config."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "out"
sys.path.insert(0, str(ROOT))

from tests.support.fake_upstream import API_KEY, PATH  # noqa: E402
from tests.support.servers import free_port, stop_process_group, wait_until_healthy  # noqa: E402


def short_commit(commit: str) -> str:
    """`commit`'s abbreviated hash (it must name a commit of this repository)."""
    command = ["git", "rev-parse", "--short", f"{commit}^{{commit}}"]
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()


@contextlib.contextmanager
def checkout(commit: str) -> Iterator[Path]:
    """The project's files at `commit` in a temporary folder; `git archive` leaves the repository untouched."""
    with tempfile.TemporaryDirectory(prefix="chat-bench-before-") as folder:
        archive = subprocess.run(["git", "archive", commit], cwd=ROOT, capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", folder], input=archive, check=True)
        yield Path(folder)


def wait_for_port(port: int, process: subprocess.Popen, timeout: float = 15.0) -> None:
    """Block until something accepts connections on 127.0.0.1:`port`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"process exited with {process.returncode} before listening on {port}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on {port} after {timeout}s")


@contextlib.contextmanager
def fake_upstream(latency: float = 0.0) -> Iterator[str]:
    """A fake OpenAI-compatible server in a separate process (so it never takes the client's GIL); yields its URL."""
    port = free_port()
    command = [sys.executable, str(ROOT / "bench" / "upstream.py"), "--port", str(port), "--latency", str(latency)]
    process = subprocess.Popen(
        command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    try:
        wait_for_port(port, process)
        yield f"http://127.0.0.1:{port}{PATH}"
    finally:
        stop_process_group(process)


def app_env(upstream_url: str, history_file: Path, **extra: str) -> dict[str, str]:
    """The production defaults, except the upstream and the data folder."""
    return {"API_KEY": API_KEY, "API_URL": upstream_url, "CHAT_HISTORY_FILE": str(history_file), **extra}


class Server:
    """`gunicorn -c gunicorn.conf.py MODULE:app` from the project root (or `root`), in its own process group."""

    def __init__(self, env: dict[str, str], module: str = "wsgi:app", name: str = "app", root: Path = ROOT):
        self.root = root  # another checkout of the project (bench/run.py --before) runs its own code and config
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        # The bench runs Gunicorn's defaults (WEB_CONCURRENCY, GUNICORN_THREADS) unless the caller's shell sets them.
        self.env = {**os.environ, "HOST": "127.0.0.1", "PORT": str(self.port), "DOTENV_PATH": "/nonexistent", **env}
        self.module = module
        OUT.mkdir(parents=True, exist_ok=True)
        self.log_path = OUT / f"gunicorn-{name}.log"
        self.process: subprocess.Popen | None = None

    def __enter__(self) -> Server:
        command = [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", self.module]
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                command, cwd=self.root, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        wait_until_healthy(self.base_url, 30, self.process)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.process is not None:
            stop_process_group(self.process)

    def worker_pids(self) -> list[int]:
        """The master's children, from /proc."""
        assert self.process is not None
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        return [int(pid) for pid in children.read_text().split()]


def rss_mb(pid: int) -> float:
    """Resident memory of `pid` in MB, from /proc/PID/status."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise ValueError(f"no VmRSS for {pid}")


def warm(base_url: str, count: int = 20) -> None:
    """A few requests so each worker has imported, connected and cached what it needs."""
    with requests.Session() as session:
        for _ in range(count):
            session.get(base_url + "/api/health", timeout=10)


def cpu_seconds(pids: list[int]) -> float:
    """User plus system CPU time used so far by `pids` (all their threads), from /proc/PID/stat."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of the line)
    return total / ticks
