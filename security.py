"""Access control, rate limits and response headers for putting the app on the internet.

- ACCESS_TOKEN (optional, at least 16 characters) guards every API route not marked `@public`
  (health, login, logout). Scripts send `Authorization: Bearer <token>`; the page posts the token
  to /api/login once and then carries a signed, HttpOnly, SameSite=Strict cookie naming a login
  session (sessions.py). The cookie holds neither the token nor anything derived from it alone: it
  is signed with a key made from a random secret kept in the data folder *and* the token, so a
  stolen cookie cannot be used to test token guesses offline, and changing the token ends every
  session. Logout removes the session from a list every worker reads; a cookie also expires after
  COOKIE_MAX_AGE.
- A valid token or cookie always passes. Only wrong tokens are counted (AUTH_FAILURE_LIMIT per
  client address): over the limit a guess gets 429 instead of 401, so honest users who share an
  address with a guesser (one NAT, or a proxy with TRUSTED_PROXIES=0) are never locked out. The
  price: the right token still passes over the limit, so the limit slows no one down; the real
  defence is the token itself (at least 16 characters, and random; NETWORK_SETUP.md shows how).
- Cross-site requests: a state-changing request (POST, PUT, PATCH, DELETE) that a browser marks as
  sent from another site or origin is refused with 403 before anything else, and every POST must
  be sent as JSON (api.py), which an HTML form cannot do. Browsers say where a request comes from
  in `Sec-Fetch-Site`; older ones only in `Origin`, compared with the scheme and host the app sees.
  curl and scripts send neither and are not affected.
- RATE_LIMIT (optional, e.g. "30/minute") is one budget per client address shared by the routes
  marked `@spends_api_key`. It and the wrong-token count are kept in the app's RateLimitStore
  (rate_limits.py), shared by every Gunicorn worker: a file in the data folder, or with
  RATE_LIMIT_STORAGE a Redis that several servers share.
- TRUSTED_PROXIES (default 0) is how many reverse proxies to believe in X-Forwarded-For/-Proto.
  Both ways to get it wrong are logged once: X-Forwarded-For arriving while it is 0 (everyone
  behind the proxy shares one address), and a value above 0 while HOST is not a loopback address
  (a client that connects directly can forge the header).
- Every response carries a Content-Security-Policy and the usual hardening headers.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import ipaddress
import logging
import secrets
import time
from collections.abc import Callable
from typing import Any, NoReturn, TypeVar
from urllib.parse import urlsplit

from flask import Flask, Response, current_app, request
from itsdangerous import BadSignature, TimestampSigner
from limits import parse, parse_many
from werkzeug.exceptions import HTTPException, MethodNotAllowed
from werkzeug.middleware.proxy_fix import ProxyFix

from config import Settings
from errors import CrossSiteRequest, Unauthorized
from rate_limits import Budget, counts_shown
from sessions import SessionSecret, SessionStore

log = logging.getLogger(__name__)

COOKIE_NAME = "chat_session"
COOKIE_MAX_AGE = 30 * 24 * 3600  # a login lasts 30 days, then the page asks for the token again
AUTH_FAILURE_LIMIT = "10/minute"  # wrong tokens per client address, before 429
STATE_CHANGING_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
DEFAULT_PORTS = {"http": 80, "https": 443}

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}

View = TypeVar("View", bound=Callable[..., Any])


class _ClockedSigner(TimestampSigner):
    """A TimestampSigner that reads the time from `clock`, for signing and for checking the age alike."""

    def __init__(self, *args: Any, clock: Callable[[], float], **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.clock = clock

    def get_timestamp(self) -> int:
        return int(self.clock())


class Guard:
    """Checks tokens and login cookies, starts and ends login sessions, and counts wrong guesses per client."""

    def __init__(self, settings: Settings, clock: Callable[[], float] = time.time):
        self.token = settings.access_token.encode("utf-8")
        self.clock = clock
        self.secret = SessionSecret(settings.data_dir)
        self.sessions = SessionStore(settings.data_dir, COOKIE_MAX_AGE)
        self.failures = Budget([parse(AUTH_FAILURE_LIMIT)], "auth_failures")

    @functools.cached_property
    def signer(self) -> _ClockedSigner:
        """The cookie signer: its key needs the data folder's secret and the token (a new token ends all sessions)."""
        key = hmac.new(self.secret.value(), b"chat-assistant login cookie v2\0" + self.token, hashlib.sha256).digest()
        return _ClockedSigner(key, salt="login", digest_method=hashlib.sha256, clock=self.clock)

    def token_matches(self, candidate: str) -> bool:
        """Whether `candidate` is the access token, compared in constant time."""
        return hmac.compare_digest(candidate.encode("utf-8"), self.token)

    def start_session(self) -> str:
        """A new login session; returns its cookie value (a signed session id, not the token)."""
        session_id = secrets.token_urlsafe(18)
        self.sessions.add(session_id, self.clock())
        return self.signer.sign(session_id).decode("ascii")

    def end_session(self, cookie: str) -> None:
        """Log out: the session this cookie names no longer counts, in any worker (expired or not)."""
        try:
            session_id = self.signer.unsign(cookie).decode("ascii")
        except BadSignature:
            return
        self.sessions.remove(session_id)

    def cookie_valid(self, cookie: str) -> bool:
        """Whether `cookie` names a live session we signed within COOKIE_MAX_AGE."""
        if not cookie:
            return False
        try:
            session_id = self.signer.unsign(cookie, max_age=COOKIE_MAX_AGE).decode("ascii")
        except BadSignature:  # also SignatureExpired
            return False
        return session_id in self.sessions

    def refuse_guess(self, error: Unauthorized) -> NoReturn:
        """Count a wrong token from this client and raise `error`, or 429 once it is over AUTH_FAILURE_LIMIT."""
        self.failures.take("Too many wrong tokens from your address; the limit is {limit}.")
        raise error

    def authenticate(self) -> None:
        """Let the request through with a valid Bearer token or login cookie, else 401 (429 for too many guesses)."""
        authorization = request.authorization
        if authorization is not None and authorization.type == "bearer" and authorization.token:
            if self.token_matches(authorization.token):
                return
            self.refuse_guess(Unauthorized("The access token is wrong."))
        if self.cookie_valid(request.cookies.get(COOKIE_NAME, "")):
            return
        raise Unauthorized(
            "This server needs its access token: log in on the page, "
            "or send the header Authorization: Bearer <ACCESS_TOKEN>."
        )


