"""A child process for the crash and concurrency tests: appends messages and prints each acknowledged one.

    python -m tests.support.append_worker PATH PREFIX COUNT [THREADS] [LIVE_LIMIT]

A line `ack <content>` is printed (and flushed) only after `append` returned, so the parent knows
exactly which writes were acknowledged when it kills this process.
"""

from __future__ import annotations

import sys
import threading
from pathlib import Path

from history_store import HistoryStore


def main() -> None:
    path, prefix, count = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    threads = int(sys.argv[4]) if len(sys.argv) > 4 else 1
    live_limit = int(sys.argv[5]) if len(sys.argv) > 5 else 200
    store = HistoryStore(path, live_limit=live_limit)
    print_lock = threading.Lock()

    def run(thread: int) -> None:
        for number in range(count):
            content = f"{prefix}-{thread}-{number}"
            store.append("user", content)
            with print_lock:
                sys.stdout.write(f"ack {content}\n")
                sys.stdout.flush()

    workers = [threading.Thread(target=run, args=(n,)) for n in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()


if __name__ == "__main__":
    main()
