"""The HTTP API under /api: thin routes that validate with `schemas`, call the service, and answer JSON.

Each route declares its request model (a `body` or `query` parameter) and its answers once, in its
decorator; flask-openapi3 validates with them and builds /api/openapi.json from them and the docstrings.
A route is guarded by ACCESS_TOKEN unless marked `@public`, and counts against RATE_LIMIT when marked
`@spends_api_key`.
"""

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from flask import Response, current_app, request
from flask_openapi3 import APIBlueprint

from channels import Channels
from chat_service import ChatService
from config import Settings
from conversations import MAIN, Conversations
from errors import BadRequest, Conflict, NotFound, Unauthorized, UnsupportedMediaType
from exchange import chatgpt_export, conversation_json, conversation_markdown, download_name, read_import
from openapi import document, operation_id
from reminders import NEXT_RUNS_SHOWN, describe, occurrences_after, validate
from responses import (
    BAD_REQUEST,
    CALLS_THE_MODEL,
    CHANGES_STATE,
    CHANNEL_NOT_FOUND,
    CHANNEL_READ_ONLY,
    CHANNEL_REFUSED,
    CONVERSATION_NOT_FOUND,
    DOWNLOAD,
    GUARDED,
    IMPORT_BODY,
    IMPORT_REFUSED,
    KEY_REUSED,
    MAIN_CONVERSATION,
    MESSAGE_NOT_FOUND,
    NO_BODY,
    POSTED,
    RATE_LIMITED,
    READ_ONLY,
    REMINDER_MESSAGE_NOT_FOUND,
    REMINDER_NOT_FOUND,
    REMINDER_REFUSED,
    STORAGE_UNAVAILABLE,
    SUBSCRIPTION_REFUSED,
    TAKES_JSON,
    TAKES_REMINDER_MESSAGE,
    TOO_LARGE,
    TOO_MANY_CHANNELS,
    TOO_MANY_REMINDERS,
    TOO_MANY_SUBSCRIPTIONS,
    UNAUTHORIZED,
    UNSUBSCRIBE_REFUSED,
    ChannelList,
    ChannelResult,
    ChannelTested,
    ChatResult,
    Cleared,
    ConversationList,
    ConversationResult,
    Health,
    History,
    Imported,
    PushKey,
    PushSubscribed,
    PushUnsubscribed,
    ReminderList,
    ReminderMessageDone,
    ReminderPreview,
    ReminderResult,
    ReminderRuns,
    ReminderSent,
    ReplyStopped,
    Schedule,
    SearchResults,
    Success,
    Usage,
)
from scheduler import Reminders
from schemas import (
    ChannelChange,
    ChannelCreate,
    ChannelPath,
    ChatRequest,
    ConversationChange,
    ConversationCreate,
    ConversationPath,
    ConversationQuery,
    ExportQuery,
    HistoryQuery,
    LoginRequest,
    PushSubscribe,
    PushUnsubscribe,
    ReminderChange,
    ReminderCreate,
    ReminderMessage,
    ReminderPath,
    ReminderPreviewQuery,
    ReminderSnooze,
    ReplyPath,
    ReplyQuery,
    ReplyStop,
    SearchQuery,
    UsageQuery,
    body_example,
)
from search import SearchIndex
from security import COOKIE_MAX_AGE, COOKIE_NAME, public, security, spends_api_key
from usage import DEFAULT_DAYS, UsageReport
from webpush import WebPush

api = APIBlueprint("api", __name__, url_prefix="/api", operation_id_callback=operation_id)
# Guarded routes may be called with the token, with the login cookie, or with neither while no ACCESS_TOKEN is set.
TOKEN_OR_COOKIE = [{}, {"bearerToken": []}, {"loginCookie": []}]
EVENTS = {
    "description": "Server-sent events, each an `id:` line (1, 2, 3 … per reply; resume after one with "
    "GET /api/chat/stream/{message_id} and Last-Event-ID) and a `data: {json}` line: `start` (with `message_id`, the "
    "reply being written, `conversation_id` and `user_message`), `reasoning` and `delta` (with `content`), "
    "`reminder` (with `action`, `reminder` and for an update `previous`, as soon as a reminder tool call ran), then "
    "one of `done` (with the stored `message`), `stopped` (Stop was asked; `message`: what arrived, stored "
    "`stopped`) or `error` (with `error`, `code` and the stored `message`: what arrived, `incomplete`; code "
    "`interrupted` when the server process writing it died). A client that leaves does not stop the reply.",
    "content": {
        "text/event-stream": {
            "schema": {  # one event, as Schemathesis checks each
                "type": "object",
                "required": ["data"],
                "properties": {
                    "data": {"type": "string", "description": "A JSON object with a `type`."},
                    "event": {"type": "string", "enum": ["message"]},
                },
            }
        }
    },
}