class Security:
    """What guards one app: the token guard (when ACCESS_TOKEN is set) and the RATE_LIMIT budget (when set)."""

    def __init__(self, settings: Settings):
        self.guard = Guard(settings) if settings.access_token else None
        self.chat_budget = Budget(parse_many(settings.rate_limit), "chat") if settings.rate_limit else None
        self.trusted_proxies = settings.trusted_proxies
        self.warned_about_forwarding = False


def security() -> Security:
    """The current app's Security."""
    return current_app.extensions["security"]


def public(view: View) -> View:
    """Mark a route as open without ACCESS_TOKEN (health, login, logout).

    Put it below the route decorator, which registers the function it is given.
    """
    view.is_public = True  # type: ignore[attr-defined]
    return view


def spends_api_key(view: View) -> View:
    """Count calls of this route against the client's RATE_LIMIT budget, shared by every such route.

    Put it below the route decorator, which registers the function it is given; it runs after the
    request is validated, so a refused request costs no budget.
    """

    @functools.wraps(view)
    def limited(*args: Any, **kwargs: Any) -> Any:
        budget = security().chat_budget
        if budget is not None:
            budget.take("Too many requests from your address; the limit is {limit}. Try again later.")
        return view(*args, **kwargs)

    limited.spends_api_key = True  # type: ignore[attr-defined]
    return limited  # type: ignore[return-value]


def authenticate() -> None:
    """Before each request under /api/: 401 unless the route is public, no token is set, or the caller has it.

    It runs before the view and its validation, so refused calls never use up anyone's budget, and
    before routing errors, so a caller without the token cannot tell which routes exist.
    """
    guard = security().guard
    if guard is None or not request.path.startswith("/api/"):
        return
    if not getattr(current_app.view_functions.get(_endpoint_of_path() or ""), "is_public", False):
        guard.authenticate()


