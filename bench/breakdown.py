"""A chat's time in a Gunicorn worker, split by who spends it, from py-spy's collapsed stacks.

Each sample goes to the first part below whose marker appears anywhere in its stack, so the JSON that
the history store encodes counts as the store's and the socket reads under `HTTPAdapter.send` as the
upstream call's. Samples in no request thread (gthread's accept loop, the scheduler) go to "worker
threads outside requests". profile_worker.py --breakdown prints the parts in ms per request.
"""

from __future__ import annotations

import collections
from pathlib import Path

# (part, markers): a marker is a substring of a py-spy frame, "Class.function (package/file.py:line)".
PARTS: list[tuple[str, tuple[str, ...]]] = [
    ("history store (lead's)", ("(history_store.py:",)),
    ("turn gate (lead's)", ("(turn_gate.py:",)),
    ("logging (app and access log)", ("(logging/__init__.py:", "(gunicorn/glogging.py:")),
    ("requests: environment (proxies, .netrc) per call", ("Session.merge_environment_settings ",)),
    ("requests: building the request", ("Session.prepare_request ", "PreparedRequest.")),
    ("requests: adapter, urllib3, socket, upstream's reply", ("HTTPAdapter.send ",)),
    ("requests: the rest of Session.request", ("(requests/sessions.py:",)),
    ("upstream client: reply parsing", ("(upstream_client.py:",)),
    ("flask-openapi3 / pydantic validation", ("(flask_openapi3/request.py:", "(pydantic", "(pydantic_core")),
    (
        "before/after_request hooks (security, rate limits, JSON checks)",
        # Flask runs the before_request functions (api.py's JSON checks too) and after_request ones in these.
        ("Flask.preprocess_request ", "Flask.process_response ", "Budget.", "(rate_limits.py:"),
    ),
    ("JSON encoding of the answer", ("(flask/json/", "(json/encoder.py:", "(json/__init__.py:")),
    ("chat service (context, reminder phrases)", ("(chat_service.py:", "(reminder_tools.py:", "(reminder_phrases.py:")),
    ("Flask / Werkzeug dispatch", ("Flask.__call__ ",)),
    ("Gunicorn: parsing, worker class, writing", ("ThreadWorker.handle ",)),
]
OUTSIDE = "worker threads outside requests"


def part_of(frames: list[str]) -> str:
    """The part a sample's stack belongs to."""
    for part, markers in PARTS:
        if any(marker in frame for frame in frames for marker in markers):
            return part
    return OUTSIDE


def parts(collapsed: Path, requests_only: bool) -> collections.Counter[str]:
    """Samples per part; with `requests_only`, only stacks inside a request (waiting threads are idle, not work)."""
    counts: collections.Counter[str] = collections.Counter()
    for line in collapsed.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = stack.split(";")
        part = part_of(frames)
        if requests_only and part == OUTSIDE:
            continue
        counts[part] += int(count)
    return counts


def print_breakdown(counts: collections.Counter[str], rate: int, requests: int, title: str) -> float:
    """Print each part in ms per request (samples / rate / requests); returns the total."""
    total = sum(counts.values()) / rate / requests * 1000
    print(f"\n-- {title}: {total:.2f} ms per request over {requests} requests")
    for part, _ in [*PARTS, (OUTSIDE, ())]:
        if counts[part]:
            print(f"{counts[part] / rate / requests * 1000:7.3f} ms  {part}")
    return total
