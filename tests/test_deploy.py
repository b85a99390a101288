"""Deployment files without a Docker engine: lint the Dockerfile, validate the compose file against the
Compose specification, run the image's exact CMD and HEALTHCHECK from the repo root, verify the unit."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import requests
from ruamel.yaml import YAML

from tests.support.client import app_env
from tests.support.fake_upstream import FakeUpstream
from tests.support.servers import ROOT, Gunicorn, accepts_connections, free_port, server_process
from tests.support.waiting import wait_until

VENV_BIN = Path(sys.executable).parent
DOCKERFILE = ROOT / "Dockerfile"
COMPOSE_FILE = ROOT / "docker-compose.yml"
UNIT_FILE = ROOT / "deploy" / "systemd" / "chat-assistant.service"


def tool(name: str) -> str:
    """A command from the virtualenv (requirements-dev.txt) or, failing that, the PATH."""
    found = shutil.which(name, path=f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    assert found, f"{name} is not installed: pip install -r requirements-dev.txt"
    return found


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, with continuation lines joined and comments dropped."""
    lines = [line for line in DOCKERFILE.read_text().splitlines() if not line.lstrip().startswith("#")]
    joined = re.sub(r"\\\n\s*", " ", "\n".join(lines))
    return [
        (m.group(1).upper(), m.group(2).strip()) for m in re.finditer(r"^\s*([A-Za-z]+)\s+(.*)$", joined, re.MULTILINE)
    ]


def instruction(name: str) -> list[str]:
    return [args for found, args in dockerfile_instructions() if found == name]


def exec_form(arguments: str) -> list[str]:
    """The JSON array of an exec-form CMD, or of a HEALTHCHECK's CMD after its options."""
    command = json.loads(arguments[arguments.index("[") :])
    assert isinstance(command, list) and all(isinstance(part, str) for part in command)
    return command


def load_compose() -> dict:
    return YAML(typ="safe").load(COMPOSE_FILE.read_text())


# ---- Dockerfile -----------------------------------------------------------------------------------


