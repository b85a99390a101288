"""README's run command works from a fresh clone; start_production.sh says what is missing."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from tests.support.servers import ROOT, accepts_connections, free_port, server_process


def fresh_copy(target: Path) -> Path:
    """The tracked files of the repository, as a clone would have them (no .venv, no .env, no data)."""
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    for name in filter(None, listed.decode().split("\0")):
        source = ROOT / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    return target


def run_script(clone: Path, log_path: Path, port: int) -> contextlib.AbstractContextManager[str]:
    """`bash scripts/run.sh` in the clone as a user would, with only PORT set from outside: its base URL
    once healthy (it may build the venv first), stopped afterwards."""
    env = {key: value for key, value in os.environ.items() if key not in ("API_KEY", "HOST", "VIRTUAL_ENV")}
    env["PORT"] = str(port)  # the real environment wins over the .env the script creates
    return server_process(["bash", "scripts/run.sh"], cwd=clone, env=env, port=port, log_path=log_path, timeout=240)


@pytest.mark.slow
def test_run_command_serves_the_app_from_a_fresh_clone(tmp_path):
    clone = fresh_copy(tmp_path / "clone")
    port = free_port()
    with run_script(clone, tmp_path / "run.log", port) as url:
        page = requests.get(f"{url}/", timeout=10)
        health = requests.get(f"{url}/api/health", timeout=10).json()
        # Loopback only: bound to 0.0.0.0 it would also answer on 127.0.0.2 (and on the network).
        only_loopback = not accepts_connections("127.0.0.2", port)
    assert page.status_code == 200 and "<html" in page.text
    assert health["status"] == "ok" and health["chat_configured"] is False
    assert only_loopback
    assert (clone / ".env").read_text() == (clone / ".env.example").read_text()
    # .env will hold API_KEY and ACCESS_TOKEN: no one but its owner may read it.
    assert stat.S_IMODE((clone / ".env").stat().st_mode) == 0o600
    assert (clone / ".venv" / "bin" / "python").exists()
    assert "Created .env from .env.example" in (tmp_path / "run.log").read_text()


def break_python(venv: Path) -> None:
    """The venv's python points at an interpreter that is gone (e.g. removed by an upgrade)."""
    (venv / "bin" / "python").unlink()
    (venv / "bin" / "python").symlink_to("/nonexistent/python3")


def leave_out_pip(venv: Path) -> None:
    """What `python3 -m venv` leaves when Debian's python3-venv is missing: a python without pip."""
    shutil.rmtree(venv)
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)


@pytest.mark.slow
@pytest.mark.parametrize("damage", [break_python, leave_out_pip], ids=["python-broken", "no-pip"])
def test_run_command_rebuilds_a_half_made_venv(tmp_path, damage):
    clone = fresh_copy(tmp_path / "clone")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(clone / ".venv")], check=True, timeout=120)
    damage(clone / ".venv")
    port = free_port()
    with run_script(clone, tmp_path / "run.log", port):
        pass  # healthy: the venv was rebuilt
    check = subprocess.run([clone / ".venv" / "bin" / "python", "-m", "pip", "--version"], capture_output=True)
    assert check.returncode == 0


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
        f"PORT={port}\nWEB_CONCURRENCY=2\nSCHEDULER_ENABLED=false\n"  # no HOST: the default decides
    )
    env = {key: value for key, value in os.environ.items() if key not in ("API_KEY", "PORT", "HOST")}
    # Stopped by SIGTERM to the master alone: sent to the whole group, it races a worker still being
    # spawned, which then lingers until GUNICORN_GRACEFUL_TIMEOUT.
    with server_process(
        ["bash", "start_production.sh"], cwd=clone, env=env, port=port, log_path=tmp_path / "prod.log"
    ) as url:
        reply = requests.post(f"{url}/api/chat", json={"message": "生产环境"}, timeout=10).json()
        only_loopback = not accepts_connections("127.0.0.2", port)
    assert reply["reply"] == "收到：生产环境"
    assert only_loopback
    log_text = (tmp_path / "prod.log").read_text()
    assert "Using worker: gthread" in log_text
    assert (clone / "data" / "conversations" / "main.jsonl").exists()


def spec_one_liner() -> str:
    """The spec's Gunicorn command, as README quotes it."""
    found = re.search(r"`(gunicorn -w 1 [^`]*wsgi:app)`", (ROOT / "README.md").read_text())
    assert found, "README no longer quotes the spec's gunicorn one-liner"
    return found.group(1)


@pytest.mark.parametrize("command", ["spec-gunicorn", "python app.py"])
def test_spec_commands_work_once_the_venv_is_activated(tmp_path, command):
    clone = fresh_copy(tmp_path / "clone")
    (clone / ".venv").symlink_to(ROOT / ".venv")
    port = free_port()
    # As written, except the port: 1342 may be taken on a shared machine.
    line = spec_one_liner().replace(":1342", f":{port}") if command == "spec-gunicorn" else command
    env = {key: value for key, value in os.environ.items() if key not in ("API_KEY", "HOST", "VIRTUAL_ENV")}
    env.update(PORT=str(port), SCHEDULER_ENABLED="false", PATH="/usr/local/bin:/usr/bin:/bin")
    activated = ["bash", "-c", f"source .venv/bin/activate && exec {line}"]
    with server_process(activated, cwd=clone, env=env, port=port, log_path=tmp_path / "spec.log", timeout=60):
        pass  # healthy is all it takes
