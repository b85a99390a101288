"""The OpenAPI 3 description of the HTTP API, served at GET /api/openapi.json.

Each operation's summary and description are the docstring of the route that serves it, read from
the running app, and the limits (message length, page size, body size) come from its settings, so
the document says what this server does. `tests/test_openapi.py` checks that every route is
described and fuzzes the API against the document with Schemathesis.
"""

from __future__ import annotations

import inspect
from typing import Any

from flask import Flask, current_app

from config import HISTORY_PAGE_MAX, Settings

OPENAPI_VERSION = "3.0.3"
# "Not blank" as the app judges it (str.strip), spelled out: regex \s means different things in Python and ECMAScript.
NOT_BLANK = "[^" + "".join(f"\\u{code:04x}" for code in range(0x3001) if chr(code).isspace()) + "]"


def _error(status_text: str, codes: list[str]) -> dict[str, Any]:
    """A response whose body is the error object, with its possible codes listed."""
    listed = ", ".join(f"`{code}`" for code in codes)
    schema = {"allOf": [{"$ref": "#/components/schemas/Error"},
                        {"type": "object", "properties": {"code": {"type": "string", "enum": codes}}}]}
    return {"description": f"{status_text} (code: {listed}).", "content": {"application/json": {"schema": schema}}}


def _with_retry_after(response: dict[str, Any]) -> dict[str, Any]:
    return {**response, "headers": {"Retry-After": {
        "description": "Seconds to wait before trying again.", "schema": {"type": "integer", "minimum": 1}}}}


def _ok(schema_name: str, description: str = "Success.") -> dict[str, Any]:
    return {"description": description,
            "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema_name}"}}}}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/responses/{name}"}


# Errors that any guarded route may give, and those of the routes that call the model.
GUARDED = {"401": _ref("Unauthorized")}
SPENDS_THE_API_KEY = {
    "413": _ref("TooLarge"),
    "415": _ref("NotJson"),
    "429": _ref("RateLimited"),
    "502": _ref("UpstreamError"),
    "503": _ref("Unavailable"),
    "504": _ref("UpstreamTimeout"),
}


