"""Access control, rate limits and response headers for putting the app on the internet.

- ACCESS_TOKEN (optional) guards every /api/* route except /api/health, /api/login and /api/logout.
  Scripts send `Authorization: Bearer <token>`; the page posts the token to /api/login once and
  then carries a signed, HttpOnly, SameSite=Strict cookie. The cookie holds no token: it is an
  itsdangerous timestamp signature whose key is derived from the token, so it survives restarts,
  is the same in every Gunicorn worker, and changing the token logs everyone out.
- RATE_LIMIT (optional, e.g. "30/minute") is one budget per client address shared by the calls
  that spend the API key: /api/chat, /api/chat/stream and /api/schedule/run. Wrong tokens are
  limited too (AUTH_FAILURE_LIMIT), so a short token cannot be guessed online.
- TRUSTED_PROXIES (default 0) is how many reverse proxies to believe in X-Forwarded-For/-Proto.
- Every response carries a Content-Security-Policy and the usual hardening headers.

Rate-limit counters live in each process's memory: with several Gunicorn workers a client gets
RATE_LIMIT from each worker (see NETWORK_SETUP.md).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
from typing import Any

from flask import Flask, Response, current_app, request
from flask_limiter import Limiter, RateLimitExceeded
from flask_limiter.util import get_remote_address
from itsdangerous import BadSignature, TimestampSigner
from limits import parse
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter
from werkzeug.middleware.proxy_fix import ProxyFix

from config import Settings
from errors import BadRequest, RateLimited, Unauthorized, UnsupportedMediaType

log = logging.getLogger(__name__)

COOKIE_NAME = "chat_session"
COOKIE_MAX_AGE = 30 * 24 * 3600  # a login lasts 30 days, then the page asks for the token again
AUTH_FAILURE_LIMIT = "10/minute"  # wrong tokens per client address, before 429
OPEN_API_PATHS = frozenset({"/api/health", "/api/login", "/api/logout"})
RATE_LIMITED_ENDPOINTS = ("chat", "chat_stream", "run_schedule")  # the routes that spend the API key

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


class Guard:
    """Checks tokens and login cookies, and counts wrong guesses per client."""

    def __init__(self, token: str):
        self.token = token.encode("utf-8")
        key = hmac.new(self.token, b"chat-assistant login cookie key v1", hashlib.sha256).digest()
        self.signer = TimestampSigner(key, salt="login", digest_method=hashlib.sha256)
        # Its own counter, so Flask-Limiter's per-request hook runs only when RATE_LIMIT is set.
        self.failures = MovingWindowRateLimiter(MemoryStorage())
        self.failure_limit = parse(AUTH_FAILURE_LIMIT)

    def token_matches(self, candidate: str) -> bool:
        """Whether `candidate` is the access token, compared in constant time."""
        return hmac.compare_digest(candidate.encode("utf-8"), self.token)

    def cookie_value(self) -> str:
        """A fresh login cookie value: a timestamped signature, not the token."""
        return self.signer.sign(b"in").decode("ascii")

    def cookie_valid(self, value: str) -> bool:
        """Whether `value` is a login cookie we issued within COOKIE_MAX_AGE."""
        try:
            return self.signer.unsign(value, max_age=COOKIE_MAX_AGE) == b"in"
        except BadSignature:  # also SignatureExpired
            return False

    def check_not_guessing(self) -> None:
        """429 while this client is over AUTH_FAILURE_LIMIT wrong tokens."""
        strategy, client = self.failures, get_remote_address()
        if not strategy.test(self.failure_limit, "auth_failures", client):
            reset_at = strategy.get_window_stats(self.failure_limit, "auth_failures", client).reset_time
            raise RateLimited(f"Too many wrong tokens from your address; the limit is {self.failure_limit}.",
                              retry_after=_seconds_until(reset_at))

    def count_failure(self) -> None:
        """Remember one wrong token from this client."""
        self.failures.hit(self.failure_limit, "auth_failures", get_remote_address())

    def authenticate(self) -> None:
        """Let the request through with a valid Bearer token or login cookie, else 401."""
        self.check_not_guessing()
        authorization = request.authorization
        if authorization is not None and authorization.type == "bearer" and authorization.token:
            if self.token_matches(authorization.token):
                return
            self.count_failure()
            raise Unauthorized("The access token is wrong.")
        if self.cookie_valid(request.cookies.get(COOKIE_NAME, "")):
            return
        raise Unauthorized("This server needs its access token: log in on the page, "
                           "or send the header Authorization: Bearer <ACCESS_TOKEN>.")


def init_security(app: Flask, settings: Settings) -> None:
    """Attach authentication, rate limiting and security headers to `app`."""
    if settings.trusted_proxies:
        # Believe exactly that many proxies: X-Forwarded-For's last N entries, never a client's own.
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=settings.trusted_proxies,  # type: ignore[method-assign]
                                x_proto=1)  # nginx replaces X-Forwarded-Proto: one value, whatever N
    limiter = Limiter(get_remote_address, storage_uri="memory://", strategy="moving-window",
                      headers_enabled=False)
    guard = Guard(settings.access_token) if settings.access_token else None
    app.extensions["guard"] = guard

    # Authentication runs before the rate limiter, so refused calls never use up anyone's budget.
    @app.before_request
    def require_token() -> None:
        if guard is not None and request.path.startswith("/api/") and request.path not in OPEN_API_PATHS:
            guard.authenticate()

    if settings.rate_limit:  # only then: Flask-Limiter's per-request check costs ~10% CPU
        limiter.init_app(app)
        for endpoint in RATE_LIMITED_ENDPOINTS:
            app.view_functions[endpoint] = limiter.shared_limit(settings.rate_limit, scope="chat")(
                app.view_functions[endpoint])

    @app.errorhandler(RateLimitExceeded)
    def rate_limited(error: RateLimitExceeded) -> Response:
        current = limiter.current_limit
        retry_after = _seconds_until(current.window.reset_time) if current is not None else 60
        message = f"Too many requests from your address; the limit is {error.description}. Try again later."
        return RateLimited(message, retry_after=retry_after).to_response()

    @app.after_request
    def add_security_headers(response: Response) -> Response:
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        if request.path.startswith("/api/"):
            response.headers.setdefault("Cache-Control", "no-store")
        if response.status_code == 401:
            response.headers.setdefault("WWW-Authenticate", 'Bearer realm="chat-assistant"')
        return response

    _register_login_routes(app)
    _log_start_up(settings)


def _register_login_routes(app: Flask) -> None:
    @app.post("/api/login")
    def login() -> Any:
        """Exchange the access token for a login cookie: `{"token": "..."}` → `{"success": true}`."""
        guard: Guard | None = current_app.extensions["guard"]
        if guard is None:
            return {"success": True, "auth_required": False}
        guard.check_not_guessing()
        if not request.is_json:
            raise UnsupportedMediaType('Send {"token": "..."} as JSON (Content-Type: application/json).')
        body = request.get_json(silent=True)
        token = body.get("token") if isinstance(body, dict) else None
        if not isinstance(token, str) or not token:
            raise BadRequest('The request body must be {"token": "..."}.', code="missing_token")
        if not guard.token_matches(token):
            guard.count_failure()
            raise Unauthorized("The access token is wrong.", code="invalid_token")
        response = current_app.json.response({"success": True})
        response.set_cookie(COOKIE_NAME, guard.cookie_value(), max_age=COOKIE_MAX_AGE, path="/",
                            secure=request.is_secure, httponly=True, samesite="Strict")
        return response

    @app.post("/api/logout")
    def logout() -> Any:
        """Forget the login cookie in this browser."""
        response = current_app.json.response({"success": True})
        response.delete_cookie(COOKIE_NAME, path="/", secure=request.is_secure, httponly=True, samesite="Strict")
        return response


def _seconds_until(timestamp: float) -> float:
    return max(1.0, timestamp - time.time())


def _log_start_up(settings: Settings) -> None:
    """Say once what protects this server; never the token itself."""
    if not settings.access_token:
        log.warning("ACCESS_TOKEN is not set: anyone who can reach this port can chat and spend the API key. "
                    "Set ACCESS_TOKEN before exposing the server (see NETWORK_SETUP.md).")
    elif len(settings.access_token) < 16:
        log.warning("ACCESS_TOKEN is only %d characters long; use 32 or more random characters, e.g. from "
                    "python3 -c 'import secrets; print(secrets.token_urlsafe(32))'", len(settings.access_token))
    if settings.rate_limit:
        log.info("Rate limit %s per client address on chat calls (counted per worker process)", settings.rate_limit)
