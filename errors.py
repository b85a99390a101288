"""Failures as values: each carries its HTTP status, a machine code and one human sentence."""

from __future__ import annotations

import math

INTERNAL_ERROR = "Something went wrong on the server; see its log."  # all a client learns of a bug


class AppError(Exception):
    """Base of every failure the API reports as `{"success": false, "error", "code"}`."""

    status = 500
    code = "internal_error"

    def __init__(
        self,
        message: str = INTERNAL_ERROR,
        *,
        code: str | None = None,
        status: int | None = None,
        retry_after: float | None = None,
        allow: list[str] | None = None,
    ):
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status
        self.retry_after = retry_after
        self.extra: dict = {}  # more fields for the body, e.g. the stored `user_message` of a failed turn
        self.allow = allow or []  # for 405: the methods the route does take

    def body(self) -> dict:
        """The JSON body for this error."""
        return {"success": False, "error": self.message, "code": self.code, **self.extra}

    def headers(self) -> dict[str, str]:
        """Headers that go with it: Retry-After in whole seconds, rounded up; Allow for 405."""
        headers = {}
        if self.retry_after is not None:
            headers["Retry-After"] = str(max(1, math.ceil(self.retry_after)))
        if self.allow:
            headers["Allow"] = ", ".join(self.allow)
        return headers


class BadRequest(AppError):
    """The client sent something the API cannot accept."""

    status = 400
    code = "bad_request"


class PayloadTooLarge(AppError):
    """The message or the body is over the configured limit."""

    status = 413
    code = "message_too_long"


class UnsupportedMediaType(AppError):
    """A JSON endpoint got a body not sent as application/json (this also keeps cross-site forms out)."""

    status = 415
    code = "unsupported_media_type"


class NotConfigured(AppError):
    """Chat needs an API key and none is set."""

    status = 503
    code = "not_configured"


class StorageError(AppError):
    """The history file cannot be read or written (read-only or full disk, permissions)."""

    status = 503
    code = "storage_unavailable"


class Unauthorized(AppError):
    """The request lacks a valid access token or login cookie."""

    status = 401
    code = "unauthorized"


class CrossSiteRequest(AppError):
    """A browser sent a state-changing request from another site or origin (a forged form or fetch)."""

    status = 403
    code = "cross_site_request"


class RateLimited(AppError):
    """The client has used up its budget (RATE_LIMIT, or wrong tokens); `retry_after` says for how long."""

    status = 429
    code = "rate_limited"


class UpstreamError(AppError):
    """The model API answered with an error, or with something that is not a reply."""

    status = 502
    code = "upstream_error"
    upstream_status: int | None = None  # the model API's own HTTP status, when it answered with one


class UpstreamTimeout(UpstreamError):
    """The model API did not answer within the read timeout."""

    status = 504
    code = "upstream_timeout"


class UpstreamRateLimited(UpstreamError):
    """The model API still refused with 429 after our retries."""

    status = 429
    code = "upstream_rate_limited"


class NotFound(AppError):
    """The request names something that does not exist (e.g. an unknown reminder id)."""

    status = 404
    code = "not_found"


class Conflict(AppError):
    """The request cannot apply to the thing in its current state (e.g. changing the read-only .env reminder)."""

    status = 409
    code = "conflict"


class KeyReused(Conflict):
    """An idempotency key sent again with another message: it names a different request."""

    code = "idempotency_key_reused"
