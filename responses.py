"""The API's answers, declared once for /api/openapi.json: success bodies as models, errors with their codes.

They are documentation only: a view returns plain dicts, so a reply costs no second validation.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


def _described(description: str) -> ConfigDict:
    """flask-openapi3 takes a response's description from its model's `openapi_extra`."""
    return ConfigDict(openapi_extra={"description": description})  # type: ignore[typeddict-unknown-key]


class Message(BaseModel):
    """One stored message."""

    id: int = Field(ge=1, description="Increasing; never reused.")
    role: Literal["user", "assistant"]
    content: str
    timestamp: str = Field(description="ISO 8601 with the TIMEZONE's offset.")
    is_scheduled: bool = Field(description="A reminder sent by the scheduler.")
    reply_to: int | None = Field(None, description="The id of the user message this answers.")
    idempotency_key: str | None = Field(None, description="A user message's key, as the client sent it.")
    model: str | None = None
    reasoning: str | None = Field(None, description="The model's reasoning, kept apart from the reply.")
    usage: dict[str, Any] | None = None
    scheduled_for: str | None = Field(None, description="The reminder's occurrence (its cron tick or `at`).")
    reminder_id: str | None = Field(None, description="Which reminder sent it (absent for the .env reminder).")
    generated: bool | None = Field(
        None, description="A reminder worded by the model; false: its own text (plain mode, or the model failed)."
    )
    late: bool | None = Field(None, description="A reminder sent late, after the server was down at its time.")
    done_at: str | None = Field(None, description="A reminder message the user marked done, and when.")
    incomplete: bool | None = Field(
        None,
        description="The turn failed: `content` is what arrived before the error, empty (with `reply_to`) when "
        "nothing did. Retry it with `retry_of`=`reply_to`; a later whole reply to the same message supersedes it.",
    )
    stopped: bool | None = Field(None, description="Stopped mid-reply (POST /api/chat/stream/{message_id}/stop).")
    streaming: bool | None = Field(
        None,
        description="Still being written: follow it with GET /api/chat/stream/{message_id}; when it ends, the same "
        "id holds the final message.",
    )
    interrupted: bool | None = Field(
        None, description="The server process writing it died; `content` is what it had written (Retry it)."
    )
    error: str | None = Field(None, description="Why an incomplete reply stopped: the error's one sentence.")
    error_code: str | None = Field(
        None, description="With `error`: the error's stable `code`, as in the failed request's answer or `error` event."
    )
    reminder_actions: list[ReminderAction] | None = Field(
        None, description="The reminders this reply set, changed or cancelled (through the model's tools)."
    )


class ReminderAction(BaseModel):
    """One reminder tool call carried out during a chat turn, for the page's confirmation card and its Undo."""

    action: Literal["created", "updated", "cancelled"]
    reminder: dict[str, Any] = Field(
        description="The reminder as GET /api/reminders shows it: after the action, or before it when cancelled."
    )
    previous: dict[str, Any] | None = Field(
        None, description="For `updated`: its editable fields before (text, at, cron, timezone, mode, enabled)."
    )


class Error(BaseModel):
    """Every failure: `{"success": false, "error": "<one sentence>", "code": "<stable code>"}`."""

    model_config = ConfigDict(extra="forbid")

    success: Literal[False]
    error: str = Field(min_length=1, description="One human sentence.")
    code: str = Field(description="Stable, for programs.")
    user_message: Message | None = Field(
        None, description="A chat that failed after storing the user's message: retry it with `retry_of`."
    )


class ChatResult(BaseModel):
    """The reply, stored; `message` is the stored assistant message."""

    model_config = ConfigDict(
        extra="forbid", **_described("The reply, stored; `message` is the stored assistant message.")
    )
    success: Literal[True]
    reply: str
    message: Message


