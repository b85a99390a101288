"""Fault drills through real Gunicorn (production config): what a user sees when things break, and recovery.

- every upstream fault, plain and streaming: the right status or SSE error event, a clear message
  and code, no wait beyond the configured timeouts, and the next turn works;
- kill -9 of the workers in the middle of a burst: every answered chat is in the history, whole;
- a full or read-only data folder (a small tmpfs mounted here): 503 `storage_unavailable`,
  nothing stored is damaged, and chat works again once space returns.

The fault table (status, code, message, time taken) is printed at the end of the module and
written to test-artifacts/fault-table.md.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.support.client import app_env
from tests.support.fake_upstream import FakeUpstream
from tests.support.servers import ROOT, Gunicorn, free_port
from tests.support.waiting import wait_until

pytestmark = pytest.mark.slow

READ_TIMEOUT = 1.0
RETRY_MAX_SECONDS = 2.0
# No fault may keep a user waiting longer than one read timeout plus the whole retry budget.
WORST_WAIT = READ_TIMEOUT + RETRY_MAX_SECONDS
DRILL_ENV = {
    "READ_TIMEOUT": str(READ_TIMEOUT),
    "CONNECT_TIMEOUT": "1",
    "RETRY_ATTEMPTS": "1",
    "RETRY_MAX_SECONDS": str(RETRY_MAX_SECONDS),
    "WEB_CONCURRENCY": "2",
    "GUNICORN_THREADS": "16",
    "GUNICORN_GRACEFUL_TIMEOUT": "2",
}
FAULT_TABLE: list[tuple[str, str, str, str, str, str]] = []


def start_gunicorn(env: dict[str, str], log_path: Path) -> Gunicorn:
    """The production start line: `gunicorn -c gunicorn.conf.py wsgi:app` (Gunicorn() picks the port)."""
    return Gunicorn({**env, "DOTENV_PATH": "/nonexistent"}, ["-c", "gunicorn.conf.py"], log_path).start()


def sse_events(response: requests.Response) -> list[dict[str, Any]]:
    return [json.loads(line[6:]) for line in response.iter_lines() if line.startswith(b"data: ")]


@dataclass
class Outcome:
    """What the user got for one turn: HTTP status, and the error (JSON body or SSE error event)."""

    status: int
    code: str | None
    message: str
    seconds: float
    events: list[dict[str, Any]] = field(default_factory=list)
    retry_after: str | None = None


def take_turn(base_url: str, stream: bool, message: str = "你好") -> Outcome:
    """One chat turn as the page would take it, timed."""
    started = time.monotonic()
    path = "/api/chat/stream" if stream else "/api/chat"
    response = requests.post(base_url + path, json={"message": message}, stream=stream, timeout=30)
    if response.headers.get("Content-Type", "").startswith("text/event-stream"):
        events = sse_events(response)
        errors = [e for e in events if e["type"] == "error"]
        seconds = time.monotonic() - started
        if errors:
            return Outcome(response.status_code, errors[-1]["code"], errors[-1]["error"], seconds, events)
        return Outcome(response.status_code, None, events[-1]["message"]["content"], seconds, events)
    body = response.json()
    seconds = time.monotonic() - started
    if response.ok:
        return Outcome(response.status_code, None, body["reply"], seconds)
    return Outcome(
        response.status_code, body["code"], body["error"], seconds, retry_after=response.headers.get("Retry-After")
    )


# ---- the upstream fault matrix ------------------------------------------------------------


@dataclass
class Fault:
    """A scripted upstream behaviour and what the user must see because of it."""

    name: str
    script: list[dict[str, Any]]
    status: int
    code: str
    says: str  # a phrase the message must contain, so it tells the user what happened
    streams_mid_reply: bool = False  # the fault strikes after the stream started: 200 + an SSE error event


def status_fault(status: int, times: int, **headers: str) -> list[dict[str, Any]]:
    body = {"error": {"message": f"scripted {status}"}}
    return [{"kind": "status", "status": status, "body": body, "headers": headers}] * times


# Retryable faults are scripted once per attempt (RETRY_ATTEMPTS=1: two attempts) so none is left over.
FAULTS = [
    Fault("401 Unauthorized", status_fault(401, 1), 502, "upstream_auth_failed", "HTTP 401"),
    Fault("403 Forbidden", status_fault(403, 1), 502, "upstream_auth_failed", "HTTP 403"),
    Fault(
        "429 with Retry-After: 1",
        status_fault(429, 2, **{"Retry-After": "1"}),
        429,
        "upstream_rate_limited",
        "HTTP 429",
    ),
    Fault("500 Internal Server Error", status_fault(500, 2), 502, "upstream_error", "HTTP 500"),
    Fault("503 Service Unavailable", status_fault(503, 2), 502, "upstream_error", "HTTP 503"),
    Fault("slow past READ_TIMEOUT (3 s before headers)", [{"delay": 3}], 504, "upstream_timeout", "did not answer"),
    Fault("hangs up without answering", [{"kind": "hang_up"}] * 2, 502, "upstream_unreachable", "cannot be reached"),
]
PLAIN_ONLY = [Fault("malformed JSON body", [{"kind": "malformed"}], 502, "upstream_bad_response", "not valid")]
STREAM_ONLY = [
    Fault(
        "stream cut mid-way",
        [{"content": "半句话就断了", "ending": "cut"}],
        200,
        "upstream_incomplete",
        "finish",
        streams_mid_reply=True,
    ),
    Fault(
        "malformed chunk mid-stream",
        [{"content": "好", "ending": "bad_chunk"}],
        200,
        "upstream_bad_response",
        "malformed",
        streams_mid_reply=True,
    ),
    Fault(
        "stalls mid-stream past READ_TIMEOUT",
        [{"content": "慢慢地说", "chunk_delay": 3}],
        200,
        "upstream_timeout",
        "did not answer",
        streams_mid_reply=True,
    ),
]
MATRIX = [pytest.param(f, False, id=f"chat-{f.name}") for f in FAULTS + PLAIN_ONLY] + [
    pytest.param(f, True, id=f"stream-{f.name}") for f in FAULTS + STREAM_ONLY
]


@pytest.fixture(scope="module")
def fault_table(request: pytest.FixtureRequest) -> Iterator[list]:
    """Collects one row per fault; prints the table and saves it when the module is done."""
    yield FAULT_TABLE
    if not FAULT_TABLE:
        return
    lines = ["| fault | endpoint | status | code | message | seconds |", "| --- | --- | --- | --- | --- | --- |"]
    lines += ["| " + " | ".join(row) + " |" for row in FAULT_TABLE]
    artifacts = ROOT / "test-artifacts"
    artifacts.mkdir(exist_ok=True)
    (artifacts / "fault-table.md").write_text("\n".join(lines) + "\n")
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if reporter is not None and capture is not None:
        with capture.global_and_fixture_disabled():  # shown on a passing run too, not only on failure
            reporter.write_line("\n\nUpstream fault table (also in test-artifacts/fault-table.md):")
            for line in lines:
                reporter.write_line(line)


@pytest.fixture(scope="module")
def drill_app(fake_upstream_server: FakeUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gunicorn]:
    """One Gunicorn for the whole matrix, pointed at the session's fake upstream."""
    folder = tmp_path_factory.mktemp("drills")
    server = start_gunicorn(app_env(fake_upstream_server, folder / "data", **DRILL_ENV), folder / "gunicorn.log")
    yield server
    server.stop()


