"""A real OpenAI-compatible chat completions server on 127.0.0.1, with scripted faults.

Tests start it in a thread (`FakeUpstream().start()`), queue behaviours with `script(...)`, and
read back what the app sent with `requests`. Unscripted requests get a friendly Chinese echo.
A behaviour with `tool_calls` ([{"name", "arguments"}]) answers with calls to the offered tools,
whole or streamed in fragments as providers send them.
Every answer reports token `usage` that depends on what was asked and said (`usages_sent` lists them); a
stream sends it only when asked with `stream_options: {"include_usage": true}`, in a last event of its own.
`stream_options` says how the fake treats that field: "honour" it, "ignore" it (no usage, as many providers),
or refuse the request with a 400 as strict servers do ("refuse": older vLLM's words; "refuse_unknown": an
OpenAI-style gateway's).
It also runs on its own for benchmarks: `python -m tests.support.fake_upstream --port 8999`.
"""

from __future__ import annotations

import argparse
import json
import select
import socket
import sys
import threading
import time
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

API_KEY = "sk-test-fake-0123456789abcdef"
PATH = "/v1/chat/completions"


def default_reply(request: dict[str, Any]) -> str:
    """The echo every unscripted request gets."""
    users = [m["content"] for m in request.get("messages", []) if m.get("role") == "user"]
    return f"收到：{users[-1] if users else ''}"


def usage_for(request: dict[str, Any], said: str) -> dict[str, int]:
    """Token counts that follow the request and the answer, so sums over several calls mean something:
    one "token" per character asked (every message's text) and per character said (text, reasoning, calls)."""
    asked = sum(len(m.get("content") or "") for m in request.get("messages", []) if isinstance(m, dict))
    prompt, completion = 7 + asked, 3 + len(said)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


# What strict servers answer to a field they do not know, word for word.
STREAM_OPTIONS_REFUSALS = {
    "refuse": {  # vLLM before it allowed extra fields (pydantic's extra="forbid")
        "object": "error",
        "message": "[{'type': 'extra_forbidden', 'loc': ('body', 'stream_options'), 'msg': 'Extra inputs are not "
        "permitted', 'input': {'include_usage': True}}]",
        "type": "BadRequestError",
        "param": None,
        "code": 400,
    },
    "refuse_unknown": {  # OpenAI-style gateways (one-api/new-api, older Azure API versions)
        "error": {
            "message": "Unknown parameter: 'stream_options'.",
            "type": "invalid_request_error",
            "param": "stream_options",
            "code": "unknown_parameter",
        }
    },
}