class History(BaseModel):
    """A page of messages, oldest first."""

    model_config = ConfigDict(extra="forbid", **_described("A page of messages, oldest first."))
    success: Literal[True]
    messages: list[Message]
    has_more: bool


class Cleared(BaseModel):
    """How many messages were cleared (they are archived on disk)."""

    model_config = ConfigDict(extra="forbid", **_described("How many messages were cleared (archived on disk)."))
    success: Literal[True]
    cleared: int = Field(ge=0)


class Conversation(BaseModel):
    """One conversation, as listed."""

    id: str = Field(description="`main`, or 12 hex digits.")
    title: str = Field(description="Empty while untitled; set from the first exchange, or by PATCH.")
    created_at: str | None
    updated_at: str | None = Field(description="When its newest message was stored.")
    message_count: int = Field(ge=0)
    pinned: bool
    reminder_at: str | None = Field(
        description="When its newest reminder message arrived (imported ones do not count); null if none."
    )


class ConversationList(BaseModel):
    """Every conversation."""

    model_config = ConfigDict(extra="forbid", **_described("Every conversation: pinned first, then newest first."))
    success: Literal[True]
    conversations: list[Conversation]


class ConversationResult(BaseModel):
    """One conversation."""

    model_config = ConfigDict(extra="forbid", **_described("The conversation as stored."))
    success: Literal[True]
    conversation: Conversation


class SearchHit(BaseModel):
    """A message that contains every word searched for."""

    conversation_id: str
    message_id: int
    role: Literal["user", "assistant"]
    timestamp: str
    snippet: str = Field(description="The text around the first match, on one line.")


class SearchResults(BaseModel):
    """Matching messages, newest first."""

    model_config = ConfigDict(extra="forbid", **_described("Matching messages across conversations, newest first."))
    success: Literal[True]
    results: list[SearchHit]


class UsageCounts(BaseModel):
    """Tokens the model API reported, summed, and over how many replies."""

    prompt_tokens: int = Field(ge=0)
    completion_tokens: int = Field(ge=0)
    total_tokens: int = Field(ge=0)
    messages: int = Field(ge=0, description="Replies that reported usage (a turn with tool rounds is one).")


class UsageDay(UsageCounts):
    """One day, in TIMEZONE."""

    date: str = Field(description="YYYY-MM-DD in TIMEZONE.")


class UsageConversation(UsageCounts):
    """One conversation."""

    conversation_id: str
    title: str = Field(description="Empty while untitled.")


class Usage(BaseModel):
    """Token usage of the last `days` days."""

    model_config = ConfigDict(
        extra="forbid",
        **_described(
            "Token usage of the stored replies of the last `days` days (TIMEZONE), per day and per conversation. "
            "What the history shows counts: cleared and deleted conversations no longer do."
        ),
    )
    success: Literal[True]
    days: int = Field(ge=1, le=366)
    since: str = Field(description="The first day counted, YYYY-MM-DD in TIMEZONE.")
    today: str = Field(description="Today in TIMEZONE, YYYY-MM-DD: `since` + `days` - 1.")
    timezone: str = Field(description="TIMEZONE, the zone the days are counted in.")
    total: UsageCounts
    by_day: list[UsageDay] = Field(description="Each day with usage, oldest first.")
    by_conversation: list[UsageConversation] = Field(description="Each conversation with usage, most tokens first.")


class Imported(BaseModel):
    """What an import created."""

    model_config = ConfigDict(
        extra="forbid", **_described("The conversations created; `skipped` were imported before, so not again.")
    )
    success: Literal[True]
    imported: int = Field(ge=0)
    skipped: int = Field(ge=0)
    conversations: list[Conversation]


class Health(BaseModel):
    """Liveness, and whether chat and reminders work."""

    status: Literal["ok"]
    scheduler_running: bool
    scheduler_enabled: bool
    chat_configured: bool
    auth_required: bool
    max_message_chars: int = Field(ge=1, description="MAX_MESSAGE_CHARS: the page counts and refuses longer messages.")