NAMES_A_CONVERSATION = {404: CONVERSATION_NOT_FOUND, 503: STORAGE_UNAVAILABLE}
TURN_REFUSED = {404: CONVERSATION_NOT_FOUND, 409: KEY_REUSED}


def _service() -> ChatService:
    """The app's chat service."""
    return current_app.extensions["chat"]


def _reminders() -> Reminders:
    """The app's reminder scheduler."""
    return current_app.extensions["reminders"]


@api.before_request
def _require_json_content_type() -> None:
    """Every POST must say it is JSON, even with no body: an HTML form from another site cannot (415).

    An import may also come as a file upload: there, refuse_cross_site alone keeps other sites out.
    """
    upload = request.endpoint == "api.import_conversations" and request.mimetype == "multipart/form-data"
    if request.method == "POST" and not request.is_json and not upload:
        raise UnsupportedMediaType('Send the request as JSON, with the header "Content-Type: application/json".')


@api.before_request
def _require_json_object_body() -> None:
    """For a route that takes a JSON body (a `body` parameter): 415 unless it is sent as JSON, 400 unless
    it is a JSON object.

    The content type also keeps cross-site HTML forms out: they cannot send application/json without a
    CORS preflight. Checking for an object here keeps flask-openapi3 from decoding a JSON string again.
    """
    view = current_app.view_functions.get(request.endpoint or "")
    body_model = getattr(view, "__annotations__", {}).get("body")
    if body_model is None:
        return
    if not request.is_json:
        raise UnsupportedMediaType('Send the body as JSON, with the header "Content-Type: application/json".')
    try:
        parsed = request.get_json(silent=True)
    except RecursionError:  # nested deeper than the parser can follow (e.g. '[' * 30000): malformed like any other
        parsed = None
    if not isinstance(parsed, dict):
        raise BadRequest(
            f"The request body must be a JSON object such as {body_example(body_model)}.", code="invalid_json"
        )


def _sse(events: Iterator[dict[str, Any]]) -> Response:
    """Server-sent events, each with its `id:` for Last-Event-ID. A client that leaves stops only its reading
    of the reply's journal, never the reply."""

    def lines() -> Iterator[str]:
        for event in events:
            data = {key: value for key, value in event.items() if key != "id"}
            yield f"id: {event['id']}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"

    response = Response(lines(), mimetype="text/event-stream")
    closing = getattr(events, "close", None)
    if closing is not None:  # called by the server even if the body was never read: the reply goes on without it
        response.call_on_close(closing)
    response.headers["Cache-Control"] = "no-cache"
    response.headers["X-Accel-Buffering"] = "no"  # nginx: pass each event on at once
    return response


@api.post(
    "/chat",
    security=TOKEN_OR_COOKIE,
    responses={200: ChatResult, **TAKES_JSON, **GUARDED, **TURN_REFUSED, **CALLS_THE_MODEL},
)
@spends_api_key
def chat(body: ChatRequest) -> Any:
    """Send a message; answers the stored assistant message as `reply` (and in full as `message`)."""
    message = _service().reply(body.message, body.retry_of, body.conversation_id, body.idempotency_key)
    return {"success": True, "reply": message["content"], "message": message}


@api.post(
    "/chat/stream",
    security=TOKEN_OR_COOKIE,
    responses={200: EVENTS, **TAKES_JSON, **GUARDED, **TURN_REFUSED, **CALLS_THE_MODEL},
)
@spends_api_key
def chat_stream(body: ChatRequest) -> Response:
    """Send a message; answers server-sent events: start, reasoning, delta, then done or error."""
    return _sse(_service().stream_reply(body.message, body.retry_of, body.conversation_id, body.idempotency_key))


