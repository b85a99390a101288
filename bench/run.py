"""Benchmarks: the app under real Gunicorn (production config) against a loopback fake upstream.

    .venv/bin/python bench/run.py                    # prints a table and writes bench/results.md
    .venv/bin/python bench/run.py --before 56401e7   # the overhead and concurrency of that commit beside this one

Every figure is a side-by-side comparison taken within one run, interleaved, so that noise from
the machine falls on both sides alike: the app vs a direct call to the upstream, 100 vs 100,000
stored messages, the app vs bare Flask under the same Gunicorn config. With --before, the
overhead and concurrency sections also run the project as it was at that commit (its own code,
gunicorn.conf.py and data layout, this virtualenv), interleaved call by call and burst by burst
with this checkout and the direct calls, so before and after are measured on the same machine at
the same moments.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from history_files import check_against_store, configured_live_limit  # noqa: E402
from measures import (  # noqa: E402
    THIS,
    Row,
    measure_concurrency,
    measure_growth,
    measure_guarded,
    measure_overhead,
    measure_push,
    measure_reminders,
    measure_throughput,
)
from processes import ROOT, checkout, short_commit  # noqa: E402

RESULTS = ROOT / "bench" / "results.md"


def load_average() -> str:
    """The 1, 5 and 15 minute load averages: how busy the machine was (noise) while measuring."""
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def machine() -> dict[str, str]:
    """What the figures were taken on."""
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor() or "unknown",
    )
    gunicorn = subprocess.run([sys.executable, "-m", "gunicorn", "--version"], capture_output=True, text=True)
    return {
        "CPU": model,
        "cores": f"{os.cpu_count()} ({len(os.sched_getaffinity(0))} usable)",
        "Python": platform.python_version(),
        "Gunicorn": gunicorn.stdout.strip() or gunicorn.stderr.strip(),
        "config": (
            f"gunicorn.conf.py, WEB_CONCURRENCY={os.environ.get('WEB_CONCURRENCY', '2 (default)')}, "
            f"GUNICORN_THREADS={os.environ.get('GUNICORN_THREADS', '128 (default)')}, "
            f"HISTORY_LIVE_LIMIT={configured_live_limit()}"
        ),
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "filesystem of the history": filesystem_of(Path(tempfile.gettempdir())),
    }


def filesystem_of(path: Path) -> str:
    result = subprocess.run(["df", "--output=fstype", str(path)], capture_output=True, text=True)
    return result.stdout.split()[-1] if result.returncode == 0 else "unknown"


def table(rows: list[Row]) -> str:
    """The rows as a Markdown table."""
    lines = ["| section | measure | figure | goal | verdict |", "| --- | --- | --- | --- | --- |"]
    lines += [f"| {r.section} | {r.measure} | {r.value} | {r.goal} | {r.verdict} |" for r in rows]
    return "\n".join(lines)


def noise_note(loads: list[str]) -> list[str]:
    """A warning paragraph when the 1-minute load average passed half the cores at any point of the run."""
    busiest = max(float(entry.split()[1]) for entry in loads)
    cores = os.cpu_count() or 1
    if busiest <= 0.5 * cores:
        return []
    return [
        f"**Noisy run**: something else kept the machine busy (1-minute load average up to {busiest:.1f} on "
        f"{cores} cores); read the figures as rough and re-run on a quiet machine.",
        "",
    ]


def write_results(rows: list[Row], info: dict[str, str], loads: list[str], command: str) -> None:
    body = [
        "# Benchmark results",
        "",
        f"Written by `{command.strip()}`; each figure compares things measured interleaved in the same run.",
        "",
        *[f"- **{name}**: {value}" for name, value in info.items()],
        f"- **load average** (1/5/15 min) before each section and at the end: {'; '.join(loads)}",
        "",
        *noise_note(loads),
        table(rows),
        "",
        "## Reading and digging",
        "",
        "- *added* figures are app minus direct, each a percentile of its own interleaved series; the p99 of a",
        "  few hundred samples moves with anything else the machine does, the p50 much less.",
        "- Goals are issue 14's: ≤ 2 ms added per chat and to the first streamed token at p50, and 200",
        "  simultaneous chats against a 2 s upstream within 1.10× of the same burst sent straight to it.",
        "- Rows marked [before: COMMIT] come from `--before COMMIT`: that commit's own code and Gunicorn config,",
        "  run beside this checkout and interleaved with it call by call (overhead) and burst by burst",
        "  (concurrency), against the same upstream and the same direct calls.",
        "- The concurrency rows are medians over `--bursts` rounds, each round sending the burst straight to the",
        "  fake upstream (the client's and the fake's share of the wall time) and through each app in turn; the",
        "  CPU the app's workers spent depends much less than wall time on what else runs on the machine.",
        "- Where the time goes: `.venv/bin/python bench/profile_worker.py --breakdown` times sequential chats, then",
        "  samples the worker with py-spy and splits a chat's wall time and CPU by part (Gunicorn, Flask, validation,",
        "  hooks, requests, JSON, logging, history store, turn gate; bench/breakdown.py); add `--before COMMIT` for",
        "  that commit. Without --breakdown it lists the hottest functions (`--cpu` for CPU only); `--burst 200",
        "  --cpu` samples a burst, `--wrk --path /api/history` (or `--module bench.bare_app:app --path",
        "  /bare/page`) a route under wrk.",
        "- What fsync costs: run the benchmark under Debian's `eatmydata`, which turns fsync into a no-op:",
        "  `LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libeatmydata.so .venv/bin/python bench/run.py --only overhead`.",
        "",
    ]
    RESULTS.write_text("\n".join(body))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--chats", type=int, default=300, help="sequential chat pairs for the overhead")
    parser.add_argument("--streams", type=int, default=100, help="sequential stream pairs for time to first token")
    parser.add_argument("--burst", type=int, default=200, help="simultaneous chats")
    parser.add_argument("--stream-burst", type=int, default=100, help="simultaneous streams")
    parser.add_argument("--seconds", type=float, default=3.0, help="length of each throughput run")
    parser.add_argument("--rounds", type=int, default=3, help="throughput runs per target")
    parser.add_argument("--bursts", type=int, default=3, help="bursts per target in the concurrency section")
    parser.add_argument(
        "--before",
        metavar="COMMIT",
        help="also measure this commit's app in the overhead and concurrency sections (e.g. 56401e7)",
    )
    section_names = ["overhead", "guarded", "concurrency", "growth", "throughput", "reminders", "push"]
    parser.add_argument("--only", choices=section_names, action="append")
    parser.add_argument("--no-write", action="store_true", help="print only; leave bench/results.md alone")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="chat-bench-") as folder, contextlib.ExitStack() as checkouts:
        work = Path(folder)
        check_against_store(61, 10, work / "self-check")  # the builder writes what the store would
        apps = {THIS: ROOT}
        if args.before:
            apps[f"before: {short_commit(args.before)}"] = checkouts.enter_context(checkout(args.before))
        sections = {
            "overhead": lambda: measure_overhead(args.chats, args.streams, work, apps),
            "guarded": lambda: measure_guarded(args.chats, work),
            "concurrency": lambda: measure_concurrency(args.burst, args.stream_burst, work, apps, args.bursts),
            "growth": lambda: measure_growth(30, 100, 50, work),
            "throughput": lambda: measure_throughput(args.seconds, args.rounds, work),
            "reminders": lambda: measure_reminders(1000, work),
            "push": lambda: measure_push(20, work),
        }
        rows: list[Row] = []
        loads = []
        for name, run in sections.items():
            if args.only and name not in args.only:
                continue
            loads.append(f"{name} {load_average()}")
            print(f"== {name} (load average {load_average()})", flush=True)
            section_rows = run()
            for row in section_rows:
                print(f"   {row.measure}: {row.value} {row.goal} {row.verdict}", flush=True)
            rows += section_rows
        loads.append(f"end {load_average()}")
    print()
    print(table(rows))
    if not args.no_write:
        write_results(rows, machine(), loads, "python bench/run.py " + " ".join(sys.argv[1:]))
        print(f"\nwritten to {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