def test_dockerfile_passes_hadolint():
    result = subprocess.run([tool("hadolint"), str(DOCKERFILE)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_installs_requirements_before_copying_the_code():
    steps = dockerfile_instructions()
    names = [name for name, _ in steps]
    assert instruction("FROM") == [instruction("FROM")[0]] and re.match(r"python:3\.11-slim", instruction("FROM")[0])
    copy_requirements = steps.index(("COPY", "requirements.txt ."))
    pip_install = next(i for i, (name, args) in enumerate(steps) if name == "RUN" and "pip install" in args)
    copy_code = steps.index(("COPY", ". ."))
    assert copy_requirements < pip_install < copy_code
    assert "--no-cache-dir -r requirements.txt" in steps[pip_install][1]
    assert names.index("USER") > copy_code


def test_image_runs_as_a_non_root_user_with_data_as_a_volume():
    users = instruction("USER")
    assert users and users[-1].split(":")[0] not in ("root", "0")
    assert exec_form(instruction("VOLUME")[0]) == ["/app/data"]
    assert instruction("WORKDIR") == ["/app"]
    assert "1342" in instruction("EXPOSE")[0]


def test_image_command_is_gunicorn_with_its_config():
    assert exec_form(instruction("CMD")[-1]) == ["gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"]


def test_image_listens_on_every_interface_inside_its_container():
    """The app's own default is loopback; in a container that would be unreachable through the published port."""
    env = dict(pair.split("=", 1) for args in instruction("ENV") for pair in shlex.split(args))
    assert env["HOST"] == "0.0.0.0"
    assert env["PORT"] == "1342"


def test_healthcheck_asks_health_with_python():
    healthcheck = instruction("HEALTHCHECK")[0]
    command = exec_form(healthcheck)
    assert command[0] == "python" and "/api/health" in command[-1]
    assert "curl" not in healthcheck and "wget" not in healthcheck


def test_dockerignore_keeps_secrets_and_state_out_of_the_image():
    ignored = {line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()}
    for entry in (".env", "data/", ".git/", ".venv/", "__pycache__/", "tests/"):
        assert entry in ignored


@pytest.fixture
def image_env(upstream, tmp_path) -> dict[str, str]:
    """The environment the image would give the command, on a free loopback port and a temp data folder."""
    return {
        **os.environ,
        **app_env(upstream, tmp_path / "data"),
        "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",  # gunicorn and python, as in the image
        "DOTENV_PATH": str(tmp_path / "no.env"),  # the image has no .env (.dockerignore)
        "HOST": "127.0.0.1",
        "PORT": str(free_port()),
    }


def test_image_cmd_and_healthcheck_work_outside_a_container(image_env, tmp_path):
    (tmp_path / "data").mkdir()
    healthcheck = exec_form(instruction("HEALTHCHECK")[0])
    cmd = exec_form(instruction("CMD")[-1])

    def healthy() -> bool:
        return subprocess.run(healthcheck, cwd=ROOT, env=image_env, capture_output=True, timeout=10).returncode == 0

    assert not healthy()  # nothing listens yet: the check really fails
    with open(tmp_path / "gunicorn.log", "wb") as log:
        server = subprocess.Popen(
            cmd, cwd=ROOT, env=image_env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:

            def up() -> bool:
                assert server.poll() is None, (tmp_path / "gunicorn.log").read_text()
                return healthy()

            wait_until(up, 30, interval=0.2, message="the HEALTHCHECK passing")
            base_url = f"http://127.0.0.1:{image_env['PORT']}"
            assert requests.post(f"{base_url}/api/chat", json={"message": "容器外"}, timeout=30).status_code == 200
            assert "容器外" in (tmp_path / "data" / "conversations" / "main.jsonl").read_text()
        finally:
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
                server.wait()
    assert server.returncode == 0
    assert not healthy()


# ---- docker-compose.yml ---------------------------------------------------------------------------


def check_compose_schema(path: Path) -> subprocess.CompletedProcess:
    """Validate against the Compose specification's JSON schema, as vendored by check-jsonschema."""
    return subprocess.run(
        [tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_compose_file_matches_the_compose_specification():
    result = check_compose_schema(COMPOSE_FILE)
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_schema_check_catches_a_typo(tmp_path):
    broken = tmp_path / "docker-compose.yml"
    broken.write_text(COMPOSE_FILE.read_text().replace("restart:", "restrat:"))
    assert check_compose_schema(broken).returncode != 0


def test_compose_service_has_what_the_readme_promises():
    services = load_compose()["services"]
    assert len(services) == 1
    service = next(iter(services.values()))
    assert service["build"] == "."
    assert service["env_file"] == ".env"
    # Published on the host's loopback only: nginx on the host is the way in (Docker's ports bypass ufw).
    assert service["ports"] == ["127.0.0.1:1342:1342"]
    assert service["volumes"] == ["./data:/app/data"]
    assert service["restart"] == "unless-stopped"
    assert service["environment"]["HOST"] == "0.0.0.0"
    assert service["environment"]["PORT"] == "1342"


def test_compose_healthcheck_is_the_image_healthcheck():
    test = load_compose()["services"]["chat-assistant"]["healthcheck"]["test"]
    assert test[0] == "CMD"
    assert test[1:] == exec_form(instruction("HEALTHCHECK")[0])


# ---- systemd unit ---------------------------------------------------------------------------------


def unit_settings() -> dict[str, str]:
    settings = {}
    for line in UNIT_FILE.read_text().splitlines():
        if "=" in line and not line.startswith("#"):
            key, value = line.split("=", 1)
            settings[key.strip()] = value.strip()
    return settings


def test_systemd_unit_runs_the_image_command_unprivileged():
    unit = unit_settings()
    workdir = unit["WorkingDirectory"]
    assert unit["ExecStart"] == f"{workdir}/.venv/bin/" + " ".join(exec_form(instruction("CMD")[-1]))
    assert unit["User"] not in ("root", "0")
    assert unit["ReadWritePaths"] == f"{workdir}/data"
    assert unit["ProtectSystem"] == "strict"
    assert unit["Restart"] == "on-failure"


def test_systemd_unit_passes_systemd_analyze_verify(tmp_path):
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed")
    unit = tmp_path / "chat-assistant.service"
    unit.write_text(UNIT_FILE.read_text().replace("/opt/chat-assistant", str(ROOT)))  # so ExecStart exists
    result = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True, timeout=60)
    problems = [line for line in (result.stdout + result.stderr).splitlines() if unit.name in line]
    assert result.returncode == 0 and problems == [], result.stdout + result.stderr


# ---- the app as started by hand ---------------------------------------------------------------------


def environment_without_host(upstream: FakeUpstream, folder: Path, **extra: str) -> dict[str, str]:
    """The test environment with HOST unset and no .env, so the app's own default decides where it listens."""
    env = {key: value for key, value in os.environ.items() if key not in ("HOST", "VIRTUAL_ENV")}
    return {**env, **app_env(upstream, folder / "data"), "DOTENV_PATH": str(folder / "no.env"), **extra}


def test_python_app_py_listens_on_loopback_only_by_default(upstream, tmp_path):
    port = free_port()
    env = environment_without_host(upstream, tmp_path, PORT=str(port))
    with server_process([sys.executable, "app.py"], cwd=ROOT, env=env, port=port, log_path=tmp_path / "app.log"):
        # Bound to 0.0.0.0 it would answer on every address of the machine, 127.0.0.2 among them.
        assert not accepts_connections("127.0.0.2", port)


def test_favicon_answers_without_a_404(serve):
    api = serve(ACCESS_TOKEN="favicon-test-token-0123456789")  # asked before any login: needs no token
    response = api.get("/favicon.ico")
    assert response.status_code == 204
    assert response.content == b""


def test_debug_log_never_shows_a_key_in_the_api_url(upstream, tmp_path):
    secret = "query-key-5f0c2a9e7b1d4c38"
    env = app_env(upstream, tmp_path / "data", API_URL=f"{upstream.url}?key={secret}", LOG_LEVEL="DEBUG")
    with Gunicorn(env, ["-c", "gunicorn.conf.py", "-w", "1"], tmp_path / "gunicorn.log") as server:
        reply = requests.post(f"{server.base_url}/api/chat", json={"message": "调试日志"}, timeout=30)
        assert reply.status_code == 200, reply.text
    log_text = server.log_text()
    assert "DEBUG" in log_text  # the log really is at DEBUG
    assert secret not in log_text


def interpreter(version: str) -> str | None:
    """A python{version} executable: on the PATH (Debian's /usr/bin) or installed by pyenv."""
    candidates = [shutil.which(f"python{version}", path="/usr/local/bin:/usr/bin")]
    candidates += sorted(str(path) for path in Path.home().glob(f".pyenv/versions/{version}*/bin/python{version}"))
    for candidate in filter(None, candidates):
        if subprocess.run([candidate, "--version"], capture_output=True, timeout=30).returncode == 0:
            return candidate
    return None


@pytest.mark.slow
@pytest.mark.parametrize("version", ["3.11", "3.13"])  # the oldest supported, and Debian 13's
def test_app_runs_on_each_supported_python(version, upstream, tmp_path):
    python = interpreter(version)
    if python is None:
        pytest.skip(f"Python {version} is not installed")
    venv = tmp_path / "venv"
    subprocess.run([python, "-m", "venv", str(venv)], check=True, capture_output=True, timeout=120)
    install = subprocess.run(
        [
            venv / "bin" / "python",
            "-m",
            "pip",
            "install",
            "-q",
            "--disable-pip-version-check",
            "-r",
            "requirements.txt",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert install.returncode == 0, install.stderr
    port = free_port()
    env = environment_without_host(upstream, tmp_path, PORT=str(port))
    gunicorn = [venv / "bin" / "gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"]
    log_path = tmp_path / "gunicorn.log"
    with server_process(gunicorn, cwd=ROOT, env=env, port=port, log_path=log_path, timeout=60) as url:
        reply = requests.post(f"{url}/api/chat", json={"message": version}, timeout=30)
    assert reply.status_code == 200 and reply.json()["reply"] == f"收到：{version}"
    running = subprocess.run([venv / "bin" / "python", "--version"], capture_output=True, text=True, check=True)
    assert running.stdout.startswith(f"Python {version}.")


# ---- deploy docs ----------------------------------------------------------------------------------


def doc_lines(*names: str) -> list[str]:
    return [line for name in names for line in (ROOT / name).read_text().splitlines()]


def test_docker_commands_in_the_docs_create_env_first_and_use_compose_v2():
    lines = doc_lines("README.md", "NETWORK_SETUP.md")
    assert not [line for line in lines if "docker-compose up" in line]  # Compose v1 is gone from current Docker
    readme_ups = [line for line in doc_lines("README.md") if "docker compose up" in line]
    assert readme_ups and all("cp .env.example .env" in line for line in readme_ups)  # env_file: .env must exist


def test_systemd_steps_install_venv_support_and_hand_data_over_recursively():
    steps = "\n".join(doc_lines("NETWORK_SETUP.md"))
    assert "sudo apt install python3-venv" in steps
    assert "sudo chown -R chat:chat data" in steps
    assert not re.search(r"chown chat:chat data", steps)