@api.get(
    "/chat/stream/<message_id>",
    security=TOKEN_OR_COOKIE,
    responses={200: EVENTS, 400: BAD_REQUEST, **GUARDED, 404: MESSAGE_NOT_FOUND, 503: STORAGE_UNAVAILABLE},
)
def chat_stream_resume(path: ReplyPath, query: ReplyQuery) -> Response:
    """Follow a reply from any worker: the events after `after` (or Last-Event-ID), then live until it ends."""
    after = _last_event_id(request.headers.get("Last-Event-ID"), query.after or 0)
    return _sse(_service().follow_reply(query.conversation_id or MAIN, path.message_id, after))


@api.post(
    "/chat/stream/<message_id>/stop",
    security=TOKEN_OR_COOKIE,
    responses={200: ReplyStopped, **TAKES_JSON, **GUARDED, 404: MESSAGE_NOT_FOUND, 503: STORAGE_UNAVAILABLE},
)
def chat_stream_stop(path: ReplyPath, body: ReplyStop) -> Any:
    """Stop a reply being written (on any worker) within a second, even while the model is silent; answers it
    as stored: the text received so far, `stopped`."""
    return {"success": True, "message": _service().stop_reply(body.conversation_id, path.message_id)}


def _last_event_id(header: str | None, after: int) -> int:
    """Where a reconnecting client left off: the Last-Event-ID it sends (a browser's EventSource does), else `after`."""
    if header is not None and header.strip().isascii() and header.strip().isdigit():  # not '²', which int() refuses
        return int(header.strip())
    return after


@api.get(
    "/history",
    security=TOKEN_OR_COOKIE,
    responses={200: History, 400: BAD_REQUEST, **GUARDED, **NAMES_A_CONVERSATION},
)
def history(query: HistoryQuery) -> Any:
    """A page of messages, oldest first.

    The newest `limit` by default, those older than `before`, or those newer than `after` (for
    polling); `has_more` says whether more lie beyond the page.
    """
    messages, has_more = _service().history(query.limit, query.before, query.after, query.conversation_id)
    return {"success": True, "messages": messages, "has_more": has_more}


@api.delete(
    "/history",
    security=TOKEN_OR_COOKIE,
    responses={200: Cleared, 400: BAD_REQUEST, **CHANGES_STATE, **GUARDED, **NAMES_A_CONVERSATION},
)
def clear_history(query: ConversationQuery) -> Any:
    """Clear a conversation (default main); the messages are archived on disk, not destroyed."""
    return {"success": True, "cleared": _service().clear_history(query.conversation_id)}


# ---- conversations ---------------------------------------------------------------------------


def _conversations() -> Conversations:
    return current_app.extensions["conversations"]


@api.get(
    "/conversations", security=TOKEN_OR_COOKIE, responses={200: ConversationList, **GUARDED, 503: STORAGE_UNAVAILABLE}
)
def list_conversations() -> Any:
    """Every conversation: pinned first, then the most recently updated."""
    return {"success": True, "conversations": _conversations().listed()}


@api.post(
    "/conversations",
    security=TOKEN_OR_COOKIE,
    responses={201: ConversationResult, **TAKES_JSON, **GUARDED, 503: STORAGE_UNAVAILABLE},
)
def create_conversation(body: ConversationCreate) -> Any:
    """Start a conversation; without a `title` it is titled after its first exchange."""
    return {"success": True, "conversation": _conversations().create(" ".join(body.title.split()))}, 201


@api.patch(
    "/conversations/<conversation_id>",
    security=TOKEN_OR_COOKIE,
    responses={200: ConversationResult, **TAKES_JSON, **GUARDED, **NAMES_A_CONVERSATION},
)
def change_conversation(path: ConversationPath, body: ConversationChange) -> Any:
    """Rename (`title`) or pin (`pinned`) a conversation."""
    changes = body.model_dump(include={"title", "pinned"}, exclude_none=True)
    if "title" in changes:
        changes["title"] = " ".join(changes["title"].split())
    return {"success": True, "conversation": _conversations().change(path.conversation_id, **changes)}


@api.delete(
    "/conversations/<conversation_id>",
    security=TOKEN_OR_COOKIE,
    responses={200: Success, **CHANGES_STATE, 409: MAIN_CONVERSATION, **GUARDED, **NAMES_A_CONVERSATION},
)
def delete_conversation(path: ConversationPath) -> Any:
    """Delete a conversation: its files move to `conversations/deleted/`, kept on disk. Not the main one."""
    _conversations().delete(path.conversation_id)
    return {"success": True}


