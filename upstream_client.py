"""Talks to an OpenAI-compatible chat completions endpoint (SiliconFlow by default) over requests."""

from __future__ import annotations

import contextlib
import json
import logging
import random
import re
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import requests
import urllib3
from requests.adapters import HTTPAdapter
from requests.utils import get_netrc_auth
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.util.ssltransport import SSLTransport

from config import Settings, url_shown
from errors import UpstreamError, UpstreamRateLimited, UpstreamTimeout

log = logging.getLogger(__name__)

RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504})
# JSON can escape a lone surrogate ("\ud800"); Python decodes it, but UTF-8 cannot encode it, so it could
# be neither stored nor sent on. json.loads joins escaped pairs, so any surrogate left in a string is lone.
LONE_SURROGATE = re.compile("[\ud800-\udfff]")
BACKOFF_BASE_SECONDS = 0.5
CHAT_COMPLETIONS_PATH = "/chat/completions"
# After a stream's [DONE]: how long, and for how many reads, to wait for the end of the body so that the
# connection can be used again (the end comes with [DONE] or right after it).
DRAIN_SECONDS = 0.2
DRAIN_READS = 4
# Streams ask for the token counts: providers then send them in one last event (`"choices": []`) before [DONE].
STREAM_OPTIONS = {"include_usage": True}
# A refusal of a request carrying `stream_options` that may be about it: strict servers (older vLLM, some gateways)
# answer 400 to a field they do not know; FastAPI-based ones 422.
REFUSED_STATUSES = frozenset({400, 422})
# The Cancel of the request this thread is sending, for the connection to hand its socket to (see Cancel).
_sending = threading.local()