class LastRun(BaseModel):
    """The outcome of the last reminder, whichever worker sent it."""

    time: str = Field(description="When it finished, ISO 8601 with the TIMEZONE's offset.")
    scheduled_for: str | None = Field(None, description="Its cron tick; null for one sent by POST /api/schedule/run.")
    status: Literal["ok", "failed"]
    error: str | None = Field(
        None, description="Why it failed and what to check, e.g. 'HTTP 404 — check API_URL and MODEL.'"
    )
    message_id: int | None = Field(None, description="The stored reminder, when it succeeded.")


class Schedule(BaseModel):
    """The reminder schedule, its next runs and the last outcome."""

    success: Literal[True]
    enabled: bool
    running: bool
    cron: str = Field(description="The six cron fields, seconds first; weekdays as in crontab (0 and 7 are Sunday).")
    cron_fields: dict[str, str]
    timezone: str
    next_run_time: str | None = Field(description="The next fire time (ISO 8601 with offset); null when disabled.")
    next_run_times: list[str] = Field(description="The next three fire times, in TIMEZONE; empty when disabled.")
    last_run: LastRun | None


class ChannelOutcome(BaseModel):
    """How pushing one reminder message to one channel went."""

    channel_name: str
    status: Literal["pending", "retrying", "sent", "failed"] = Field(
        description="`retrying`: refused, tried again after the next of PUSH_RETRY_SECONDS; `failed`: tries used up."
    )
    attempts: int
    answer: str | None = Field(None, description="What the service said last, secrets removed.")
    updated_at: str


class ReminderRun(BaseModel):
    """One delivery of a reminder."""

    time: str | None = Field(None, description="When it finished, ISO 8601 with offset.")
    scheduled_for: str | None = Field(None, description="The occurrence; `manual-<time>` for a run on request.")
    status: Literal["ok", "failed", "missed"] = Field(
        description="`failed`: the model failed and the reminder's own text was sent; `missed`: it fell longer "
        "ago than MISFIRE_GRACE_SECONDS while no server ran."
    )
    error: str | None = None
    late: bool | None = None
    generated: bool | None = None
    message_id: int | None = None
    channels: dict[str, ChannelOutcome] | None = Field(
        None, description="Each channel the message was pushed to, by channel id."
    )


class Reminder(BaseModel):
    """A reminder, with its next three fire times and the outcome of its last run."""

    id: str = Field(description="`env` for the read-only reminder from .env.")
    text: str
    at: str | None = Field(None, description="Local date-time of a one-off reminder.")
    cron: str | None = Field(None, description="Crontab fields (five; the .env reminder's six, seconds first).")
    timezone: str
    enabled: bool
    mode: Literal["generate", "plain"]
    created_at: str | None
    source: Literal["user", "env"]
    next_runs: list[str] = Field(description="The next three fire times, ISO 8601 with offset; empty when none.")
    done: bool = Field(description="A one-off reminder already sent.")
    channels: list[str] | None = Field(None, description="The channel ids it is pushed to; null: every channel.")
    last_run: ReminderRun | None


class ReminderList(BaseModel):
    """Every reminder, the .env one first."""

    model_config = ConfigDict(extra="forbid", **_described("Every reminder, the .env one first."))
    success: Literal[True]
    reminders: list[Reminder]


class ReminderResult(BaseModel):
    """The reminder as stored."""

    model_config = ConfigDict(extra="forbid", **_described("The reminder as stored."))
    success: Literal[True]
    reminder: Reminder


class ReminderSent(BaseModel):
    """The reminder was sent now; `message` is the stored message."""

    model_config = ConfigDict(extra="forbid", **_described("Sent now; `message` is the stored message."))
    success: Literal[True]
    reminder: Reminder
    message: Message