@api.get(
    "/conversations/<conversation_id>/export",
    security=TOKEN_OR_COOKIE,
    responses={200: DOWNLOAD, 400: BAD_REQUEST, **GUARDED, **NAMES_A_CONVERSATION},
)
def export_conversation(path: ConversationPath, query: ExportQuery) -> Response:
    """One conversation as a file: `markdown` to read, or `json` (its fields and every message) to keep."""
    meta = _conversations().describe(path.conversation_id)
    messages = _conversations().store(path.conversation_id).visible()
    if query.format == "markdown":
        payload, kind, extension = conversation_markdown(meta, messages), "text/markdown", "md"
    else:
        payload, kind, extension = _json_text(conversation_json(meta, messages)), "application/json", "json"
    return _download(payload, kind, download_name(meta, extension))


@api.get("/export", security=TOKEN_OR_COOKIE, responses={200: DOWNLOAD, **GUARDED, 503: STORAGE_UNAVAILABLE})
def export_all() -> Response:
    """Every conversation as ChatGPT's `conversations.json`, which POST /api/import (ours or another's) reads."""
    everything = [
        (_conversations().describe(conversation_id), store.visible())
        for conversation_id, store in _conversations().each()
    ]
    return _download(_json_text(chatgpt_export(everything)), "application/json", "conversations.json")


def _json_text(data: Any) -> str:
    return json.dumps(data, ensure_ascii=False, indent=1)


def _download(payload: str, kind: str, name: str) -> Response:
    response = Response(payload, mimetype=kind)
    response.headers["Content-Disposition"] = f'attachment; filename="{name}"'
    return response


@api.post(
    "/import",
    security=TOKEN_OR_COOKIE,
    responses={200: Imported, 400: IMPORT_REFUSED, 413: TOO_LARGE, **POSTED, **GUARDED, 503: STORAGE_UNAVAILABLE},
    openapi_extensions=IMPORT_BODY,
)
def import_conversations() -> Any:
    """Create conversations from a `conversations.json` (ours or ChatGPT's); importing it again adds nothing."""
    request.max_content_length = current_app.extensions["settings"].import_max_bytes
    upload = request.files.get("file")
    raw = upload.read() if upload is not None else request.get_data()
    try:
        imported = read_import(raw)
    except ValueError as problem:
        raise BadRequest(str(problem), code="invalid_import") from None
    created, skipped = _conversations().import_all(imported)
    return {"success": True, "imported": len(created), "skipped": skipped, "conversations": created}


@api.get(
    "/search",
    security=TOKEN_OR_COOKIE,
    responses={200: SearchResults, 400: BAD_REQUEST, **GUARDED, 503: STORAGE_UNAVAILABLE},
)
def search(query: SearchQuery) -> Any:
    """Messages of every conversation that contain each word of `q` (any case; Chinese words as written)."""
    index: SearchIndex = current_app.extensions["search"]
    try:
        results = index.search(_conversations().sources(), query.q, query.limit or 50)
    except ValueError as problem:
        raise BadRequest(str(problem), code="invalid_q") from None
    return {"success": True, "results": results}


@api.get(
    "/usage",
    security=TOKEN_OR_COOKIE,
    responses={200: Usage, 400: BAD_REQUEST, **GUARDED, 503: STORAGE_UNAVAILABLE},
)
def usage(query: UsageQuery) -> Any:
    """Tokens the model API reported for the stored replies of the last `days` days, per day and per conversation."""
    report: UsageReport = current_app.extensions["usage"]
    return {"success": True, **report.report(query.days or DEFAULT_DAYS)}


@api.get("/health", responses={200: Health})
@public
def health() -> Any:
    """Liveness plus whether chat and reminders work; reveals nothing secret."""
    settings: Settings = current_app.extensions["settings"]
    return {
        "status": "ok",
        "scheduler_running": _reminders().is_running(),
        "scheduler_enabled": settings.scheduler_enabled,
        "chat_configured": settings.chat_configured,
        "auth_required": bool(settings.access_token),
        "max_message_chars": settings.max_message_chars,
    }