def encode_json(data: Any) -> bytes:
    """UTF-8 JSON; text UTF-8 cannot hold (a lone surrogate, U+D800 to U+DFFF) goes out as a `\\uXXXX` escape,
    as a provider's JSON encoder would send it."""
    try:
        return json.dumps(data, ensure_ascii=False).encode()
    except UnicodeEncodeError:
        return json.dumps(data).encode()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024  # benchmarks open hundreds of connections at once

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that gave up (the app's read timeout, a stopped stream) is normal here, not a traceback."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class FakeUpstream:
    """Owns the server thread, the script of behaviours and the log of requests."""

    def __init__(self, api_key: str = API_KEY, latency: float = 0.0, port: int = 0):
        self.api_key = api_key
        self.latency = latency
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self._script: deque[dict[str, Any]] = deque()
        self._lock = threading.Lock()
        self.server = _Server(("127.0.0.1", port), self._handler())
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}{PATH}"
        self.closed_streams = threading.Event()
        self.closed_at: float | None = None  # time.monotonic() when the app dropped a stalled stream
        self.connections = 0  # TCP connections accepted, to tell a reused connection from a new one
        self.stream_options = "honour"  # or "ignore", "refuse", "refuse_unknown" (see the module's docstring)
        self.usages_sent: list[dict[str, int]] = []

    def start(self) -> FakeUpstream:
        # A short poll interval: stop() returns within 50 ms instead of serve_forever's default 0.5 s.
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def script(self, *behaviours: dict[str, Any]) -> None:
        """Queue behaviours for the next requests, one each, in order."""
        with self._lock:
            self._script.extend(behaviours)

    def reset(self) -> None:
        with self._lock:
            self._script.clear()
            self.requests.clear()
            self.headers.clear()
            self.connections = 0
            self.closed_at = None
            self.stream_options = "honour"
            self.usages_sent.clear()
        self.closed_streams.clear()

    def _next(self) -> dict[str, Any]:
        with self._lock:
            return self._script.popleft() if self._script else {}

    def _sent(self, usage: dict[str, int]) -> dict[str, int]:
        """Note token counts as they go out, for tests that compare the app's sums with them."""
        with self._lock:
            self.usages_sent.append(usage)
        return usage

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        upstream = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body go in separate sends: no 40 ms delayed-ACK stall

            def log_message(self, *args: Any) -> None:  # quiet
                pass

            def setup(self) -> None:
                super().setup()
                with upstream._lock:
                    upstream.connections += 1

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                if urlsplit(self.path).path != PATH:  # a query, such as a provider's ?key=, is allowed
                    return self._json(404, {"error": {"message": f"no route {self.path}"}})
                try:
                    body = json.loads(raw)
                except ValueError:
                    return self._json(400, {"error": {"message": "invalid JSON body"}})
                with upstream._lock:
                    upstream.requests.append(body)
                    upstream.headers.append(dict(self.headers))
                refusal = STREAM_OPTIONS_REFUSALS.get(upstream.stream_options)
                authorized = self.headers.get("Authorization") == f"Bearer {upstream.api_key}"
                if refusal is not None and "stream_options" in body and authorized:
                    return self._json(400, refusal)  # before the script: its next behaviour is for the request again
                behaviour = upstream._next()
                if self.headers.get("Authorization") != f"Bearer {upstream.api_key}":
                    return self._json(401, {"error": {"message": "Invalid API key", "type": "invalid_request_error"}})
                if "delay" not in behaviour:
                    time.sleep(upstream.latency)
                elif not self._silent(behaviour["delay"]):  # the app hung up before the headers (Stop)
                    return
                kind = behaviour.get("kind", "reply")
                if kind == "status":
                    return self._json(behaviour["status"], behaviour.get("body", {}), behaviour.get("headers", {}))
                if kind == "malformed":
                    return self._raw(200, b'{"choices": [ this is not json', "application/json")
                if kind == "cut_body":  # promises more bytes than it sends, then hangs up
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", "500")
                    self.end_headers()
                    self.wfile.write(b'{"choices": [{"message": {"content": "half')
                    self.close_connection = True
                    return None
                if kind == "hang_up":
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return None
                calls = _tool_calls(behaviour)
                content = behaviour.get("content", "" if calls else default_reply(body))
                reasoning = behaviour.get("reasoning", "")
                if body.get("stream"):
                    return self._stream(content, reasoning, behaviour, body)
                message: dict[str, Any] = {"role": "assistant", "content": content}
                if reasoning:
                    message["reasoning_content"] = reasoning
                if calls:
                    message["tool_calls"] = calls
                usage = upstream._sent(usage_for(body, said(content, reasoning, calls)))
                return self._json(
                    200,
                    {
                        "id": "chatcmpl-fake",
                        "object": "chat.completion",
                        "model": body.get("model", ""),
                        "choices": [
                            {"index": 0, "message": message, "finish_reason": "tool_calls" if calls else "stop"}
                        ],
                        "usage": usage,
                    },
                )

            def _json(self, status: int, data: Any, headers: dict[str, str] | None = None) -> None:
                self._raw(status, encode_json(data), "application/json", headers)

            def _raw(
                self, status: int, payload: bytes, content_type: str, headers: dict[str, str] | None = None
            ) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(payload)))
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(payload)

            def _chunk(self, data: bytes) -> None:
                self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
                self.wfile.flush()

            def _stream(self, content: str, reasoning: str, behaviour: dict[str, Any], body: dict[str, Any]) -> None:
                """Send SSE in HTTP chunks; `split_bytes` cuts chunks at raw byte offsets (mid-UTF-8)."""
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream; charset=utf-8")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                pause = behaviour.get("chunk_delay", 0.0)
                pieces = behaviour.get("pieces") or [content[i : i + 2] for i in range(0, len(content), 2)]

                def event(delta: dict[str, Any], finish: str | None = None) -> bytes:
                    data = {
                        "id": "chatcmpl-fake",
                        "object": "chat.completion.chunk",
                        "model": body.get("model", ""),
                        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
                    }
                    return b"data: " + encode_json(data) + b"\n\n"

                frames = [event({"role": "assistant", "content": ""})]
                frames += [event({"reasoning_content": reasoning[i : i + 3]}) for i in range(0, len(reasoning), 3)]
                frames += [event({"content": piece}) for piece in pieces]
                for index, call in enumerate(_tool_calls(behaviour)):  # the name first, then the arguments in bits
                    head = {**call, "index": index, "function": {"name": call["function"]["name"], "arguments": ""}}
                    frames.append(event({"tool_calls": [head]}))
                    arguments = call["function"]["arguments"]
                    frames += [
                        event({"tool_calls": [{"index": index, "function": {"arguments": arguments[i : i + 7]}}]})
                        for i in range(0, len(arguments), 7)
                    ]
                if "frames" in behaviour:  # exact `data:` payloads instead of the generated ones
                    frames = [f"data: {frame}\n\n".encode() for frame in behaviour["frames"]]
                ending = behaviour.get("ending", "done")
                usage_at, usage = None, None  # the usage event's place among the frames, and what it says
                if ending == "bad_chunk":
                    frames.append(b'data: {"choices": [oops\n\n')
                elif ending == "done":
                    frames.append(event({}, "tool_calls" if _tool_calls(behaviour) else "stop"))
                    asked = isinstance(body.get("stream_options"), dict) and body["stream_options"].get("include_usage")
                    if asked and upstream.stream_options == "honour":  # after the finish reason, with no choices
                        usage = usage_for(body, said(content, reasoning, _tool_calls(behaviour)))
                        usage_at = len(frames)
                        data = {
                            "id": "chatcmpl-fake",
                            "object": "chat.completion.chunk",
                            "model": body.get("model", ""),
                        }
                        frames.append(b"data: " + encode_json({**data, "choices": [], "usage": usage}) + b"\n\n")
                    frames.append(b"data: [DONE]\n\n")
                try:
                    if behaviour.get("split_bytes"):
                        if usage is not None:
                            upstream._sent(usage)
                        blob = b"".join(frames)
                        size = behaviour["split_bytes"]
                        for start in range(0, len(blob), size):
                            self._chunk(blob[start : start + size])
                            time.sleep(pause)
                    else:
                        stall_at = behaviour.get("stall_at")  # after this many frames, silence for `stall` seconds
                        for number, frame in enumerate(frames):
                            if number == stall_at and not self._silent(behaviour.get("stall", 30.0)):
                                return
                            if number == usage_at:
                                upstream._sent(usage)
                            self._chunk(frame)
                            time.sleep(pause)
                    if ending == "cut":
                        self.close_connection = True
                        return
                    self.wfile.write(b"0\r\n\r\n")
                    self.wfile.flush()
                except (BrokenPipeError, ConnectionResetError):
                    upstream.closed_streams.set()
                    self.close_connection = True

            def _silent(self, seconds: float) -> bool:
                """Send nothing for `seconds`, noticing at once when the app hangs up; False if it did."""
                deadline = time.monotonic() + seconds
                while time.monotonic() < deadline:
                    readable, _, _ = select.select([self.connection], [], [], min(0.02, deadline - time.monotonic()))
                    if readable and not self.connection.recv(1, socket.MSG_PEEK):
                        upstream.closed_at = time.monotonic()
                        upstream.closed_streams.set()
                        self.close_connection = True
                        return False
                return True

        return Handler


def said(content: str, reasoning: str, calls: list[dict[str, Any]]) -> str:
    """Everything an answer says, as its completion tokens count it."""
    return content + reasoning + "".join(call["function"]["name"] + call["function"]["arguments"] for call in calls)


def _tool_calls(behaviour: dict[str, Any]) -> list[dict[str, Any]]:
    """The scripted calls in the API's form: arguments as JSON text, an id for each."""
    return [
        {
            "id": call.get("id", f"call_fake_{number}"),
            "type": "function",
            "function": {
                "name": call["name"],
                "arguments": call["arguments"]
                if isinstance(call.get("arguments"), str)
                else json.dumps(call.get("arguments", {}), ensure_ascii=False),
            },
        }
        for number, call in enumerate(behaviour.get("tool_calls", []))
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=8999)
    parser.add_argument("--latency", type=float, default=0.0, help="seconds before each reply")
    args = parser.parse_args()
    fake = FakeUpstream(latency=args.latency, port=args.port)
    print(f"fake upstream on http://127.0.0.1:{args.port}{PATH} key={fake.api_key}", flush=True)
    fake.server.serve_forever()


if __name__ == "__main__":
    main()
