"""Where a chat turn's time goes: py-spy samples the only Gunicorn worker while sequential chats run.

    .venv/bin/python bench/profile_worker.py [--path /api/chat] [--seconds 15] [--stored 1000] [--cpu]
    .venv/bin/python bench/profile_worker.py --wrk --path /api/history     # throughput: the GIL holder only
    .venv/bin/python bench/profile_worker.py --burst 200 --cpu             # 200 simultaneous chats

Prints the functions with the most samples (inclusive and own) and leaves py-spy's collapsed stacks in
bench/out/profile.txt. By default time in system calls (fsync, waiting for the upstream) counts too, as
a single client's latency is made of it; with --wrk only the thread holding the GIL is sampled, as
throughput on a busy worker is bounded by CPU time under the GIL.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))

from breakdown import parts, print_breakdown  # noqa: E402
from history_files import build_legacy_history  # noqa: E402
from processes import OUT, ROOT, Server, app_env, checkout, cpu_seconds, fake_upstream, warm  # noqa: E402


def drive(url: str, method: str, stop: threading.Event, done: list[int] | None = None) -> int:
    """Send requests one after another until `stop`; returns how many (also counted in `done[0]` as they end)."""
    count = 0
    with requests.Session() as session:
        while not stop.is_set():
            if method == "POST":
                response = session.post(url, json={"message": "今天天气怎么样？"}, timeout=30)
            else:
                response = session.get(url, timeout=30)
            response.raise_for_status()
            count += 1
            if done is not None:
                done[0] = count
    return count


def summarise(collapsed: Path, top: int) -> None:
    """Print the `top` functions by inclusive and by own samples, from py-spy's raw (collapsed) output."""
    inclusive: collections.Counter[str] = collections.Counter()
    own: collections.Counter[str] = collections.Counter()
    total = 0
    for line in collapsed.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = stack.split(";")
        if not any("handle_request" in frame for frame in frames):
            continue  # only the request threads, not the accept loop or idle pool threads
        samples = int(count)
        total += samples
        for frame in set(frames):
            inclusive[frame] += samples
        own[frames[-1]] += samples
    print(f"{total} samples in request threads")
    for title, counter in (("inclusive", inclusive), ("own", own)):
        print(f"\n-- top {top} by {title} share")
        for frame, samples in counter.most_common(top):
            print(f"{100 * samples / total:5.1f}%  {frame}")


# requirements-dev.txt installs py-spy into the virtualenv, which need not be on PATH.
RATE = 500  # samples per second

PY_SPY = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or "py-spy"