def _components(settings: Settings) -> dict[str, Any]:
    message = {
        "type": "object",
        "required": ["id", "role", "content", "timestamp", "is_scheduled"],
        "properties": {
            "id": {"type": "integer", "minimum": 1, "description": "Increasing; never reused."},
            "role": {"type": "string", "enum": ["user", "assistant"]},
            "content": {"type": "string"},
            "timestamp": {"type": "string", "description": "ISO 8601 with the TIMEZONE's offset."},
            "is_scheduled": {"type": "boolean", "description": "A reminder sent by the scheduler."},
            "reply_to": {"type": "integer", "description": "The id of the user message this answers."},
            "model": {"type": "string"},
            "reasoning": {"type": "string", "description": "The model's reasoning, kept apart from the reply."},
            "usage": {"type": "object", "additionalProperties": True},
            "scheduled_for": {"type": "string", "description": "The reminder's cron tick."},
            "incomplete": {"type": "boolean", "description": "The stream broke; `content` is what arrived."},
            "stopped": {"type": "boolean", "description": "The client left mid-stream."},
            "error": {"type": "string", "description": "Why an incomplete reply stopped."},
        },
    }
    chat_result = {
        "type": "object", "required": ["success", "reply", "message"], "additionalProperties": False,
        "properties": {"success": {"type": "boolean", "enum": [True]}, "reply": {"type": "string"},
                       "message": {"$ref": "#/components/schemas/Message"}},
    }
    last_run = {
        "type": "object", "nullable": True,
        "properties": {"time": {"type": "string"}, "ok": {"type": "boolean"},
                       "error": {"type": "string", "nullable": True},
                       "message_id": {"type": "integer", "nullable": True}},
    }
    return {
        "schemas": {
            "Error": {
                "type": "object", "required": ["success", "error", "code"], "additionalProperties": False,
                "properties": {"success": {"type": "boolean", "enum": [False]},
                               "error": {"type": "string", "minLength": 1, "description": "One human sentence."},
                               "code": {"type": "string", "description": "Stable, for programs."},
                               "user_message": {"$ref": "#/components/schemas/Message",
                                                "description": "A chat that failed after storing the user's "
                                                               "message: retry it with `retry_of`."}},
            },
            "Message": message,
            "ChatRequest": {
                "type": "object", "required": ["message"],
                "properties": {"message": {
                    "type": "string", "minLength": 1, "maxLength": settings.max_message_chars, "pattern": NOT_BLANK,
                    "description": f"Not blank; at most MAX_MESSAGE_CHARS ({settings.max_message_chars}) characters.",
                }, "retry_of": {
                    "type": "integer", "minimum": 1, "nullable": True,
                    "description": "Retrying a failed turn: the id of its stored user message (from the error's "
                                   "`user_message`), so the text is not stored twice.",
                }},
            },
            "ChatResult": chat_result,
            "History": {
                "type": "object", "required": ["success", "messages", "has_more"], "additionalProperties": False,
                "properties": {"success": {"type": "boolean", "enum": [True]},
                               "messages": {"type": "array", "items": {"$ref": "#/components/schemas/Message"}},
                               "has_more": {"type": "boolean"}},
            },
            "Cleared": {
                "type": "object", "required": ["success", "cleared"], "additionalProperties": False,
                "properties": {"success": {"type": "boolean", "enum": [True]},
                               "cleared": {"type": "integer", "minimum": 0}},
            },
            "Health": {
                "type": "object",
                "required": ["status", "scheduler_running", "scheduler_enabled", "chat_configured"],
                "properties": {"status": {"type": "string", "enum": ["ok"]},
                               "scheduler_running": {"type": "boolean"}, "scheduler_enabled": {"type": "boolean"},
                               "chat_configured": {"type": "boolean"}, "auth_required": {"type": "boolean"}},
            },
            "Schedule": {
                "type": "object",
                "required": ["success", "enabled", "running", "cron", "cron_fields", "timezone", "next_run_time",
                             "last_run"],
                "properties": {"success": {"type": "boolean", "enum": [True]}, "enabled": {"type": "boolean"},
                               "running": {"type": "boolean"}, "cron": {"type": "string"},
                               "cron_fields": {"type": "object", "additionalProperties": {"type": "string"}},
                               "timezone": {"type": "string"},
                               "next_run_time": {"type": "string", "nullable": True}, "last_run": last_run},
            },
            "Event": {
                "type": "object", "required": ["data"], "description": "One server-sent event (schema per event).",
                "properties": {"data": {"type": "string", "description": "A JSON object with a `type`."},
                               "event": {"type": "string", "enum": ["message"]}},
            },
            "LoginRequest": {"type": "object", "required": ["token"], "properties": {"token": {"type": "string"}}},
            "Success": {"type": "object", "required": ["success"],
                        "properties": {"success": {"type": "boolean", "enum": [True]},
                                       "auth_required": {"type": "boolean"}}},
        },
        "responses": {
            "BadRequest": _error("The request is malformed", [
                "invalid_json", "missing_message", "invalid_message", "empty_message", "invalid_limit",
                "invalid_before", "invalid_after", "invalid_query", "invalid_retry_of", "missing_token",
                "bad_request"]),
            "Unauthorized": _error("ACCESS_TOKEN is set and the request has neither the Bearer token nor a login "
                                   "cookie", ["unauthorized", "invalid_token"]),
            "NotFound": _error("There is no such API route", ["not_found"]),
            "MethodNotAllowed": _error("The route exists but not with this method (see the Allow header)",
                                       ["method_not_allowed"]),
            "TooLarge": _error(f"The message is over MAX_MESSAGE_CHARS, or the body over MAX_BODY_BYTES "
                               f"({settings.max_body_bytes} bytes)", ["message_too_long", "payload_too_large"]),
            "NotJson": _error("The body was not sent as application/json", ["unsupported_media_type"]),
            "RateLimited": _with_retry_after(_error(
                "Too many requests: this client is over RATE_LIMIT, or the model API still refused with 429 "
                "after the retries", ["rate_limited", "upstream_rate_limited"])),
            "UpstreamError": _error("The model API failed: an error status, a reply that is not chat completion "
                                    "JSON, or no connection", [
                                        "upstream_error", "upstream_auth_failed", "upstream_bad_response",
                                        "upstream_unreachable", "upstream_incomplete"]),
            "Unavailable": _error("Chat is not configured (no API_KEY), or the history cannot be saved (the data "
                                  "folder is read-only or full)", ["not_configured", "storage_unavailable"]),
            "StorageUnavailable": _error("The history cannot be read or saved", ["storage_unavailable"]),
            "UpstreamTimeout": _error("The model API did not answer within READ_TIMEOUT", ["upstream_timeout"]),
        },
        "securitySchemes": {
            "bearerToken": {"type": "http", "scheme": "bearer",
                            "description": "ACCESS_TOKEN, when the server sets one."},
            "loginCookie": {"type": "apiKey", "in": "cookie", "name": "chat_session",
                            "description": "Set by POST /api/login."},
        },
    }