@api.get("/schedule", security=TOKEN_OR_COOKIE, responses={200: Schedule, **GUARDED})
def schedule() -> Any:
    """The reminder schedule, its next run and the outcome of the last one."""
    return {"success": True, **_reminders().status()}


@api.post(
    "/schedule/run",
    security=TOKEN_OR_COOKIE,
    responses={200: ChatResult, **POSTED, **GUARDED, **CALLS_THE_MODEL},
    openapi_extensions=NO_BODY,
)
@spends_api_key
def run_schedule() -> Any:
    """Send a reminder now, once, and return the stored message."""
    message = _reminders().run_now()
    return {"success": True, "reply": message["content"], "message": message}


# ---- reminders -------------------------------------------------------------------------------

NAMES_A_REMINDER = {404: REMINDER_NOT_FOUND, 503: STORAGE_UNAVAILABLE}


def _now() -> datetime:
    return datetime.now(ZoneInfo(current_app.extensions["settings"].timezone))


def _shown(reminder_id: str) -> dict[str, Any]:
    """One reminder as the API shows it; the .env one included."""
    if reminder_id == "env":
        return _reminders().as_reminder()
    return describe(_reminders().store.get(reminder_id), _now())


def _writable(reminder_id: str) -> str:
    """`reminder_id`, unless it names the .env reminder (409)."""
    if reminder_id == "env":
        raise Conflict(
            "The .env reminder is read-only: change CRON_* or SCHEDULED_MESSAGE_PROMPT in .env and restart.",
            code="reminder_read_only",
        )
    return reminder_id


@api.get("/reminders", security=TOKEN_OR_COOKIE, responses={200: ReminderList, **GUARDED, 503: STORAGE_UNAVAILABLE})
def list_reminders() -> Any:
    """Every reminder with its next three fire times and last outcome; the read-only .env one first."""
    now = _now()
    listed = [describe(reminder, now) for reminder in _reminders().store.all()]
    pushed = _channels().outbox.outcomes()
    listed = [_reminders().as_reminder(), *listed]
    for reminder in listed:
        if reminder["last_run"]:
            reminder["last_run"] = _with_outcomes(reminder["id"], reminder["last_run"], pushed)
    return {"success": True, "reminders": listed}


@api.post(
    "/reminders",
    security=TOKEN_OR_COOKIE,
    responses={
        201: ReminderResult,
        **TAKES_JSON,
        400: REMINDER_REFUSED,
        409: TOO_MANY_REMINDERS,
        **GUARDED,
        503: STORAGE_UNAVAILABLE,
    },
)
def create_reminder(body: ReminderCreate) -> Any:
    """Create a reminder: `{"text": "吃药", "at": "2026-11-26T08:00:00"}` or `{"text": "…", "cron": "0 8 * * 1-5"}`."""
    _channels().check_ids(body.channels)
    _check_conversation(body.conversation_id)
    reminder = _reminders().store.create(body.model_dump(include=set(ReminderCreate.model_fields)), _now())
    return {"success": True, "reminder": describe(reminder, _now())}, 201


@api.patch(
    "/reminders/<reminder_id>",
    security=TOKEN_OR_COOKIE,
    responses={200: ReminderResult, **TAKES_JSON, 400: REMINDER_REFUSED, 409: READ_ONLY, **GUARDED, **NAMES_A_REMINDER},
)
def change_reminder(path: ReminderPath, body: ReminderChange) -> Any:
    """Change some of a reminder's fields (e.g. `{"enabled": false}` pauses it)."""
    given = body.model_dump(include=set(ReminderChange.model_fields), exclude_unset=True)
    changes = {key: value for key, value in given.items() if value is not None}
    if "channels" in given:  # null means every channel
        _channels().check_ids(given["channels"])
        changes["channels"] = given["channels"]
    _check_conversation(changes.get("conversation_id"))
    reminder = _reminders().store.update(_writable(path.reminder_id), changes, _now())
    return {"success": True, "reminder": describe(reminder, _now())}


@api.delete(
    "/reminders/<reminder_id>",
    security=TOKEN_OR_COOKIE,
    responses={200: Success, **CHANGES_STATE, 409: READ_ONLY, **GUARDED, **NAMES_A_REMINDER},
)
def delete_reminder(path: ReminderPath) -> Any:
    """Delete a reminder; it fires no more."""
    _reminders().store.delete(_writable(path.reminder_id))
    return {"success": True}


