"""Stand-ins for the services reminders are pushed to: a real HTTP server on 127.0.0.1 that records what arrives.

Apprise's `json://127.0.0.1:PORT/path` posts its JSON to the path; `ntfy://127.0.0.1:PORT/topic` posts
`{"topic": …, "title": …, "message": …}` to `/`. Each arrival is recorded with its path and body; answers can be
scripted (a status, or a delay before answering), else 200 `{}`.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class Receiver:
    """A webhook and ntfy stand-in; `arrivals` are the requests answered 2xx, `requests` all of them."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self._script: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                with receiver._lock:
                    answer = receiver._script.pop(0) if receiver._script else {}
                time.sleep(answer.get("delay", 0))
                status = answer.get("status", 200)
                try:
                    decoded = json.loads(body)
                except ValueError:
                    decoded = body.decode(errors="replace")
                with receiver._lock:
                    receiver.requests.append({"path": self.path, "body": decoded, "status": status})
                payload = json.dumps(answer.get("body", {})).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()

    def script(self, *answers: dict[str, Any]) -> None:
        """The next requests' answers, in order: e.g. {"status": 500}, {"delay": 8}."""
        with self._lock:
            self._script.extend(answers)

    def arrivals(self, path: str | None = None) -> list[dict[str, Any]]:
        """What was delivered (answered 2xx), to `path` if given."""
        with self._lock:
            return [r for r in self.requests if 200 <= r["status"] < 300 and (path is None or r["path"] == path)]

    def url(self, scheme: str, path: str) -> str:
        return f"{scheme}://127.0.0.1:{self.port}{path}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