def _operations(settings: Settings) -> dict[tuple[str, str], dict[str, Any]]:
    """Parameters, bodies and responses of each (path, method); summaries come from the routes."""
    chat_body = {"required": True, "content": {"application/json": {
        "schema": {"$ref": "#/components/schemas/ChatRequest"}, "example": {"message": "你好"}}}}
    events = ("One `data: {json}` line per event: `start` (with `user_message`), `reasoning` and `delta` (with "
              "`content`), then `done` (with the stored `message`) or `error` (with `error` and `code`, when the "
              "model fails mid-reply; the partial reply is stored as `incomplete`).")

    def integer(name: str, minimum: int, description: str, maximum: int | None = None) -> dict[str, Any]:
        number: dict[str, Any] = {"type": "integer", "minimum": minimum}
        if maximum is not None:
            number["maximum"] = maximum
        # An empty value (`?limit=`, as a form sends it) counts as absent.
        schema = {"anyOf": [number, {"type": "string", "enum": [""]}]}
        return {"name": name, "in": "query", "required": False, "schema": schema,
                "description": description + " Empty means absent."}

    return {
        ("/", "get"): {"security": [], "responses": {"200": {
            "description": "The chat page.", "content": {"text/html": {"schema": {"type": "string"}}}}}},
        ("/api/chat", "post"): {"requestBody": chat_body, "responses": {
            "200": _ok("ChatResult", "The reply, stored; `message` is the stored assistant message."),
            "400": _ref("BadRequest"), **GUARDED, **SPENDS_THE_API_KEY}},
        ("/api/chat/stream", "post"): {"requestBody": chat_body, "responses": {
            "200": {"description": "Server-sent events. " + events,
                    "content": {"text/event-stream": {"schema": {"$ref": "#/components/schemas/Event"}}}},
            "400": _ref("BadRequest"), **GUARDED, **SPENDS_THE_API_KEY}},
        ("/api/history", "get"): {
            "parameters": [
                integer("limit", 1, f"Page size (default HISTORY_PAGE_SIZE, {settings.history_page_size}).",
                        HISTORY_PAGE_MAX),
                integer("before", 1, "Only messages with a smaller id: the page before this one."),
                integer("after", 0, "Only messages with a larger id (for polling); not with `before`."),
            ],
            "responses": {"200": _ok("History", "A page of messages, oldest first."), "400": _ref("BadRequest"),
                          **GUARDED, "503": _ref("StorageUnavailable")}},
        ("/api/history", "delete"): {"responses": {
            "200": _ok("Cleared", "How many messages were cleared (they are archived on disk)."),
            **GUARDED, "503": _ref("StorageUnavailable")}},
        ("/api/health", "get"): {"security": [], "responses": {"200": _ok("Health")}},
        ("/api/schedule", "get"): {"responses": {"200": _ok("Schedule"), **GUARDED}},
        ("/api/schedule/run", "post"): {"responses": {
            "200": _ok("ChatResult", "The reminder, stored."), **GUARDED,
            **{status: response for status, response in SPENDS_THE_API_KEY.items() if status not in ("413", "415")},
        }},
        ("/api/login", "post"): {"security": [], "requestBody": {"required": True, "content": {"application/json": {
            "schema": {"$ref": "#/components/schemas/LoginRequest"}}}}, "responses": {
            "200": {**_ok("Success", "Logged in: the login cookie is set (or no token is needed)."),
                    "headers": {"Set-Cookie": {"schema": {"type": "string"}}}},
            "400": _ref("BadRequest"), "401": _ref("Unauthorized"), "413": _ref("TooLarge"),
            "415": _ref("NotJson"), "429": _ref("RateLimited")}},
        ("/api/logout", "post"): {"security": [], "responses": {"200": _ok("Success", "The login cookie is cleared.")}},
        ("/api/openapi.json", "get"): {"responses": {"200": {
            "description": "This document.", "content": {"application/json": {"schema": {"type": "object"}}}},
            **GUARDED}},
    }


