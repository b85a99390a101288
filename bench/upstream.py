"""The tests' fake upstream, run standalone for benchmarks with Nagle's algorithm off on its sockets.

The fake writes a response's headers and body in two sends; with Nagle on, the body waits for the
client's delayed ACK (~40 ms on Linux), which real API servers avoid with TCP_NODELAY. Benchmarks
would otherwise measure that stall instead of the app.

    .venv/bin/python bench/upstream.py --port 8999 --latency 1
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support.fake_upstream import FakeUpstream  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, default=8999)
    parser.add_argument("--latency", type=float, default=0.0, help="seconds before each reply")
    args = parser.parse_args()
    fake = FakeUpstream(latency=args.latency, port=args.port)
    fake.server.RequestHandlerClass.disable_nagle_algorithm = True  # StreamRequestHandler sets TCP_NODELAY
    fake.server.serve_forever()


if __name__ == "__main__":
    main()
