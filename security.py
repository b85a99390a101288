"""Access control, rate limits and response headers for putting the app on the internet.

- ACCESS_TOKEN (optional) guards every API route not marked `@public` (health, login, logout).
  Scripts send `Authorization: Bearer <token>`; the page posts the token to /api/login once and
  then carries a signed, HttpOnly, SameSite=Strict cookie. The cookie holds no token: it is an
  itsdangerous timestamp signature whose key is derived from the token, so it survives restarts,
  is the same in every Gunicorn worker, and changing the token logs everyone out.
- RATE_LIMIT (optional, e.g. "30/minute") is one budget per client address shared by the routes
  marked `@spends_api_key`. Wrong tokens are limited too (AUTH_FAILURE_LIMIT), so a short token
  cannot be guessed online.
- TRUSTED_PROXIES (default 0) is how many reverse proxies to believe in X-Forwarded-For/-Proto.
- Every response carries a Content-Security-Policy and the usual hardening headers.

Counters live in each process's memory (the `limits` library's moving window): with several
Gunicorn workers a client gets RATE_LIMIT from each worker (see NETWORK_SETUP.md).
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import logging
from collections.abc import Callable
from typing import Any, TypeVar

from flask import Flask, Response, current_app, request
from itsdangerous import BadSignature, TimestampSigner
from limits import parse, parse_many
from werkzeug.exceptions import HTTPException, MethodNotAllowed
from werkzeug.middleware.proxy_fix import ProxyFix

from config import Settings
from errors import Unauthorized
from rate_limits import Budget

log = logging.getLogger(__name__)

COOKIE_NAME = "chat_session"
COOKIE_MAX_AGE = 30 * 24 * 3600  # a login lasts 30 days, then the page asks for the token again
AUTH_FAILURE_LIMIT = "10/minute"  # wrong tokens per client address, before 429

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


class Guard:
    """Checks tokens and login cookies, and counts wrong guesses per client."""

    def __init__(self, token: str):
        self.token = token.encode("utf-8")
        key = hmac.new(self.token, b"chat-assistant login cookie key v1", hashlib.sha256).digest()
        self.signer = TimestampSigner(key, salt="login", digest_method=hashlib.sha256)
        self.failures = Budget([parse(AUTH_FAILURE_LIMIT)], "auth_failures")

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
        self.failures.check("Too many wrong tokens from your address; the limit is {limit}.")

    def count_failure(self) -> None:
        """Remember one wrong token from this client (the next check refuses once over the limit)."""
        self.failures.count()

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
        raise Unauthorized(
            "This server needs its access token: log in on the page, "
            "or send the header Authorization: Bearer <ACCESS_TOKEN>."
        )


class Security:
    """What guards one app: the token guard (when ACCESS_TOKEN is set) and the RATE_LIMIT budget (when set)."""

    def __init__(self, settings: Settings):
        self.guard = Guard(settings.access_token) if settings.access_token else None
        self.chat_budget = Budget(parse_many(settings.rate_limit), "chat") if settings.rate_limit else None


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


def log_start_up(settings: Settings) -> None:
    """Say once what protects this server; never the token itself."""
    if not settings.access_token:
        log.warning(
            "ACCESS_TOKEN is not set: anyone who can reach this port can chat and spend the API key. "
            "Set ACCESS_TOKEN before exposing the server (see NETWORK_SETUP.md)."
        )
    elif len(settings.access_token) < 16:
        log.warning(
            "ACCESS_TOKEN is only %d characters long; use 32 or more random characters, e.g. from "
            "python3 -c 'import secrets; print(secrets.token_urlsafe(32))'",
            len(settings.access_token),
        )
    if settings.rate_limit:
        log.info("Rate limit %s per client address on chat calls (counted per worker process)", settings.rate_limit)