def _routes(app: Flask) -> dict[tuple[str, str], str]:
    """Every (path, method) the app serves, outside /static, with its endpoint name."""
    found = {}
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        for method in rule.methods or ():
            if method not in ("HEAD", "OPTIONS"):
                found[(rule.rule, method.lower())] = rule.endpoint
    return found


def undocumented_routes(app: Flask) -> set[tuple[str, str]]:
    """Routes the app serves that the document leaves out; tests keep this empty."""
    return set(_routes(app)) - set(_operations(app.extensions["settings"]))


def build_document(app: Flask) -> dict[str, Any]:
    """The OpenAPI document for `app`: operations that it serves, described by their routes' docstrings."""
    settings: Settings = app.extensions["settings"]
    routes = _routes(app)
    paths: dict[str, dict[str, Any]] = {}
    for (path, method), operation in _operations(settings).items():
        endpoint = routes.get((path, method))
        if endpoint is None:
            continue  # e.g. a route another module registers only in some configurations
        # The docstring's first paragraph is the summary; any further ones, the description.
        doc = inspect.getdoc(app.view_functions[endpoint]) or endpoint
        summary, _, description = doc.partition("\n\n")
        paths.setdefault(path, {})[method] = {
            "operationId": f"{method}_{endpoint}", "summary": " ".join(summary.split()),
            **({"description": " ".join(description.split())} if description.strip() else {}), **operation}
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": "Chat assistant API",
            "version": "1",
            "description": (
                "Chat with an OpenAI-compatible model; the conversation is stored on the server. Every error is "
                '`{"success": false, "error": "<sentence>", "code": "<code>"}`; an unknown /api route answers 404 '
                "`not_found` and a wrong method 405 `method_not_allowed`. With ACCESS_TOKEN set, every route "
                "except /api/health, /api/login and /api/logout needs the Bearer token or the login cookie."),
        },
        "servers": [{"url": "/"}],
        "security": [{}, {"bearerToken": []}, {"loginCookie": []}],
        "paths": paths,
        "components": _components(settings),
    }


def init_openapi(app: Flask) -> None:
    """Serve the document at GET /api/openapi.json."""

    @app.get("/api/openapi.json")
    def openapi_document() -> Any:
        """This API's OpenAPI 3 description."""
        if "openapi" not in current_app.extensions:
            current_app.extensions["openapi"] = build_document(current_app)
        return current_app.extensions["openapi"]