class ReminderPreview(BaseModel):
    """The next three fire times of a schedule not saved yet."""

    model_config = ConfigDict(extra="forbid", **_described("The next three fire times, ISO 8601 with offset."))
    success: Literal[True]
    next_runs: list[str]


class ReplyStopped(BaseModel):
    """The reply as stored once stopped (or as it had ended already)."""

    model_config = ConfigDict(extra="forbid", **_described("The reply as stored: `stopped`, or as it had ended."))
    success: Literal[True]
    message: Message


class ReminderMessageDone(BaseModel):
    """The reminder message, marked done."""

    model_config = ConfigDict(extra="forbid", **_described("The reminder message, marked done (`done_at`)."))
    success: Literal[True]
    message: Message


class ReminderRuns(BaseModel):
    """The delivery log, newest first (at most 50)."""

    model_config = ConfigDict(extra="forbid", **_described("The delivery log, newest first (at most 50)."))
    success: Literal[True]
    runs: list[ReminderRun]


class Channel(BaseModel):
    """Where reminders are pushed: an Apprise URL (shown masked) or a browser's push subscription."""

    id: str = Field(description="`env-<n>` for NOTIFY_URLS (read-only), `push-<n>` for a browser.")
    name: str
    kind: Literal["apprise", "webpush"]
    url: str | None = Field(None, description="Scheme and host only: the rest of the URL is a secret.")
    service: str = Field(description="The URL's scheme, or the browser's push service host.")
    source: Literal["env", "user", "browser"]
    created_at: str | None


class ChannelList(BaseModel):
    """Every channel."""

    model_config = ConfigDict(extra="forbid", **_described("Every channel, NOTIFY_URLS first."))
    success: Literal[True]
    channels: list[Channel]


class ChannelResult(BaseModel):
    """The channel as stored."""

    model_config = ConfigDict(extra="forbid", **_described("The channel as stored, its URL masked."))
    success: Literal[True]
    channel: Channel


class ChannelTested(BaseModel):
    """What the service said to a test message."""

    model_config = ConfigDict(extra="forbid", **_described("Whether the test arrived, and the service's answer."))
    success: Literal[True]
    delivered: bool
    answer: str


class Success(BaseModel):
    """Done."""

    success: Literal[True]
    auth_required: bool | None = None


def _error(description: str, codes: list[str], retry_after: bool = False) -> dict[str, Any]:
    """A documented error response: the Error body, with the codes this status can carry."""
    listed = ", ".join(f"`{code}`" for code in codes)
    schema = {
        "allOf": [
            {"$ref": "#/components/schemas/Error"},
            {"type": "object", "properties": {"code": {"type": "string", "enum": codes}}},
        ]
    }
    response: dict[str, Any] = {
        "description": f"{description} (code: {listed}).",
        "content": {"application/json": {"schema": schema}},
    }
    if retry_after:
        response["headers"] = {
            "Retry-After": {
                "description": "Seconds to wait before trying again.",
                "schema": {"type": "integer", "minimum": 1},
            }
        }
    return response


