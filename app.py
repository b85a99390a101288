"""The Flask app: a factory that wires settings, store, upstream client, service and the API, and the page."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from flask import Response, current_app, request, send_from_directory
from flask_openapi3 import OpenAPI
from werkzeug.exceptions import HTTPException

from api import api
from channels import Channels
from chat_service import ChatService
from config import ConfigError, Settings, load_settings
from conversations import Conversations
from errors import AppError
from openapi import operation_id
from rate_limits import RateLimitStore
from reminders import ReminderStore
from responses import Error
from scheduler import Reminders
from schemas import request_error
from search import SearchIndex
from security import (
    Security,
    add_security_headers,
    authenticate,
    log_start_up,
    refuse_cross_site,
    trust_proxies,
    warn_about_untrusted_forwarding,
)
from upstream_client import UpstreamClient
from webpush import WebPush

STATIC_DIR = Path(__file__).resolve().parent / "static"
log = logging.getLogger(__name__)


def create_app(settings: Settings | None = None) -> OpenAPI:
    """Build the app; the reminder scheduler is wired but started by the entry point."""
    settings = settings or load_settings()
    _configure_logging(settings)
    app = OpenAPI(
        __name__,
        static_folder=str(STATIC_DIR),
        static_url_path="/static",
        doc_ui=False,
        operation_id_callback=operation_id,
        validation_error_status=400,
        validation_error_model=Error,
        validation_error_callback=lambda error: error_response(request_error(error)),
    )
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    app.json.ensure_ascii = False  # type: ignore[attr-defined]
    app.json.sort_keys = False  # type: ignore[attr-defined]

    conversations = Conversations(settings)
    reminders = ReminderStore(settings.data_dir, settings.timezone, settings.max_message_chars)
    service = ChatService(settings, conversations, UpstreamClient(settings), reminders)
    app.extensions["conversations"] = conversations
    app.extensions["search"] = SearchIndex()  # each worker keeps its own folded copy of every message
    app.extensions["settings"] = settings
    # Where Security's budgets count. Only RATE_LIMIT and ACCESS_TOKEN (wrong guesses) make budgets:
    # without either, no file in the data folder and no wait on an unreachable RATE_LIMIT_STORAGE.
    counts_calls = bool(settings.rate_limit or settings.access_token)
    app.extensions["rate_limits"] = RateLimitStore(settings) if counts_calls else None
    app.extensions["security"] = Security(settings)
    app.extensions["chat"] = service
    service.settle_orphans()
    # A channel deleted or a browser gone: reminders that named it stop naming it.
    webpush = WebPush(settings.data_dir, settings.push_contact, on_removed=reminders.forget_channel)
    app.extensions["webpush"] = webpush
    # A push queued in any worker wakes the leader.
    channels = Channels(settings, poke=reminders.poke, webpush=webpush, on_removed=reminders.forget_channel)
    app.extensions["channels"] = channels
    app.extensions["reminders"] = Reminders(settings, service, reminders, channels)

    trust_proxies(app, settings)
    app.register_api(api)
    app.get(
        "/",
        responses={200: {"description": "The chat page.", "content": {"text/html": {"schema": {"type": "string"}}}}},
    )(index)
    app.get("/favicon.ico", responses={204: {"description": "No icon; answered so browsers stop asking."}})(favicon)
    app.get(
        "/sw.js",
        responses={
            200: {"description": "The service worker.", "content": {"text/javascript": {"schema": {"type": "string"}}}}
        },
    )(service_worker)
    app.before_request(warn_about_untrusted_forwarding)
    app.before_request(refuse_cross_site)  # first: a forged request is refused before it counts as a guess
    app.before_request(authenticate)
    app.after_request(add_security_headers)
    app.register_error_handler(AppError, error_response)
    app.register_error_handler(HTTPException, http_error)
    app.register_error_handler(Exception, unexpected_error)
    log_start_up(settings)
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
    # urllib3's DEBUG lines carry the full upstream URL, and a provider may put the key in its query (?key=).
    logging.getLogger("urllib3").setLevel(max(logging.INFO, root.level))


def index() -> Response:
    """The chat page."""
    return send_from_directory(STATIC_DIR, "index.html")


def favicon() -> Response:
    """An empty answer: browsers ask for /favicon.ico on every page, and a 404 fills logs and consoles."""
    return Response(status=204, headers={"Cache-Control": "max-age=86400"})


def service_worker() -> Response:
    """The service worker that shows push notifications, served from / so its scope is the whole page."""
    response = send_from_directory(STATIC_DIR, "sw.js", mimetype="text/javascript", max_age=0)
    response.headers["Cache-Control"] = "no-cache"  # a new version reaches browsers at once
    return response


def error_response(error: AppError) -> Response:
    """The one JSON error body every failure gets: `{"success": false, "error", "code"}`, its status and headers."""
    response = current_app.json.response(error.body())
    response.status_code = error.status
    response.headers.update(error.headers())
    return response


HTTP_ERROR_CODES = {404: "not_found", 405: "method_not_allowed", 413: "payload_too_large"}


def http_error(error: HTTPException) -> Response | HTTPException:
    """Werkzeug's 404/405/413 as our JSON error under /api; the page's own paths keep the plain answer."""
    if not request.path.startswith("/api/"):
        return error
    status = error.code or 500
    messages = {
        404: f"There is no API route {request.path}.",
        405: f"{request.method} is not allowed on {request.path}.",
        413: f"The request body is larger than {request.max_content_length} bytes.",  # the route's own limit
    }
    app_error = AppError(
        messages.get(status, error.description or error.name),
        status=status,
        code=HTTP_ERROR_CODES.get(status, error.name.lower().replace(" ", "_")),
        allow=list(getattr(error, "valid_methods", None) or []),
    )
    return error_response(app_error)


def unexpected_error(error: Exception) -> Response:
    """A bug: logged with its traceback, answered with one sentence and no details."""
    log.exception("Unexpected error on %s %s", request.method, request.path)
    return error_response(AppError())


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
    main_app.run(
        host=main_settings.host,
        port=main_settings.port,
        debug=main_settings.debug,
        threaded=True,
        extra_files=[main_settings.dotenv_path],
    )  # debug: reload when .env changes
