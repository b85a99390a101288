"""README's run command works from a fresh clone; start_production.sh says what is missing."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from pathlib import Path

import pytest
import requests

from tests.support.servers import ROOT, free_port, stop_process_group, wait_until_healthy


def fresh_copy(target: Path) -> Path:
    """The tracked files of the repository, as a clone would have them (no .venv, no .env, no data)."""
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    for name in filter(None, listed.decode().split("\0")):
        source = ROOT / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    return target


@pytest.mark.slow
def test_run_command_serves_the_app_from_a_fresh_clone(tmp_path):
    clone = fresh_copy(tmp_path / "clone")
    port = free_port()
    env = {key: value for key, value in os.environ.items() if key not in ("API_KEY", "VIRTUAL_ENV")}
    env["PORT"] = str(port)  # the real environment wins over the .env the script creates
    with open(tmp_path / "run.log", "wb") as log:
        process = subprocess.Popen(
            ["bash", "scripts/run.sh"], cwd=clone, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        wait_until_healthy(f"http://127.0.0.1:{port}", timeout=240, process=process)
        page = requests.get(f"http://127.0.0.1:{port}/", timeout=10)
        health = requests.get(f"http://127.0.0.1:{port}/api/health", timeout=10).json()
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=20)
    assert page.status_code == 200 and "<html" in page.text
    assert health["status"] == "ok" and health["chat_configured"] is False
    assert (clone / ".env").read_text() == (clone / ".env.example").read_text()
    assert (clone / ".venv" / "bin" / "python").exists()
    assert "Created .env from .env.example" in (tmp_path / "run.log").read_text()


@pytest.mark.parametrize(
    ("prepare", "advice"),
    [
        ([], "No virtualenv"),
        (["venv"], "No .env file"),
    ],
)
def test_start_production_explains_what_is_missing(tmp_path, prepare, advice):
    clone = fresh_copy(tmp_path / "clone")
    if "venv" in prepare:
        (clone / ".venv" / "bin").mkdir(parents=True)
        (clone / ".venv" / "bin" / "gunicorn").symlink_to(ROOT / ".venv" / "bin" / "gunicorn")
    result = subprocess.run(["bash", "start_production.sh"], cwd=clone, capture_output=True, text=True, timeout=30)
    assert result.returncode == 1
    assert advice in result.stderr


def test_start_production_runs_gunicorn_with_its_config(tmp_path, upstream):
    clone = fresh_copy(tmp_path / "clone")
    (clone / ".venv").symlink_to(ROOT / ".venv")
    port = free_port()
    (clone / ".env").write_text(
        f"API_KEY=sk-test-fake-0123456789abcdef\nAPI_URL={upstream.url}\n"
        f"HOST=127.0.0.1\nPORT={port}\nWEB_CONCURRENCY=2\nSCHEDULER_ENABLED=false\n"
    )
    env = {key: value for key, value in os.environ.items() if key not in ("API_KEY", "PORT", "HOST")}
    with open(tmp_path / "prod.log", "wb") as log:
        process = subprocess.Popen(
            ["bash", "start_production.sh"],
            cwd=clone,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        wait_until_healthy(f"http://127.0.0.1:{port}", timeout=30, process=process)
        reply = requests.post(f"http://127.0.0.1:{port}/api/chat", json={"message": "生产环境"}, timeout=10).json()
    finally:
        # SIGTERM to the master alone: sent to the whole group, it races a worker still being spawned,
        # which then lingers until GUNICORN_GRACEFUL_TIMEOUT.
        stop_process_group(process)
    assert reply["reply"] == "收到：生产环境"
    log_text = (tmp_path / "prod.log").read_text()
    assert "Using worker: gthread" in log_text
    assert (clone / "data" / "chat_history.json").exists()