@api.post(
    "/reminders/<reminder_id>/run",
    security=TOKEN_OR_COOKIE,
    responses={200: ReminderSent, **POSTED, **GUARDED, **NAMES_A_REMINDER, **CALLS_THE_MODEL},
    openapi_extensions=NO_BODY,
)
@spends_api_key
def run_reminder(path: ReminderPath) -> Any:
    """Send a reminder now, once, outside its schedule; a model failure still sends its text (`generated: false`)."""
    reminders = _reminders()
    message = reminders.run_now() if path.reminder_id == "env" else reminders.delivery.run_now(path.reminder_id)
    return {"success": True, "reminder": _shown(path.reminder_id), "message": message}


@api.get(
    "/reminders/<reminder_id>/runs",
    security=TOKEN_OR_COOKIE,
    responses={200: ReminderRuns, **GUARDED, **NAMES_A_REMINDER},
)
def reminder_runs(path: ReminderPath) -> Any:
    """A reminder's delivery log, newest first (at most 50; the .env reminder keeps only its last run)."""
    if path.reminder_id == "env":
        last = _reminders().as_reminder()["last_run"]
        runs = [last] if last else []
    else:
        runs = _reminders().store.runs(path.reminder_id)
    pushed = _channels().outbox.outcomes()
    return {"success": True, "runs": [_with_outcomes(path.reminder_id, run, pushed) for run in runs]}


def _with_outcomes(reminder_id: str, run: dict[str, Any], pushed: dict[Any, Any]) -> dict[str, Any]:
    """`run` with how its message was pushed to each channel, if it was (a run with no message has none)."""
    outcomes = pushed.get((reminder_id, run.get("message_id")))
    return {**run, "channels": outcomes} if outcomes else run


@api.get(
    "/schedule/preview",
    security=TOKEN_OR_COOKIE,
    responses={200: ReminderPreview, 400: REMINDER_REFUSED, **GUARDED},
)
def preview_reminder(query: ReminderPreviewQuery) -> Any:
    """The next three fire times of `at` or `cron` (in `timezone`), checked as a create would; nothing is saved."""
    now = _now()
    unsaved = {
        "text": "preview",
        "at": query.at,
        "cron": query.cron,
        "timezone": query.timezone or _reminders().store.default_timezone,
        "mode": "plain",
        "enabled": True,
    }
    validate(unsaved, now)
    zone = ZoneInfo(unsaved["timezone"])  # shown in the reminder's zone, as a saved one's next_runs are
    runs = occurrences_after(unsaved, now, NEXT_RUNS_SHOWN)
    return {"success": True, "next_runs": [t.astimezone(zone).isoformat() for t in runs]}


def _check_conversation(conversation_id: str | None) -> None:
    """400 for a reminder that names a conversation there is not."""
    if conversation_id is not None and not _conversations().exists(conversation_id):
        raise BadRequest(
            f'"conversation_id" {conversation_id!r} is not a conversation; see GET /api/conversations.',
            code="unknown_conversation",
        )


def _reminder_conversation(reminder_id: str, conversation_id: str | None, message_id: int) -> str:
    """Where a reminder's message is: the conversation named; else the one holding a message `message_id` that
    reminder sent, looking first where the reminder speaks now (it may have moved, been deleted, or its
    conversation deleted); else main."""
    if conversation_id is not None:
        return conversation_id
    if reminder_id == "env":
        return MAIN
    reminder = next((r for r in _reminders().store.all() if r["id"] == reminder_id), None)
    first = _service().reminder_conversation(reminder) if reminder else MAIN
    others = [cid for cid, _store in _conversations().each() if cid != first]
    return next(
        (cid for cid in [first, *others] if _conversations().store(cid).reminder_message(message_id, reminder_id)),
        first,
    )


def _sender(reminder_id: str) -> str | None:
    """A reminder id as its messages carry it: none for the .env reminder."""
    return None if reminder_id == "env" else reminder_id


def _not_sent_by(reminder_id: str, message_id: int) -> NotFound:
    return NotFound(
        f"Message {message_id} is not a recent message of reminder {reminder_id!r}.", code="reminder_message_not_found"
    )