def record(fault: str, stream: bool, outcome: Outcome) -> None:
    endpoint = "/api/chat/stream" if stream else "/api/chat"
    status = str(outcome.status) + (" + SSE error event" if outcome.events and outcome.code else "")
    if outcome.retry_after:
        status += f" (Retry-After: {outcome.retry_after})"
    FAULT_TABLE.append(
        (fault, endpoint, status, outcome.code or "", outcome.message.replace("|", "/"), f"{outcome.seconds:.2f}")
    )


@pytest.mark.parametrize(("fault", "stream"), MATRIX)
def test_upstream_fault_gives_clear_error_in_bounded_time_and_next_turn_works(
    drill_app, upstream, fault_table, fault, stream
):
    upstream.script(*fault.script)
    outcome = take_turn(drill_app.base_url, stream)
    record(fault.name, stream, outcome)

    assert (outcome.status, outcome.code) == (fault.status, fault.code), outcome
    assert fault.says in outcome.message
    assert outcome.seconds <= WORST_WAIT + 0.75, f"the user waited {outcome.seconds:.2f}s"
    if fault.code == "upstream_rate_limited":
        assert outcome.retry_after == "1"
    if stream and fault.streams_mid_reply:
        assert outcome.events[0]["type"] == "start" and outcome.events[-1]["type"] == "error"

    after = take_turn(drill_app.base_url, stream, "再试一次")
    assert (after.status, after.code, after.message) == (200, None, "收到：再试一次")


