"""Time resuming and stopping a reply across two Gunicorn workers (p50/p95/max over --runs).

Real Gunicorn with the production config (two workers), a kept-alive connection pinned to each worker and the
fake upstream on loopback:

- resume: a reply streams slowly on worker A; the client drops after 1 s and asks worker B for the rest with
  Last-Event-ID. Timed from sending the GET to its first replayed event.
- stop: the upstream falls silent for 30 s mid-reply; POST .../stop goes to worker A (the writer's) or to B.
  Timed from sending the stop to its answer (the reply stored `stopped`) and to the upstream seeing its
  connection closed.

    .venv/bin/python bench/resume.py [--runs 20]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support.client import app_env  # noqa: E402
from tests.support.fake_upstream import FakeUpstream  # noqa: E402
from tests.support.servers import Gunicorn, one_connection_per_worker, worker_holding  # noqa: E402
from tests.test_resume import connection_to, events_of, open_events, send  # noqa: E402

PIECES = [f"第{i}句。" for i in range(60)]


def figures(name: str, samples: list[float]) -> None:
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    print(
        f"{name:<48} p50 {1000 * statistics.median(ordered):7.1f} ms   p95 {1000 * p95:7.1f} ms"
        f"   max {1000 * ordered[-1]:7.1f} ms   ({len(ordered)} runs)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=20)
    runs = parser.parse_args().runs
    upstream = FakeUpstream().start()
    folder = Path(tempfile.mkdtemp(prefix="bench-resume-"))
    env = app_env(upstream, folder / "data", DOTENV_PATH=str(folder / "no.env"))
    resumed: list[float] = []
    stops: dict[str, list[float]] = {"same": [], "other": []}
    closed: dict[str, list[float]] = {"same": [], "other": []}
    with Gunicorn(env, ["-c", "gunicorn.conf.py", "--keep-alive", "60"], folder / "gunicorn.log") as server:
        for _ in range(runs):
            upstream.script({"pieces": PIECES, "content": "".join(PIECES), "chunk_delay": 0.05})
            with one_connection_per_worker(server) as (first, other):
                before = list(
                    events_of(
                        open_events(first, "POST", "/api/chat/stream", {"message": "慢慢讲"}),
                        until=time.monotonic() + 1.0,
                    )
                )
                first.close()
                asked = time.monotonic()
                path = f"/api/chat/stream/{before[0]['message_id']}"
                rest = events_of(open_events(other, "GET", path, **{"Last-Event-ID": str(before[-1]["id"])}))
                next(rest)
                resumed.append(time.monotonic() - asked)
                list(rest)
            for where in ("same", "other"):
                upstream.reset()
                upstream.script({"pieces": ["前半", "句话"], "content": "前半句话", "stall_at": 3, "stall": 30})
                with one_connection_per_worker(server) as (first, other):
                    stopper = other if where == "other" else connection_to(server, worker_holding(first, server))
                    events = events_of(open_events(first, "POST", "/api/chat/stream", {"message": "说到一半"}))
                    start = next(events)
                    next(events), next(events)
                    time.sleep(0.3)
                    asked = time.monotonic()
                    status, _ = send(stopper, "POST", f"/api/chat/stream/{start['message_id']}/stop", {})
                    stops[where].append(time.monotonic() - asked)
                    assert status == 200 and upstream.closed_at is not None
                    closed[where].append(upstream.closed_at - asked)
                    list(events)
                    stopper.close()
    upstream.stop()
    figures("resume on the other worker: first event", resumed)
    for where in ("same", "other"):
        figures(f"stop via the {where} worker: answered", stops[where])
        figures(f"stop via the {where} worker: upstream closed", closed[where])


if __name__ == "__main__":
    main()