@api.post(
    "/reminders/<reminder_id>/snooze",
    security=TOKEN_OR_COOKIE,
    responses={201: ReminderResult, **TAKES_REMINDER_MESSAGE, **GUARDED, 404: REMINDER_MESSAGE_NOT_FOUND},
)
def snooze_reminder(path: ReminderPath, body: ReminderSnooze) -> Any:
    """Remind again once, `minutes` (default 10) from now: a new one-off reminder with the same text and mode.

    For the .env reminder, or one deleted since, the new reminder says the message's own words (`plain`).
    """
    conversation_id = _reminder_conversation(path.reminder_id, body.conversation_id, body.message_id)
    message = _conversations().store(conversation_id).reminder_message(body.message_id, _sender(path.reminder_id))
    if message is None:
        raise _not_sent_by(path.reminder_id, body.message_id)
    store = _reminders().store
    original = next((r for r in store.all() if r["id"] == path.reminder_id), None)
    if original is None:
        fields = {"text": message["content"], "mode": "plain", "timezone": store.default_timezone}
    else:
        fields = {key: original[key] for key in ("text", "mode", "timezone")}
    fields["conversation_id"] = conversation_id
    # Added in UTC: wall-clock arithmetic would be an hour off across a daylight-saving change.
    later = (datetime.now(UTC) + timedelta(minutes=body.minutes)).astimezone(ZoneInfo(fields["timezone"]))
    fields["at"] = later.replace(tzinfo=None).isoformat(timespec="seconds")
    reminder = store.create(fields, _now())
    return {"success": True, "reminder": describe(reminder, _now())}, 201


@api.post(
    "/reminders/<reminder_id>/done",
    security=TOKEN_OR_COOKIE,
    responses={200: ReminderMessageDone, **TAKES_REMINDER_MESSAGE, **GUARDED, 404: REMINDER_MESSAGE_NOT_FOUND},
)
def reminder_done(path: ReminderPath, body: ReminderMessage) -> Any:
    """Mark a reminder message done (`done_at`); marking it again changes nothing."""
    conversation_id = _reminder_conversation(path.reminder_id, body.conversation_id, body.message_id)
    message = _conversations().store(conversation_id).mark_done(body.message_id, _sender(path.reminder_id))
    if message is None:
        raise _not_sent_by(path.reminder_id, body.message_id)
    return {"success": True, "message": message}


# ---- channels: where reminders are pushed ------------------------------------------------------


def _channels() -> Channels:
    return current_app.extensions["channels"]


NAMES_A_CHANNEL = {404: CHANNEL_NOT_FOUND}


@api.get("/channels", security=TOKEN_OR_COOKIE, responses={200: ChannelList, **GUARDED, 503: STORAGE_UNAVAILABLE})
def list_channels() -> Any:
    """Every channel reminders are pushed to, URLs masked: NOTIFY_URLS (read-only), added ones, browsers."""
    return {"success": True, "channels": _channels().listed()}


@api.post(
    "/channels",
    security=TOKEN_OR_COOKIE,
    responses={
        201: ChannelResult,
        **TAKES_JSON,
        400: CHANNEL_REFUSED,
        409: TOO_MANY_CHANNELS,
        **GUARDED,
        503: STORAGE_UNAVAILABLE,
    },
)
def create_channel(body: ChannelCreate) -> Any:
    """Add a channel: `{"name": "手机", "url": "bark://api.day.app/KEY"}`; a URL Apprise cannot use is a 400."""
    channel = _channels().store.create(body.name, body.url, _now())
    return {"success": True, "channel": _channels().shown(channel["id"])}, 201


@api.patch(
    "/channels/<channel_id>",
    security=TOKEN_OR_COOKIE,
    responses={
        200: ChannelResult,
        **TAKES_JSON,
        400: CHANNEL_REFUSED,
        409: CHANNEL_READ_ONLY,
        **GUARDED,
        **NAMES_A_CHANNEL,
    },
)
def change_channel(path: ChannelPath, body: ChannelChange) -> Any:
    """Rename a channel or give it a new URL."""
    _channels().store.update(path.channel_id, body.model_dump(exclude_unset=True))
    return {"success": True, "channel": _channels().shown(path.channel_id)}


@api.delete(
    "/channels/<channel_id>",
    security=TOKEN_OR_COOKIE,
    responses={200: Success, **CHANGES_STATE, 409: CHANNEL_READ_ONLY, **GUARDED, **NAMES_A_CHANNEL},
)
def delete_channel(path: ChannelPath) -> Any:
    """Delete a channel (reminders naming it stop naming it); pushes still queued for it end as failed."""
    _channels().delete(path.channel_id)
    return {"success": True}