def test_unreachable_upstream_gives_502_quickly_and_recovers(upstream, tmp_path, fault_table):
    """API_URL points at a closed port (connection refused); fixing it and restarting brings chat back."""
    closed = f"http://127.0.0.1:{free_port()}/v1/chat/completions"
    env = app_env(upstream, tmp_path / "data", **DRILL_ENV)
    server = start_gunicorn({**env, "API_URL": closed}, tmp_path / "gunicorn.log")
    try:
        for stream in (False, True):
            outcome = take_turn(server.base_url, stream)
            record("connection refused (API_URL on a closed port)", stream, outcome)
            assert (outcome.status, outcome.code) == (502, "upstream_unreachable"), outcome
            assert "cannot be reached" in outcome.message and "127.0.0.1" in outcome.message
            assert outcome.seconds <= WORST_WAIT + 0.75
    finally:
        server.stop()
    server = start_gunicorn(env, tmp_path / "gunicorn.log")
    try:
        assert take_turn(server.base_url, False, "好了吗").status == 200
        # The failed questions stay in the history, each with the record of its failure; the answered one has its reply.
        messages = requests.get(server.base_url + "/api/history", timeout=10).json()["messages"]
        assert [(m["content"], m.get("error_code")) for m in messages] == [
            ("你好", None),
            ("", "upstream_unreachable"),
            ("你好", None),
            ("", "upstream_unreachable"),
            ("好了吗", None),
            ("收到：好了吗", None),
        ]
    finally:
        server.stop()


# ---- kill -9 in the middle of a burst ----------------------------------------------------


def read_whole_history(data_dir: Path) -> list[dict[str, Any]]:
    """Every stored message, read straight from the files: the archives, then the live log.

    A worker killed mid-rotation can leave an archive that repeats messages still in the live log
    (the store skips that overlap when paging); here a repeat must be an identical copy. Every line
    of the log parses.
    """
    by_id: dict[int, dict[str, Any]] = {}
    lines = (data_dir / "conversations" / "main.jsonl").read_text().splitlines()
    records = list(map(json.loads, lines))
    live = [record for record in records if "role" in record]
    for record in records:  # a streamed reply: its `streaming` message, then the line that finishes it
        if "finish" in record:
            message = next(m for m in live if m["id"] == record["finish"])
            message.pop("streaming")
            message.update(record["fields"])
    for archive in sorted((data_dir / "conversations" / "main-archive").glob("*.json")):
        for message in json.loads(archive.read_text())["messages"]:
            assert by_id.setdefault(message["id"], message) == message, "one id, two different messages"
    for message in live:
        assert by_id.setdefault(message["id"], message) == message, "one id, two different messages"
    return [by_id[number] for number in sorted(by_id)]


def wait_for_new_workers(server: Gunicorn, killed: set[int], count: int, timeout: float = 20) -> None:
    """Until Gunicorn has `count` workers again, none of them `killed`, and answers health checks."""

    def replaced() -> bool:
        workers = set(server.worker_pids())
        if len(workers) != count or workers & killed:
            return False
        with contextlib.suppress(requests.RequestException):
            return requests.get(server.base_url + "/api/health", timeout=2).ok
        return False

    wait_until(replaced, timeout, interval=0.1, message="Gunicorn replacing its killed workers")


def test_kill_9_of_workers_mid_burst_loses_no_answered_turn(tmp_path):
    upstream = FakeUpstream(latency=0.3).start()  # replies take a while, so turns are in flight when killed
    data_dir = tmp_path / "data"
    server = start_gunicorn(app_env(upstream, data_dir, **DRILL_ENV), tmp_path / "gunicorn.log")
    answered: dict[str, dict[str, Any]] = {}
    failed: list[str] = []
    try:

        def chat(number: int) -> None:
            text = f"第{number}条并发消息"
            try:
                response = requests.post(server.base_url + "/api/chat", json={"message": text}, timeout=30)
            except requests.RequestException as error:
                failed.append(type(error).__name__)
                return
            if response.status_code == 200:
                answered[text] = response.json()["message"]
            else:
                failed.append(str(response.status_code))

        with ThreadPoolExecutor(max_workers=24) as pool:
            futures = [pool.submit(chat, number) for number in range(240)]
            for _ in range(2):  # two massacres, the second while the burst is still going
                time.sleep(0.6)
                killed = set(server.worker_pids())
                for pid in killed:
                    os.kill(pid, signal.SIGKILL)
                wait_for_new_workers(server, killed, 2)
            for future in futures:
                future.result(timeout=60)

        print(f"answered {len(answered)}, failed {len(failed)}: {sorted(set(failed))}")
        assert failed, "no request was in flight when the workers died; the drill proved nothing"
        assert len(answered) >= 30, f"only {len(answered)} chats were answered: {failed[:5]}"
        stored = read_whole_history(data_dir)  # parses, or this raises
        by_id = {m["id"]: m for m in stored}
        for text, reply in answered.items():
            assert by_id[reply["id"]] == reply
            question = by_id[reply["reply_to"]]
            assert (question["role"], question["content"]) == ("user", text)
        through_api = requests.get(server.base_url + "/api/history", params={"limit": 500}, timeout=10).json()
        assert through_api["messages"] == stored[-len(through_api["messages"]) :]
        assert not list(data_dir.glob("conversations/.main.jsonl.*.tmp")), "a temp file was left behind"
    finally:
        server.stop()
        upstream.stop()