class Cancel:
    """Ends a turn's requests to the model from another thread (Stop), at once, even while the model is silent.

    The request in flight, whether still waiting for its response headers or mid-stream, has its socket shut
    down, so the blocked read returns; no request is retried or sent after it. A connection hands its socket
    over once connected and again before it waits for the response, and takes it back before it goes back to
    the pool, so a late Stop never reaches a connection that another turn uses by then.

    Stop during a connection attempt takes effect when the attempt ends (CONNECT_TIMEOUT at most): the socket is
    shut before the request is sent.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._socket: Any = None  # a socket, or urllib3's SSLTransport (TLS inside an https:// proxy's TLS)
        self._cancelled = threading.Event()

    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()

    def cancel(self) -> None:
        with self._lock:
            self._cancelled.set()
            _shut(self._socket)

    def wait(self, seconds: float) -> bool:
        """Sleep `seconds` unless cancelled meanwhile (a retry's backoff); True once cancelled."""
        return self._cancelled.wait(seconds)

    def attach(self, sock: Any) -> None:
        with self._lock:
            self._socket = sock
            if self.cancelled:
                _shut(sock)

    def release(self, sock: Any) -> None:
        """Forget `sock`, its connection going back to the pool: a later cancel() cannot reach it."""
        with self._lock:
            if self._socket is sock:
                self._socket = None


class _Cancellable:
    """A connection that hands its socket to the sending thread's Cancel: once connected (nothing is sent after
    Stop) and before waiting for the response; and takes it back when it returns to the pool."""

    sock: socket.socket | None
    _cancel: Cancel | None = None

    def connect(self) -> None:
        super().connect()  # type: ignore[misc]
        self._hand_over()

    def getresponse(self, *args: Any, **kwargs: Any) -> Any:
        self._hand_over()
        return super().getresponse(*args, **kwargs)  # type: ignore[misc]

    def _hand_over(self) -> None:
        cancel = getattr(_sending, "cancel", None)
        if cancel is not None:
            self._cancel = cancel
            cancel.attach(self.sock)

    def pooled(self) -> None:
        if self._cancel is not None:
            self._cancel.release(self.sock)
            self._cancel = None


class _ReturnsToPool:
    """A pool that takes each connection back from its turn's Cancel first: urllib3 pools a connection as soon as
    its body is read to the end, which may be before the turn closes its stream."""

    def _put_conn(self, conn: Any) -> None:
        if isinstance(conn, _Cancellable):
            conn.pooled()
        super()._put_conn(conn)  # type: ignore[misc]


class _CancellableHTTP(_Cancellable, HTTPConnection):
    pass


class _CancellableHTTPS(_Cancellable, HTTPSConnection):
    pass


class _CancellableHTTPPool(_ReturnsToPool, HTTPConnectionPool):
    ConnectionCls = _CancellableHTTP


class _CancellableHTTPSPool(_ReturnsToPool, HTTPSConnectionPool):
    ConnectionCls = _CancellableHTTPS


CANCELLABLE_POOLS = {"http": _CancellableHTTPPool, "https": _CancellableHTTPSPool}


class _CancellableAdapter(HTTPAdapter):
    """requests' adapter with connections a Cancel can reach, direct or through an HTTP(S) proxy. (SOCKS proxies
    need PySocks, which is not installed: requests refuses them.)"""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = CANCELLABLE_POOLS

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> urllib3.PoolManager:
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        if isinstance(manager, urllib3.ProxyManager):
            manager.pool_classes_by_scheme = CANCELLABLE_POOLS
        return manager


@dataclass
class Completion:
    """One whole reply from the model."""

    content: str
    reasoning: str = ""
    model: str = ""
    usage: dict[str, Any] = field(default_factory=dict)
    tool_calls: list[ToolCall] = field(default_factory=list)


@dataclass
class StreamPiece:
    """One piece of a streamed reply: kind is "delta", "reasoning" or "finish" (with the assembled tool calls)."""

    kind: str
    text: str = ""
    model: str = ""
    usage: dict[str, Any] = field(default_factory=dict)
    tool_calls: list[ToolCall] = field(default_factory=list)


@dataclass
class ToolCall:
    """A function the model asks to call: `arguments` is its JSON text, as the API sends it."""

    id: str
    name: str
    arguments: str = ""


class UpstreamClient:
    """One pooled session to the model API, with timeouts and bounded retries."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.session = requests.Session()
        # Large pool: many gthread threads may wait on long completions at once.
        adapter = _CancellableAdapter(pool_connections=4, pool_maxsize=256)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        parts = urlsplit(settings.api_url)  # host and port only: a user:password@ part stays out of messages
        self._host = f"{parts.hostname}:{parts.port}" if parts.port else str(parts.hostname)
        self.url = chat_completions_url(settings.api_url)
        _read_environment_once(self.session, self.url)
        # Everything but the body is the same on every call: prepared once per kind (requests' URL checks, header
        # merging and auth cost ~0.2 ms a call), each call copies one and adds its JSON.
        self._prepared = {stream: self._prepare(stream) for stream in (False, True)}
        # Cleared for good (in this process) once the provider refused a stream that asked for usage.
        self.asks_stream_usage = True
        if self.url != settings.api_url:
            log.info(
                "API_URL %s is a base URL: chat requests go to %s", url_shown(settings.api_url), url_shown(self.url)
            )

    # ---- public --------------------------------------------------------------------------

    def complete(
        self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None = None, cancel: Cancel | None = None
    ) -> Completion:
        """Ask for a whole reply; with `tools`, the model may answer with calls to them instead."""
        response = self._post(self._payload(messages, tools, stream=False), stream=False, cancel=cancel or Cancel())
        try:
            body = response.json()
            if may_hold_surrogates(response.content):
                body = without_surrogates(body)
            choice = body["choices"][0]
            message = choice["message"]
            completion = Completion(
                content=message.get("content") or "",
                reasoning=message.get("reasoning_content") or message.get("reasoning") or "",
                model=body.get("model") or self.settings.model,
                usage=body.get("usage") or {},
                tool_calls=[_tool_call(call, number) for number, call in enumerate(message.get("tool_calls") or [])],
            )
            if not isinstance(completion.content, str) or not isinstance(completion.reasoning, str):
                raise TypeError
        except (ValueError, KeyError, IndexError, TypeError, AttributeError, RecursionError):
            raise UpstreamError(
                "The model API sent a reply that is not valid chat completion JSON.", code="upstream_bad_response"
            ) from None
        return completion

    def stream(
        self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None = None, cancel: Cancel | None = None
    ) -> UpstreamStream:
        """Open the stream now (so refusals raise here) and return its pieces as they arrive.

        The stream asks for token usage; a provider that refuses that field is asked once more without it and,
        once that works (or its refusal named the field), never asked for it again by this process.
        """
        cancel = cancel or Cancel()
        payload = self._payload(messages, tools, stream=True)
        try:
            response = self._post(payload, stream=True, cancel=cancel)
        except UpstreamError as refusal:
            if "stream_options" not in payload or not _may_refuse_stream_options(refusal):
                raise
            del payload["stream_options"]
            if "stream_options" in refusal.message:  # it says so: whatever the next answer, never ask again
                self._stop_asking_for_usage(refusal)
            response = self._post(payload, stream=True, cancel=cancel)  # refused again: the field was not it, say why
            self._stop_asking_for_usage(refusal)
        return UpstreamStream(response, self._read_events(response), cancel)

    def _stop_asking_for_usage(self, refusal: UpstreamError) -> None:
        """From now on, streams of this process do not ask for usage; said once in the log (never the key)."""
        if self.asks_stream_usage:
            self.asks_stream_usage = False
            log.warning(
                "The model API refused stream_options (%s); streams no longer ask it for token usage", refusal.message
            )

    def _payload(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None, *, stream: bool) -> dict:
        payload: dict[str, Any] = {"model": self.settings.model, "messages": messages, "stream": stream}
        if stream and self.asks_stream_usage:
            payload["stream_options"] = STREAM_OPTIONS
        if tools:
            payload["tools"] = tools
        return payload

    def close(self) -> None:
        """Release pooled connections."""
        self.session.close()

    # ---- requests and retries ------------------------------------------------------------

    def _prepare(self, stream: bool) -> requests.PreparedRequest:
        """The request without its body, as Session.request would prepare it (session headers, auth, hooks)."""
        headers = {
            "Authorization": f"Bearer {self.settings.api_key}",
            "Accept": "text/event-stream" if stream else "application/json",
        }
        return self.session.prepare_request(requests.Request("POST", self.url, headers=headers))

    def _post(self, payload: dict[str, Any], *, stream: bool, cancel: Cancel) -> requests.Response:
        """POST `payload`, retrying 429, 5xx and connection failures with backoff within RETRY_MAX_SECONDS."""
        settings = self.settings
        deadline = time.monotonic() + settings.retry_max_seconds
        for attempt in range(settings.retry_attempts + 1):
            outcome = self._attempt(payload, stream=stream, cancel=cancel)
            if isinstance(outcome, requests.Response):
                return outcome
            wait = _backoff_seconds(attempt) if outcome.retry_after is None else outcome.retry_after
            if attempt == settings.retry_attempts or time.monotonic() + wait > deadline:
                raise outcome
            log.warning("Model API attempt %d failed (%s); retrying in %.1fs", attempt + 1, outcome.code, wait)
            if cancel.wait(wait):
                raise _stopped()
        raise AssertionError("unreachable")

    def _attempt(self, payload: dict[str, Any], *, stream: bool, cancel: Cancel) -> requests.Response | UpstreamError:
        """One request: a successful response, or a failure worth retrying; other failures are raised."""
        settings = self.settings
        session = self.session
        if cancel.cancelled:
            raise _stopped()
        _sending.cancel = cancel
        try:
            request = self._prepared[stream].copy()
            request.prepare_body(None, None, json=payload)
            if session.cookies:  # as Session.request does: cookies the API set (say a load balancer's) go back
                request.prepare_cookies(session.cookies)
            response = session.send(
                request,
                stream=stream,
                timeout=(settings.connect_timeout, settings.read_timeout),
                proxies=session.proxies,
                verify=session.verify,
                cert=session.cert,
                allow_redirects=True,
            )
        except requests.RequestException as error:
            if cancel.cancelled:  # the shut socket, not the model: never retried
                raise _stopped() from None
            return self._retryable_request_failure(error)
        finally:
            _sending.cancel = None
        if response.status_code < 400:
            return response
        return self._retryable_status_failure(response)

    def _retryable_request_failure(self, error: requests.RequestException) -> UpstreamError:
        """A failure to connect, to retry; a read timeout or a body cut off mid-way is raised at once."""
        # ConnectTimeout is also a ConnectionError, so it must be told apart first.
        if isinstance(error, requests.ConnectTimeout):
            return UpstreamError(
                f"The model API at {self._host} did not accept a connection in time.", code="upstream_unreachable"
            )
        if isinstance(error, requests.ReadTimeout):
            raise self._timeout() from None
        if isinstance(error, requests.ConnectionError):
            if _is_read_timeout(error):
                raise self._timeout() from None
            return UpstreamError(f"The model API at {self._host} cannot be reached.", code="upstream_unreachable")
        raise _broken() from None  # e.g. a body cut off mid-way (ChunkedEncodingError)

    def _retryable_status_failure(self, response: requests.Response) -> UpstreamError:
        """The error of a 429 or 5xx answer, to retry after its Retry-After if any; other errors are raised at once."""
        failure = self._error_from(response)
        failure.upstream_status = response.status_code
        response.close()
        if response.status_code not in RETRYABLE_STATUSES:
            raise failure
        retry_after = _retry_after_seconds(response)
        if retry_after is not None:
            failure.retry_after = retry_after
        return failure

    def _timeout(self) -> UpstreamTimeout:
        return UpstreamTimeout(
            f"The model API did not answer within the read timeout ({self.settings.read_timeout:g} s, READ_TIMEOUT)."
        )

    def _error_from(self, response: requests.Response) -> UpstreamError:
        """Turn an error response (SiliconFlow, OpenAI or plain text) into one readable error."""
        detail = self._redact(_error_detail(response))
        status = response.status_code
        if status == 429:
            return UpstreamRateLimited(f"The model API is rate limiting requests (HTTP 429): {detail}")
        if status in (401, 403):
            return UpstreamError(
                f"The model API rejected the API key (HTTP {status}): {detail} — check API_KEY.",
                code="upstream_auth_failed",
            )
        if status == 404:
            return UpstreamError(f"The model API answered not found (HTTP 404): {detail} — check API_URL and MODEL.")
        return UpstreamError(f"The model API answered with an error (HTTP {status}): {detail}")

    def _redact(self, text: str) -> str:
        key = self.settings.api_key
        return text.replace(key, "***") if key else text

    # ---- streaming -----------------------------------------------------------------------

    def _read_events(self, response: requests.Response) -> Iterator[StreamPiece]:
        """Parse server-sent events; bytes are split only at newlines, so UTF-8 is never cut.

        The finish piece is held back until [DONE] or the body's end: the token usage a provider sends comes
        after the finish reason, in an event of its own, and goes out on that piece.
        """
        finish: StreamPiece | None = None
        usage: dict[str, Any] = {}
        buffer = b""
        calls: dict[int, ToolCall] = {}  # a tool call arrives in fragments, keyed by its index
        try:
            for chunk in self._chunks(response):
                buffer += chunk
                *lines, buffer = buffer.split(b"\n")
                for line in lines:
                    data = _sse_data(line)
                    if data is None:
                        continue
                    if data == b"[DONE]":
                        yield _finished(finish, usage, calls)
                        return
                    event = self._event(data)
                    usage = _usage_of(event) or usage  # counts so far: a later event's are the newer ones
                    for piece in self._pieces(event, calls):
                        if piece.kind == "finish":
                            finish = piece
                        else:
                            yield piece
        except UpstreamError:
            if finish is None:
                raise
            # The reply was whole; only what follows the finish reason was lost (perhaps its usage).
        if finish is None:
            raise UpstreamError("The model's reply was cut off before it finished.", code="upstream_incomplete")
        yield _finished(finish, usage, calls)

    def _chunks(self, response: requests.Response) -> Iterator[bytes]:
        """Raw body bytes as soon as they arrive (read1 does not wait for a full buffer)."""
        raw = response.raw
        try:
            while True:
                chunk = raw.read1(65536, decode_content=True)
                if not chunk:
                    return
                yield chunk
        except urllib3.exceptions.ReadTimeoutError:
            raise self._timeout() from None
        except (urllib3.exceptions.HTTPError, OSError):
            raise _broken() from None

    def _event(self, data: bytes) -> dict[str, Any]:
        """One `data:` payload as JSON."""
        try:
            event = json.loads(data)
            if may_hold_surrogates(data):  # rarely: the full walk costs more than the parse (~18 µs an event)
                event = without_surrogates(event)
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):  # RecursionError: absurdly deep nesting
            raise _malformed() from None
        if not isinstance(event, dict):
            raise _malformed()
        return event

    def _pieces(self, event: dict[str, Any], calls: dict[int, ToolCall]) -> list[StreamPiece]:
        """The reasoning, reply text and finish reason in one event; tool call fragments go into `calls`."""
        if "error" in event:
            raise UpstreamError(f"The model API reported an error mid-reply: {self._redact(_message_of(event))}")
        choices = event.get("choices") or []
        choice = choices[0] if isinstance(choices, list) and choices else {}
        delta = choice.get("delta") or {} if isinstance(choice, dict) else None
        if not isinstance(delta, dict):
            raise _malformed()
        model = event.get("model") if isinstance(event.get("model"), str) else ""
        reasoning = delta.get("reasoning_content") or delta.get("reasoning")
        content, finish = delta.get("content"), choice.get("finish_reason")
        if any(value is not None and not isinstance(value, str) for value in (reasoning, content, finish)):
            raise _malformed()
        _merge_tool_calls(delta.get("tool_calls"), calls)
        pieces = []
        if reasoning:
            pieces.append(StreamPiece("reasoning", reasoning, model))
        if content:
            pieces.append(StreamPiece("delta", content, model))
        if finish:
            pieces.append(StreamPiece("finish", finish, model))
        return pieces


class UpstreamStream:
    """The pieces of one streamed reply; `close()` drops the upstream connection at once, started or not, unless
    the reply came whole: then the connection goes back to the pool for the next turn (no new TCP and TLS
    handshake, which costs a turn's first token tens of milliseconds against a distant API)."""

    def __init__(self, response: requests.Response, pieces: Iterator[StreamPiece], cancel: Cancel):
        self._response = response
        self._pieces = pieces
        self._cancel = cancel
        self._whole = False

    def __iter__(self) -> Iterator[StreamPiece]:
        yield from self._pieces
        self._whole = True  # [DONE] or the body's end arrived: nothing is left but the body's last bytes

    def abort(self) -> None:
        """End the stream from another thread, at once, even while the upstream sends nothing: the blocked read
        returns and the iteration raises (Stop)."""
        self._cancel.cancel()

    def close(self) -> None:
        if self._whole:
            self._read_to_end()
        self._response.close()  # drops the connection unless the body was read to its end (urllib3 kept it)

    def _read_to_end(self) -> None:
        """Read the few bytes that end the body after [DONE], if they come at once; urllib3 then pools the
        connection. A provider that keeps the stream open is not waited for: the connection is dropped."""
        raw = self._response.raw
        connection = raw.connection
        if connection is None or connection.sock is None:
            return  # already read to its end and pooled
        connection.sock.settimeout(DRAIN_SECONDS)  # urllib3 sets the timeouts again before the next request
        try:
            for _ in range(DRAIN_READS):
                if not raw.read1(65536):
                    return
        except (urllib3.exceptions.HTTPError, OSError):
            return


def _read_environment_once(session: requests.Session, url: str) -> None:
    """Settle what requests takes from the environment for `url` now, instead of on every call.

    With `trust_env` requests reads HTTP(S)_PROXY/ALL_PROXY and NO_PROXY, REQUESTS_CA_BUNDLE/CURL_CA_BUNDLE
    and ~/.netrc again for each request (~0.4 ms of CPU a chat); they do not change while the app runs.
    The session keeps what requests would have found, so the upstream is reached exactly as before.
    """
    found = session.merge_environment_settings(url, {}, None, None, None)
    session.proxies = found["proxies"]  # empty when NO_PROXY names the API's host
    session.verify = found["verify"]
    session.auth = get_netrc_auth(url)
    session.trust_env = False


def may_hold_surrogates(data: bytes) -> bool:
    """Whether JSON `data` can decode to a string holding a surrogate; False guarantees it cannot.

    json.loads makes one from an escape (\\uD800 to \\uDFFF), from UTF-8 bytes ED A0 to ED BF (it decodes
    with 'surrogatepass'), or from JSON in UTF-16/32 (which has NUL bytes); each test is a fast byte search.
    """
    return b"\\ud" in data or b"\\uD" in data or b"\xed" in data or b"\x00" in data


def without_surrogates(value: Any) -> Any:
    """Decoded JSON with each lone surrogate in its strings replaced by U+FFFD, so the text can be stored and sent."""
    if isinstance(value, str):
        return LONE_SURROGATE.sub("\ufffd", value)
    if isinstance(value, list):
        return [without_surrogates(item) for item in value]
    if isinstance(value, dict):
        return {without_surrogates(key): without_surrogates(item) for key, item in value.items()}
    return value


def _tool_call(call: Any, number: int) -> ToolCall:
    """A whole tool call of a non-streamed reply (TypeError/KeyError when it is not one)."""
    function = call["function"]
    arguments = function.get("arguments") or ""
    if not isinstance(function["name"], str):
        raise TypeError
    if not isinstance(arguments, str):  # a few providers send the object itself
        arguments = json.dumps(arguments, ensure_ascii=False)
    return ToolCall(str(call.get("id") or f"call_{number}"), function["name"], arguments)


def _merge_tool_calls(fragments: Any, calls: dict[int, ToolCall]) -> None:
    """Add one event's tool call fragments: the first of a call brings its id and name, each one more arguments."""
    if fragments is None:
        return
    if not isinstance(fragments, list):
        raise _malformed()
    for fragment in fragments:
        function = fragment.get("function") if isinstance(fragment, dict) else None
        if not isinstance(function, dict):
            raise _malformed()
        index = fragment.get("index")
        if index is None:  # a provider that numbers nothing: a fragment with an id or name starts the next call
            starts = fragment.get("id") or function.get("name") or not calls
            index = len(calls) if starts else max(calls)
        if not isinstance(index, int):
            raise _malformed()
        call = calls.setdefault(index, ToolCall(str(fragment.get("id") or f"call_{index}"), ""))
        name, arguments = function.get("name"), function.get("arguments")
        if isinstance(name, str):
            call.name += name
        if isinstance(arguments, str):
            call.arguments += arguments


def _may_refuse_stream_options(refusal: UpstreamError) -> bool:
    """Whether a refused stream may have been refused for asking for usage: a 400 (or 422) that names the field,
    or names nothing; one about the tools is left to the caller, which asks again without them."""
    if refusal.upstream_status not in REFUSED_STATUSES:
        return False
    text = refusal.message.lower()
    return "stream_options" in text or "tool" not in text


def _usage_of(event: dict[str, Any]) -> dict[str, Any]:
    """The token counts an event carries: at its top (OpenAI, vLLM, SiliconFlow) or in its choice (Moonshot)."""
    usage = event.get("usage")
    if not isinstance(usage, dict):
        choices = event.get("choices")
        choice = choices[0] if isinstance(choices, list) and choices and isinstance(choices[0], dict) else {}
        usage = choice.get("usage")
    return usage if isinstance(usage, dict) else {}


def _finished(finish: StreamPiece | None, usage: dict[str, Any], calls: dict[int, ToolCall]) -> StreamPiece:
    """The reply's finish piece (a plain "stop" when the provider sent none before [DONE]), with its usage
    and the assembled tool calls."""
    piece = finish or StreamPiece("finish", "stop")
    piece.usage = usage
    piece.tool_calls = list(calls.values())
    return piece


def _shut(sock: Any) -> None:
    if isinstance(sock, SSLTransport):  # TLS inside TLS (an https:// proxy): shut the proxy connection it runs in
        sock = sock.socket
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)


def _stopped() -> UpstreamError:
    return UpstreamError("The request to the model API was stopped.", code="stopped")


def _broken() -> UpstreamError:
    return UpstreamError("The connection to the model API broke before the reply finished.", code="upstream_incomplete")


def _malformed() -> UpstreamError:
    return UpstreamError("The model API sent a malformed stream event.", code="upstream_bad_response")


def _sse_data(line: bytes) -> bytes | None:
    """The payload of a `data:` line, or None for comments, blank lines and other fields."""
    line = line.rstrip(b"\r")
    if not line.startswith(b"data:"):
        return None
    return line[5:].strip()


def _backoff_seconds(attempt: int) -> float:
    """Exponential backoff with ±20% jitter, so clients refused together do not retry together."""
    return BACKOFF_BASE_SECONDS * 2**attempt * random.uniform(0.8, 1.2)


def _is_read_timeout(error: requests.ConnectionError) -> bool:
    """requests wraps a timeout while reading a body as ConnectionError(ReadTimeoutError)."""
    return any(isinstance(arg, urllib3.exceptions.ReadTimeoutError) for arg in error.args)


def _retry_after_seconds(response: requests.Response) -> float | None:
    """Retry-After as seconds, from either its number or its HTTP-date form."""
    value = response.headers.get("Retry-After")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


def _message_of(body: Any) -> str:
    """The human message inside an OpenAI-style or SiliconFlow-style error body."""
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])
        if isinstance(error, str) and error:
            return error
        for key in ("message", "detail", "msg"):
            if body.get(key):
                return str(body[key])
    return ""


def _error_detail(response: requests.Response) -> str:
    try:
        detail = _message_of(without_surrogates(response.json()))
    except (ValueError, RecursionError):
        detail = ""
    if not detail:
        text = response.text.strip()
        detail = text[:200] if text and not text.lstrip().startswith("<") else (response.reason or "no details")
    return detail.rstrip(".")


def chat_completions_url(api_url: str) -> str:
    """`api_url` unchanged when it names the chat completions endpoint, else that endpoint under it.

    Providers document a base URL (`https://…/v1`) that the OpenAI SDKs extend with /chat/completions;
    doing the same spares a 404 on the first chat.
    """
    parts = urlsplit(api_url)
    path = parts.path.rstrip("/")
    if path.endswith(CHAT_COMPLETIONS_PATH):
        return api_url
    return urlunsplit(parts._replace(path=path + CHAT_COMPLETIONS_PATH))