@api.post(
    "/channels/<channel_id>/test",
    security=TOKEN_OR_COOKIE,
    responses={200: ChannelTested, **POSTED, **GUARDED, **NAMES_A_CHANNEL},
    openapi_extensions=NO_BODY,
)
def test_channel(path: ChannelPath) -> Any:
    """Send a test message to the channel now and answer what the service said (`delivered` false: it refused)."""
    delivered, answer = _channels().test(path.channel_id)
    return {"success": True, "delivered": delivered, "answer": answer}


# ---- browser push ----------------------------------------------------------------------------


def _webpush() -> WebPush:
    """The app's browser push keys and subscriptions."""
    return current_app.extensions["webpush"]


@api.get("/push/key", security=TOKEN_OR_COOKIE, responses={200: PushKey, **GUARDED, 503: STORAGE_UNAVAILABLE})
def push_key() -> Any:
    """The VAPID application server key a browser subscribes with (made once, kept in the data folder)."""
    return {"success": True, "public_key": _webpush().public_key}


@api.post(
    "/push/subscriptions",
    security=TOKEN_OR_COOKIE,
    responses={
        201: PushSubscribed,
        **TAKES_JSON,
        400: SUBSCRIPTION_REFUSED,
        409: TOO_MANY_SUBSCRIPTIONS,
        **GUARDED,
        503: STORAGE_UNAVAILABLE,
    },
)
def push_subscribe(body: PushSubscribe) -> Any:
    """Store this browser's push subscription: `{"subscription": <PushSubscription.toJSON()>, "name": "…"}`.

    The same endpoint again keeps its channel id. The answer shows the push service's host, never the endpoint.
    """
    channel = _webpush().subscribe(body.subscription, body.name, _now())
    return {"success": True, "channel": channel}, 201


@api.delete(
    "/push/subscriptions",
    security=TOKEN_OR_COOKIE,
    responses={200: PushUnsubscribed, **TAKES_JSON, 400: UNSUBSCRIBE_REFUSED, **GUARDED, 503: STORAGE_UNAVAILABLE},
)
def push_unsubscribe(body: PushUnsubscribe) -> Any:
    """Stop pushing to the browser with this subscription `endpoint`; `removed` says whether it was stored."""
    return {"success": True, "removed": _webpush().unsubscribe(body.endpoint)}


@api.post(
    "/login",
    responses={200: Success, **TAKES_JSON, 401: UNAUTHORIZED, 429: RATE_LIMITED, 503: STORAGE_UNAVAILABLE},
)
@public
def login(body: LoginRequest) -> Any:
    """Exchange the access token for a login cookie: `{"token": "..."}` → `{"success": true}`.

    Without ACCESS_TOKEN there is nothing to log in to: the answer says so and sets no cookie.
    """
    guard = security().guard
    if guard is None:
        return {"success": True, "auth_required": False}
    if not guard.token_matches(body.token):
        guard.refuse_guess(Unauthorized("The access token is wrong.", code="invalid_token"))
    response = current_app.json.response({"success": True})
    response.set_cookie(
        COOKIE_NAME,
        guard.start_session(),
        max_age=COOKIE_MAX_AGE,
        path="/",
        secure=request.is_secure,
        httponly=True,
        samesite="Strict",
    )
    return response


@api.post("/logout", responses={200: Success, **POSTED, 503: STORAGE_UNAVAILABLE}, openapi_extensions=NO_BODY)
@public
def logout() -> Any:
    """End this browser's login session, in every worker, and forget its cookie."""
    guard = security().guard
    if guard is not None:
        guard.end_session(request.cookies.get(COOKIE_NAME, ""))
    response = current_app.json.response({"success": True})
    response.delete_cookie(COOKIE_NAME, path="/", secure=request.is_secure, httponly=True, samesite="Strict")
    return response


@api.get(
    "/openapi.json",
    security=TOKEN_OR_COOKIE,
    responses={200: {"description": "This document.", "content": {"application/json": {"schema": {}}}}, **GUARDED},
)
def openapi_document() -> Any:
    """This API's OpenAPI 3.1 description."""
    return document(current_app)