# ---- a full or read-only data folder ---------------------------------------------------------


@contextlib.contextmanager
def tmpfs(path: Path, size: str) -> Iterator[Path]:
    """A small tmpfs of our own at `path` (needs root and CAP_SYS_ADMIN, as in CI)."""
    path.mkdir(parents=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True, text=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({mounted.stderr.strip()}); the storage drill needs root")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def remount(path: Path, mode: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{mode}", str(path)], check=True)


def fill(folder: Path) -> Path:
    """Write a filler file until the file system says it is full; returns it so it can be removed."""
    filler = folder / "filler.bin"
    block = b"\0" * 4096
    with open(filler, "wb", buffering=0) as out:
        try:
            while True:
                out.write(block)
        except OSError as error:
            assert error.errno == errno.ENOSPC, error
    return filler


def assert_storage_refused(base_url: str) -> None:
    for path in ("/api/chat", "/api/chat/stream"):
        response = requests.post(base_url + path, json={"message": "存不下"}, timeout=10)
        assert response.status_code == 503, (path, response.text)
        assert response.json()["code"] == "storage_unavailable"
        assert "cannot be saved" in response.json()["error"]


def test_full_or_read_only_data_folder_answers_503_and_recovers(upstream, tmp_path):
    with tmpfs(tmp_path / "data", "512k") as data_dir:
        server = start_gunicorn(app_env(upstream, data_dir, **DRILL_ENV), tmp_path / "gunicorn.log")
        try:
            for text in ("第一条", "第二条"):
                assert take_turn(server.base_url, False, text).status == 200
            live = data_dir / "conversations" / "main.jsonl"
            before = live.read_bytes()
            history = requests.get(server.base_url + "/api/history", timeout=10).json()["messages"]

            filler = fill(data_dir)
            # An append may still fit in the log's last, partly used block: those turns are answered and
            # stored. Once it is full, turns are refused and the log is left whole.
            squeezed_in = []
            for number in range(300):
                response = requests.post(server.base_url + "/api/chat", json={"message": f"满了{number}"}, timeout=10)
                if response.status_code != 200:
                    break
                squeezed_in.append(f"满了{number}")
            else:
                raise AssertionError("a full file system never refused a turn")
            stored = live.read_bytes()
            assert_storage_refused(server.base_url)
            after = live.read_bytes()
            assert after.startswith(stored) and after.endswith(b"\n"), "a refused turn rewrote the log or tore it"
            # What a refused turn may keep: its question, whole, so the page can offer Retry; never a reply.
            assert all(json.loads(line)["role"] == "user" for line in after[len(stored) :].splitlines())
            assert stored.startswith(before), "the log was rewritten"
            listed = requests.get(server.base_url + "/api/history", timeout=10).json()["messages"]
            assert listed[: len(history)] == history
            assert not list(data_dir.glob("conversations/.main.jsonl.*.tmp")), "a temp file was left behind"
            filler.unlink()
            assert take_turn(server.base_url, False, "空间回来了").message == "收到：空间回来了"
            assert take_turn(server.base_url, True, "流式也好了").message == "收到：流式也好了"

            before = live.read_bytes()
            remount(data_dir, "ro")
            try:
                assert_storage_refused(server.base_url)
                assert requests.get(server.base_url + "/api/history", timeout=10).status_code == 200
            finally:
                remount(data_dir, "rw")
            assert live.read_bytes() == before
            assert take_turn(server.base_url, False, "可以写了").status == 200
            contents = [m["content"] for m in read_whole_history(data_dir)]
            answered_while_full = [m for m in contents if "满了" in m]
            for text in squeezed_in:  # answered while the disk was full: stored, question and reply
                assert answered_while_full.count(text) == 1 and answered_while_full.count("收到：" + text) == 1
            # A refused turn may have kept its question (for Retry), never its reply; the rest is there, in order.
            assert [m for m in answered_while_full if m.startswith("收到：")] == ["收到：" + t for t in squeezed_in]
            contents = [m for m in contents if "满了" not in m and m != "存不下"]  # refused questions, kept
            assert contents == [
                "第一条",
                "收到：第一条",
                "第二条",
                "收到：第二条",
                "空间回来了",
                "收到：空间回来了",
                "流式也好了",
                "收到：流式也好了",
                "可以写了",
                "收到：可以写了",
            ]
        finally:
            server.stop()