def record(pids: list[int], seconds: int, sampling: str, name: str = "profile") -> Path:
    """Run py-spy on each of `pids` for `seconds` at once; returns their collapsed stacks, merged."""
    outputs = [OUT / f"{name}-{pid}.txt" for pid in pids]
    spies = [
        subprocess.Popen(
            [
                PY_SPY,
                "record",
                "--pid",
                str(pid),
                "--duration",
                str(seconds),
                "--rate",
                str(RATE),
                sampling,
                "--format",
                "raw",
                "--output",
                str(output),
                "--nonblocking",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for pid, output in zip(pids, outputs, strict=True)
    ]
    for spy in spies:
        spy.wait()
    merged = OUT / f"{name}.txt"
    merged.write_text("".join(output.read_text() for output in outputs if output.exists()))
    return merged


def breakdown(server: Server, path: str, method: str, seconds: int, stop: threading.Event) -> None:
    """Sequential requests while py-spy samples the worker twice at once: every request thread (wall time,
    waits included) and the GIL holder (CPU); prints both split by part, and the CPU /proc counted."""
    done = [0]
    client = threading.Thread(target=drive, args=(server.base_url + path, method, stop, done))
    client.start()
    time.sleep(1)
    pids = server.worker_pids()
    first, cpu_before, started = done[0], cpu_seconds(pids), time.perf_counter()
    time.sleep(seconds)
    count, cpu, elapsed = done[0] - first, cpu_seconds(pids) - cpu_before, time.perf_counter() - started
    print(f"without py-spy: {count} requests to {path} in {elapsed:.1f} s, {elapsed / count * 1000:.2f} ms each")
    print(f"  worker CPU (user + system, /proc): {cpu / count * 1000:.2f} ms per request")
    spies = {name: OUT / f"{name}.txt" for name in ("wall", "cpu")}
    threads = [
        threading.Thread(target=record, args=(pids, seconds, sampling, name))
        for name, sampling in (("wall", "--idle"), ("cpu", "--gil"))
    ]
    first, cpu_before, started = done[0], cpu_seconds(pids), time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    count, cpu, elapsed = done[0] - first, cpu_seconds(pids) - cpu_before, time.perf_counter() - started
    stop.set()
    client.join()
    print(f"with py-spy: {count} requests to {path} in {elapsed:.1f} s, {elapsed / count * 1000:.2f} ms each")
    print(f"  worker CPU (user + system, /proc): {cpu / count * 1000:.2f} ms per request")
    print_breakdown(parts(spies["wall"], requests_only=True), RATE, count, "wall time in request threads")
    print_breakdown(parts(spies["cpu"], requests_only=False), RATE, count, "CPU under the GIL, every thread")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--path", default="/api/chat")
    parser.add_argument("--seconds", type=int, default=15)
    parser.add_argument("--stored", type=int, default=1000)
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument(
        "--wrk",
        action="store_true",
        help="drive a GET route with wrk and sample only the thread holding the GIL (throughput)",
    )
    parser.add_argument(
        "--burst",
        type=int,
        default=0,
        help="instead: N simultaneous chats against a 1 s upstream, every worker sampled",
    )
    parser.add_argument("--module", default="wsgi:app", help="e.g. bench.bare_app:app to profile the baseline")
    parser.add_argument("--before", metavar="COMMIT", help="profile the app as it was at this commit instead")
    parser.add_argument("--cpu", action="store_true", help="sample only the thread holding the GIL (CPU time)")
    parser.add_argument(
        "--breakdown",
        action="store_true",
        help="sequential requests: wall time and CPU per request, split by part (bench/breakdown.py)",
    )
    args = parser.parse_args()
    method = "POST" if args.path.startswith("/api/chat") else "GET"
    OUT.mkdir(parents=True, exist_ok=True)
    extra = {} if args.burst else {"WEB_CONCURRENCY": "1"}
    with tempfile.TemporaryDirectory(prefix="chat-profile-") as folder, contextlib.ExitStack() as checkouts:
        root = checkouts.enter_context(checkout(args.before)) if args.before else ROOT
        history_file = Path(folder) / "chat_history.json"
        build_legacy_history(history_file, args.stored)  # every commit reads it (this one migrates it at start)
        with (
            fake_upstream(1.0 if args.burst else 0.0) as upstream,
            Server(app_env(upstream, history_file, **extra), args.module, "profile", root) as server,
        ):
            warm(server.base_url)
            if args.burst:
                from measures import burst, chat_sender

                sampling = "--gil" if args.cpu else "--idle"
                spying = threading.Thread(target=lambda: record(server.worker_pids(), args.seconds, sampling))
                spying.start()
                time.sleep(0.5)
                wall, ok, _ = burst(chat_sender(server.base_url + args.path, args.path.endswith("stream")), args.burst)
                spying.join()
                print(f"{ok}/{args.burst} simultaneous requests to {args.path} in {wall:.3f} s")
                summarise(OUT / "profile.txt", args.top)
                title = "CPU under the GIL, every thread" if args.cpu else "wall time in request threads"
                print_breakdown(parts(OUT / "profile.txt", requests_only=not args.cpu), RATE, args.burst, title)
                return
            stop = threading.Event()
            if args.breakdown:
                breakdown(server, args.path, method, args.seconds, stop)
                return
            result: list[int] = []
            if args.wrk:
                command = ["wrk", "-t1", "-c16", f"-d{args.seconds + 2}s", server.base_url + args.path]
                client = threading.Thread(
                    target=lambda: result.append(
                        int(
                            subprocess.run(command, capture_output=True, text=True)
                            .stdout.split(" requests in")[0]
                            .split()[-1]
                        )
                    )
                )
            else:
                client = threading.Thread(
                    target=lambda: result.append(drive(server.base_url + args.path, method, stop))
                )
            client.start()
            time.sleep(1)
            collapsed = record(server.worker_pids(), args.seconds, "--gil" if args.wrk or args.cpu else "--idle")
            stop.set()
            client.join()
    print(f"{result[0]} requests to {args.path} with {args.stored} stored messages")
    summarise(collapsed, args.top)


if __name__ == "__main__":
    main()
