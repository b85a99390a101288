"""A real redis-server (Debian's package) on a free loopback port, for tests of shared rate-limit counts."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import redis

from tests.support.servers import free_port
from tests.support.waiting import wait_until


class RedisServer:
    """redis-server without persistence, started on a free port; `url` is its RATE_LIMIT_STORAGE URI."""

    def __init__(self, folder: Path, port: int | None = None):
        self.folder = folder
        self.port = port or free_port()
        self.url = f"redis://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None

    def start(self) -> RedisServer:
        executable = shutil.which("redis-server") or "/usr/bin/redis-server"
        self.folder.mkdir(parents=True, exist_ok=True)
        command = [executable, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        self._log = open(self.folder / "redis.log", "ab")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(command, cwd=self.folder, stdout=self._log, stderr=subprocess.STDOUT)
        wait_until(self._answers, 20, message=f"redis-server on port {self.port}")
        return self

    def _answers(self) -> bool:
        if self.process is not None and self.process.poll() is not None:
            raise RuntimeError(f"redis-server exited with {self.process.returncode}: see {self.folder / 'redis.log'}")
        try:
            with redis.Redis(port=self.port, socket_connect_timeout=1) as client:
                return bool(client.ping())
        except redis.RedisError:
            return False

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None
        self._log.close()

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