BAD_REQUEST = _error(
    "The request is malformed",
    [
        "invalid_json",
        "missing_message",
        "invalid_message",
        "empty_message",
        "invalid_retry_of",
        "invalid_idempotency_key",
        "invalid_message_id",
        "invalid_limit",
        "invalid_before",
        "invalid_after",
        "invalid_query",
        "missing_token",
        "invalid_conversation_id",
        "invalid_title",
        "invalid_pinned",
        "missing_q",
        "invalid_q",
        "invalid_format",
        "invalid_days",
        "bad_request",
    ],
)
REMINDER_REFUSED = _error(
    "The reminder is malformed: empty, invalid or too long text, not exactly one of `at` and `cron`, a past or "
    "malformed `at`, a bad cron, an unknown zone",
    [
        "invalid_json",
        "missing_text",
        "invalid_text",
        "empty_text",
        "text_too_long",
        "invalid_schedule",
        "invalid_at",
        "at_in_past",
        "invalid_cron",
        "invalid_timezone",
        "invalid_mode",
        "invalid_enabled",
        "invalid_channels",
        "unknown_channel",
        "invalid_conversation_id",
        "unknown_conversation",
    ],
)
REMINDER_NOT_FOUND = _error("There is no reminder with this id", ["reminder_not_found"])
MESSAGE_REFUSED = _error(
    "The body is malformed: `message_id` missing or not a whole number, or `minutes` not 1 to 1440",
    [
        "invalid_json",
        "missing_message_id",
        "invalid_message_id",
        "invalid_minutes",
        "empty_text",
        "invalid_conversation_id",
    ],
)
REMINDER_MESSAGE_NOT_FOUND = _error(
    "There is no such reminder or conversation, or `message_id` is not a recent message the reminder sent there",
    ["reminder_not_found", "reminder_message_not_found", "conversation_not_found"],
)
READ_ONLY = _error("The .env reminder is changed in .env, not through the API", ["reminder_read_only"])
CHANNEL_REFUSED = _error(
    "The channel is malformed: a missing or too long name, or a URL Apprise cannot send to",
    ["invalid_json", "missing_name", "invalid_name", "invalid_channel_name", "missing_url", "invalid_url",
     "invalid_channel_url"],
)  # fmt: skip
CHANNEL_NOT_FOUND = _error("There is no channel with this id", ["channel_not_found"])
CHANNEL_READ_ONLY = _error("Channels from NOTIFY_URLS are changed in .env, not through the API", ["channel_read_only"])
TOO_MANY_CHANNELS = _error("There are 50 channels already; delete one first", ["too_many_channels"])
TOO_MANY_REMINDERS = _error("There are 1000 reminders already; delete some first", ["too_many_reminders"])
UNAUTHORIZED = _error(
    "ACCESS_TOKEN is set and the request has neither the Bearer token nor a login cookie",
    ["unauthorized", "invalid_token"],
)
TOO_LARGE = _error(
    "The message is over MAX_MESSAGE_CHARS, or the body over MAX_BODY_BYTES", ["message_too_long", "payload_too_large"]
)
NOT_JSON = _error("The request was not sent with the header Content-Type: application/json", ["unsupported_media_type"])
CROSS_SITE = _error(
    "A browser sent this request from another site or origin (Sec-Fetch-Site or Origin)", ["cross_site_request"]
)
RATE_LIMITED = _error(
    "Too many requests: this client is over RATE_LIMIT or its wrong-token budget, or the model "
    "API still refused with 429 after the retries",
    ["rate_limited", "upstream_rate_limited"],
    retry_after=True,
)
UPSTREAM_FAILED = _error(
    "The model API failed: an error status, a reply that is not chat completion JSON, or no connection",
    ["upstream_error", "upstream_auth_failed", "upstream_bad_response", "upstream_unreachable", "upstream_incomplete"],
)
KEY_REUSED = _error(
    "This `idempotency_key` came before with another message: make up a new key for each message",
    ["idempotency_key_reused"],
)
UNAVAILABLE = _error(
    "Chat is not configured (no API_KEY), or the history cannot be saved (the data folder is read-only or full)",
    ["not_configured", "storage_unavailable"],
)
MESSAGE_NOT_FOUND = _error(
    "There is no reply with this id in this conversation, or no such conversation",
    ["message_not_found", "conversation_not_found"],
)
CONVERSATION_NOT_FOUND = _error("There is no conversation with this id", ["conversation_not_found"])
MAIN_CONVERSATION = _error("The main conversation cannot be deleted", ["main_conversation"])
IMPORT_REFUSED = _error(
    "The upload is not a conversations.json export (ours or ChatGPT's), or it is malformed",
    ["invalid_import", "invalid_json"],
)
STORAGE_UNAVAILABLE = _error("The history cannot be read or saved", ["storage_unavailable"])
UPSTREAM_TIMEOUT = _error("The model API did not answer within READ_TIMEOUT", ["upstream_timeout"])

