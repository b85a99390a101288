"""The Flask app: a factory that wires settings, store, upstream client and service, and thin routes."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Any

from flask import Flask, Response, current_app, request, send_from_directory
from werkzeug.exceptions import HTTPException

from chat_service import ChatService
from config import HISTORY_PAGE_MAX, ConfigError, Settings, load_settings
from errors import AppError, BadRequest, UnsupportedMediaType
from history_store import HistoryStore
from openapi import init_openapi
from scheduler import Reminders
from security import init_security
from upstream_client import UpstreamClient

STATIC_DIR = Path(__file__).resolve().parent / "static"
log = logging.getLogger(__name__)


def create_app(settings: Settings | None = None) -> Flask:
    """Build the app; the reminder scheduler is wired but started by the entry point."""
    settings = settings or load_settings()
    _configure_logging(settings)
    app = Flask(__name__, static_folder=str(STATIC_DIR), static_url_path="/static")
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    app.json.ensure_ascii = False  # type: ignore[attr-defined]
    app.json.sort_keys = False  # type: ignore[attr-defined]

    store = HistoryStore(settings.chat_history_file, live_limit=settings.history_live_limit,
                         timezone=settings.timezone)
    service = ChatService(settings, store, UpstreamClient(settings))
    app.extensions["settings"] = settings
    app.extensions["chat"] = service
    app.extensions["reminders"] = Reminders(settings, service)

    _register_routes(app)
    _register_error_handlers(app)
    init_security(app, settings)
    init_openapi(app)
    if not settings.chat_configured:
        log.warning("API_KEY is not set: the page and history work, chat answers 503 until it is set")
    return app


def _configure_logging(settings: Settings) -> None:
    """One handler on the root logger, unless the server (Gunicorn, pytest) already set one up."""
    root = logging.getLogger()
    if not root.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s [%(process)d] %(name)s: %(message)s"))
        root.addHandler(handler)
    root.setLevel(settings.log_level)


def _service() -> ChatService:
    return current_app.extensions["chat"]


def _reminders() -> Reminders:
    return current_app.extensions["reminders"]


def _int_arg(name: str, minimum: int, maximum: int | None = None) -> int | None:
    value = request.args.get(name)
    if value is None or value == "":
        return None
    try:
        number = int(value)
    except ValueError:
        number = minimum - 1
    if number < minimum or (maximum is not None and number > maximum):
        upper = f" and at most {maximum}" if maximum else ""
        raise BadRequest(f'"{name}" must be a whole number of at least {minimum}{upper}.', code=f"invalid_{name}")
    return number


def _json_body() -> Any:
    """The request's JSON body (None if unparsable); 415 unless it is sent as JSON, which also keeps
    cross-site HTML forms out, since they cannot send that content type without a CORS preflight."""
    if not request.is_json:
        raise UnsupportedMediaType('Send the body as JSON, with the header "Content-Type: application/json".')
    return request.get_json(silent=True)


def _sse(events: Generator[dict[str, Any], None, None]) -> Iterator[str]:
    """Server-sent event lines; closing this (client gone) closes the relay, which stores the partial reply."""
    try:
        for event in events:
            yield f"data: {json.dumps(event, ensure_ascii=False)}\n\n"
    finally:
        events.close()


def _register_routes(app: Flask) -> None:
    @app.get("/")
    def index() -> Response:
        """The chat page."""
        return send_from_directory(STATIC_DIR, "index.html")

    @app.post("/api/chat")
    def chat() -> Any:
        """Send a message; answers the stored assistant message as `reply` (and in full as `message`)."""
        service, body = _service(), _json_body()
        message = service.reply(service.message_from(body), service.retry_of_from(body))
        return {"success": True, "reply": message["content"], "message": message}

    @app.post("/api/chat/stream")
    def chat_stream() -> Response:
        """Send a message; answers server-sent events: start, reasoning, delta, then done or error."""
        service, body = _service(), _json_body()
        events = service.stream_reply(service.message_from(body), service.retry_of_from(body))
        response = Response(_sse(events), mimetype="text/event-stream")
        response.headers["Cache-Control"] = "no-cache"
        response.headers["X-Accel-Buffering"] = "no"  # nginx: pass each event on at once
        return response

    @app.get("/api/history")
    def history() -> Any:
        """A page of messages, oldest first: the newest `limit` by default, those older than `before`,
        or those newer than `after` (for polling); `has_more` says whether more lie beyond the page."""
        limit = _int_arg("limit", 1, HISTORY_PAGE_MAX)
        before = _int_arg("before", 1)
        after = _int_arg("after", 0)
        if before is not None and after is not None:
            raise BadRequest('Use either "before" or "after", not both.', code="invalid_query")
        messages, has_more = _service().history(limit, before, after)
        return {"success": True, "messages": messages, "has_more": has_more}

    @app.delete("/api/history")
    def clear_history() -> Any:
        """Clear the conversation; the messages are archived on disk, not destroyed."""
        return {"success": True, "cleared": _service().clear_history()}

    @app.get("/api/health")
    def health() -> Any:
        """Liveness plus whether chat and reminders work; reveals nothing secret."""
        settings: Settings = current_app.extensions["settings"]
        return {
            "status": "ok",
            "scheduler_running": _reminders().is_running(),
            "scheduler_enabled": settings.scheduler_enabled,
            "chat_configured": settings.chat_configured,
            "auth_required": bool(settings.access_token),
        }

    @app.get("/api/schedule")
    def schedule() -> Any:
        """The reminder schedule, its next run and the outcome of the last one."""
        return {"success": True, **_reminders().status()}

    @app.post("/api/schedule/run")
    def run_schedule() -> Any:
        """Send a reminder now, once, and return the stored message."""
        message = _reminders().run_now()
        return {"success": True, "reply": message["content"], "message": message}


def _register_error_handlers(app: Flask) -> None:
    @app.errorhandler(AppError)
    def app_error(error: AppError) -> Response:
        return error.to_response()

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException) -> Any:
        if not request.path.startswith("/api/"):
            return error
        messages = {
            404: f"There is no API route {request.path}.",
            405: f"{request.method} is not allowed on {request.path}.",
            413: f"The request body is larger than {app.config['MAX_CONTENT_LENGTH']} bytes.",
        }
        codes = {404: "not_found", 405: "method_not_allowed", 413: "payload_too_large"}
        status = error.code or 500
        response = error.get_response()
        response.set_data(json.dumps({
            "success": False,
            "error": messages.get(status, error.description or error.name),
            "code": codes.get(status, error.name.lower().replace(" ", "_")),
        }, ensure_ascii=False))
        response.mimetype = "application/json"
        return response

    @app.errorhandler(Exception)
    def unexpected_error(error: Exception) -> Response:
        log.exception("Unexpected error on %s %s", request.method, request.path)
        return AppError("Something went wrong on the server; see its log.").to_response()


def load_settings_or_exit() -> Settings:
    """Settings for an entry point: a bad value stops start-up with one line, not a traceback."""
    try:
        return load_settings()
    except ConfigError as error:
        print(f"Configuration error: {error}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    from werkzeug.serving import is_running_from_reloader

    main_settings = load_settings_or_exit()
    main_app = create_app(main_settings)
    # Under the debug reloader the parent only watches files; the child serves and schedules.
    if not main_settings.debug or is_running_from_reloader():
        main_app.extensions["reminders"].start()
    main_app.run(host=main_settings.host, port=main_settings.port, debug=main_settings.debug, threaded=True,
                 extra_files=[main_settings.dotenv_path])  # debug: reload when .env changes
