"""A load generator that is not the bottleneck: Debian's `wrk` when installed, else Python in several processes."""

from __future__ import annotations

import http.client
import multiprocessing
import re
import shutil
import subprocess
import time
from urllib.parse import urlsplit

WRK_CONNECTIONS = 32
WRK_THREADS = 2


def requests_per_second(url: str, seconds: float) -> tuple[float, str]:
    """Completed requests per second against `url` over `seconds`, and which generator measured it."""
    if shutil.which("wrk"):
        return _wrk(url, seconds), f"wrk -t{WRK_THREADS} -c{WRK_CONNECTIONS} (keep-alive)"
    processes = max(2, multiprocessing.cpu_count())
    return _python(url, seconds, processes), f"Python http.client, {processes} processes × 4 threads (keep-alive)"


def _wrk(url: str, seconds: float) -> float:
    command = ["wrk", f"-t{WRK_THREADS}", f"-c{WRK_CONNECTIONS}", f"-d{max(1, round(seconds))}s", url]
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    if "Non-2xx" in output or "Socket errors" in output:
        raise RuntimeError(f"wrk saw failures against {url}:\n{output}")
    return float(re.search(r"Requests/sec:\s*([\d.]+)", output).group(1))


def _client(url: str, seconds: float, results: multiprocessing.Queue) -> None:
    """One process: four keep-alive connections in threads, counting 200 answers until the time is up."""
    import threading

    parts = urlsplit(url)
    counts = []

    def loop() -> None:
        connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
        done = 0
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            connection.request("GET", parts.path or "/")
            response = connection.getresponse()
            response.read()
            if response.status != 200:
                raise RuntimeError(f"{url} answered {response.status}")
            done += 1
        counts.append(done)

    threads = [threading.Thread(target=loop) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    results.put(sum(counts))


def _python(url: str, seconds: float, processes: int) -> float:
    results: multiprocessing.Queue = multiprocessing.Queue()
    workers = [multiprocessing.Process(target=_client, args=(url, seconds, results)) for _ in range(processes)]
    for worker in workers:
        worker.start()
    total = sum(results.get(timeout=seconds + 30) for _ in workers)
    for worker in workers:
        worker.join()
    return total / seconds