# The answers every guarded route may give, and those of the routes that call the model.
GUARDED = {401: UNAUTHORIZED}
CALLS_THE_MODEL = {429: RATE_LIMITED, 502: UPSTREAM_FAILED, 503: UNAVAILABLE, 504: UPSTREAM_TIMEOUT}
# Every state-changing route refuses cross-site browsers; every POST also needs the JSON content type.
CHANGES_STATE = {403: CROSS_SITE}
POSTED = {**CHANGES_STATE, 415: NOT_JSON}
TAKES_JSON = {400: BAD_REQUEST, 413: TOO_LARGE, **POSTED}
TAKES_REMINDER_MESSAGE = {**TAKES_JSON, 400: MESSAGE_REFUSED, 503: STORAGE_UNAVAILABLE}
# A POST with nothing to send still says it is JSON, which an HTML form cannot: send `{}`. The body is
# not read; an empty one with the header passes too, but OpenAPI cannot describe a header without a body.
IMPORT_BODY = {
    "requestBody": {
        "required": True,
        "description": "A `conversations.json`: exported by GET /api/export or by ChatGPT (Settings → Data controls "
        "→ Export), or one conversation of it. As a JSON body, or as the field `file` of a multipart form.",
        "content": {
            "application/json": {"schema": {"anyOf": [{"type": "array"}, {"type": "object"}]}},
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {"file": {"type": "string", "format": "binary"}},
                }
            },
        },
    }
}
DOWNLOAD = {
    "description": "A file to save (Content-Disposition: attachment).",
    "content": {
        "text/markdown": {"schema": {"type": "string"}},
        "application/json": {"schema": {"anyOf": [{"type": "object"}, {"type": "array"}]}},
    },
}
NO_BODY = {
    "requestBody": {
        "required": True,
        "description": "Not read: send `{}` (or nothing) with the header Content-Type: application/json.",
        "content": {"application/json": {"schema": {}}},
    }
}


# ---- browser push ----------------------------------------------------------------------------


class PushKey(BaseModel):
    """The VAPID application server key browsers subscribe with."""

    model_config = ConfigDict(extra="forbid", **_described("The application server key (VAPID), base64url."))
    success: Literal[True]
    public_key: str = Field(description="The uncompressed P-256 point, base64url: `applicationServerKey`.")


class PushChannel(BaseModel):
    """A browser subscribed to push; its endpoint and keys are never shown."""

    id: str = Field(description="`push-<n>`; the same browser subscribing again keeps it.")
    name: str
    service: str = Field(description="The push service's host, e.g. fcm.googleapis.com.")
    created_at: str


class PushSubscribed(BaseModel):
    """The browser's subscription, stored."""

    model_config = ConfigDict(extra="forbid", **_described("The subscription, stored; shown as a channel."))
    success: Literal[True]
    channel: PushChannel


class PushUnsubscribed(BaseModel):
    """Whether a subscription with that endpoint was there to remove."""

    model_config = ConfigDict(extra="forbid", **_described("Whether a subscription with that endpoint was removed."))
    success: Literal[True]
    removed: bool


SUBSCRIPTION_REFUSED = _error(
    "The subscription is malformed: not an https endpoint (http only for localhost), or `p256dh`/`auth` not "
    "base64url keys of 65/16 bytes",
    ["invalid_json", "missing_subscription", "invalid_subscription", "invalid_name"],
)
UNSUBSCRIBE_REFUSED = _error(
    "The body needs the subscription's `endpoint`", ["invalid_json", "missing_endpoint", "invalid_endpoint"]
)
TOO_MANY_SUBSCRIPTIONS = _error(
    "There are 100 push subscriptions already; remove some first", ["too_many_subscriptions"]
)