def refuse_cross_site() -> None:
    """Before each request: 403 for a state-changing request that a browser sent from another site or origin.

    `Sec-Fetch-Site` decides when present: the browser itself tells the page's origin from the
    target's, whatever proxies stand between. Without it (older browsers), `Origin` must match the
    scheme and host the app sees. Requests with neither come from curl or scripts, which no site can
    make a victim's browser send, and pass.
    """
    if request.method not in STATE_CHANGING_METHODS:
        return
    fetch_site = request.headers.get("Sec-Fetch-Site")
    origin = request.headers.get("Origin")
    if fetch_site is not None:
        if fetch_site.strip().lower() in ("same-origin", "none"):
            return
    elif origin is None or _is_own_origin(origin):
        return
    raise CrossSiteRequest(
        "This request came from another site or origin, so it was refused: the API takes changes only "
        "from its own page, or from scripts. Behind a reverse proxy, set TRUSTED_PROXIES and forward Host."
    )


def _is_own_origin(origin: str) -> bool:
    """Whether an Origin header names this server as the request reached the app (after ProxyFix)."""
    try:
        theirs, ours = urlsplit(origin.strip()), urlsplit(f"{request.scheme}://{request.host}")
        their_port = theirs.port or DEFAULT_PORTS.get(theirs.scheme)
        our_port = ours.port or DEFAULT_PORTS.get(ours.scheme)
    except ValueError:  # e.g. a port that is not a number
        return False
    return bool(theirs.hostname) and (theirs.scheme, theirs.hostname, their_port) == (
        ours.scheme,
        ours.hostname,
        our_port,
    )


def warn_about_untrusted_forwarding() -> None:
    """Before each request: warn once per process that X-Forwarded-For arrives but TRUSTED_PROXIES=0 ignores it."""
    protection = security()
    if protection.trusted_proxies or protection.warned_about_forwarding or "X-Forwarded-For" not in request.headers:
        return
    protection.warned_about_forwarding = True
    log.warning(
        "Requests arrive with X-Forwarded-For while TRUSTED_PROXIES=0: every client behind that proxy shares "
        "its address (%s) for the rate limit and the wrong-token limit. Behind one reverse proxy such as "
        "nginx, set TRUSTED_PROXIES=1 (see NETWORK_SETUP.md).",
        request.remote_addr,
    )


def _endpoint_of_path() -> str | None:
    """The endpoint serving this path, also when the method is wrong (so a public route answers 405, not 401)."""
    error = request.routing_exception
    if isinstance(error, MethodNotAllowed) and error.valid_methods:
        adapter = current_app.url_map.bind_to_environ(request.environ)
        try:
            endpoint, _ = adapter.match(method=next(iter(error.valid_methods)))
        except HTTPException:  # e.g. a redirect: treat the path as guarded
            return None
        return endpoint
    return request.endpoint


def add_security_headers(response: Response) -> Response:
    """After each request: CSP and hardening headers; no caching of API answers; the 401 challenge."""
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    if request.path.startswith("/api/"):
        response.headers.setdefault("Cache-Control", "no-store")
    if response.status_code == 401:
        response.headers.setdefault("WWW-Authenticate", 'Bearer realm="chat-assistant"')
    return response


def trust_proxies(app: Flask, settings: Settings) -> None:
    """Believe exactly TRUSTED_PROXIES proxies: X-Forwarded-For's last N entries, never a client's own."""
    if settings.trusted_proxies:
        # nginx replaces X-Forwarded-Proto: one value, whatever N.
        proxied = ProxyFix(app.wsgi_app, x_for=settings.trusted_proxies, x_proto=1)
        app.wsgi_app = proxied  # type: ignore[method-assign]


def _is_loopback(host: str) -> bool:
    """Whether HOST is a loopback address, which only this machine (and so its proxy) can reach."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:  # a host name: it may resolve to anything
        return False


def log_start_up(settings: Settings) -> None:
    """Say once what protects this server; never the token itself."""
    if not settings.access_token:
        log.warning(
            "ACCESS_TOKEN is not set: anyone who can reach this port can chat and spend the API key. "
            "Set ACCESS_TOKEN before exposing the server (see NETWORK_SETUP.md)."
        )
    if settings.trusted_proxies and not _is_loopback(settings.host):
        log.warning(
            "TRUSTED_PROXIES=%d while HOST=%s may be reachable from other machines: a client that connects "
            "directly can forge X-Forwarded-For and pose as any address. Listen on HOST=127.0.0.1 behind "
            "the proxy, or make sure only the proxy reaches this port (as Docker Compose publishing on "
            "127.0.0.1 does).",
            settings.trusted_proxies,
            settings.host,
        )
    if settings.rate_limit:
        log.info(
            "Rate limit %s per client address on chat calls, counted in %s",
            settings.rate_limit,
            counts_shown(settings),
        )
