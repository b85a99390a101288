"""What the API accepts, declared once: these models validate requests and describe them in /api/openapi.json.

flask-openapi3 checks a route's `body`/`query` model before the view runs; a failure becomes this API's
error through `request_error`, with a stable `code`: `missing_<field>`, `invalid_<field>`, or the code a
validator names (`empty_message`, `message_too_long`, `invalid_query`, `missing_token`).
"""

from __future__ import annotations

import functools
import json
from typing import Annotated, Any, Literal

from flask import current_app
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    Strict,
    ValidationError,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from config import HISTORY_PAGE_MAX
from errors import AppError, BadRequest, PayloadTooLarge

# "Not blank" as the app judges it (str.strip), spelled out: regex \s means different things in Python and ECMAScript.
NOT_BLANK = "[^" + "".join(f"\\u{code:04x}" for code in range(0x3001) if chr(code).isspace()) + "]"


class Schema(BaseModel):
    """A model whose JSON schema is built once: flask-openapi3 asks for a query model's schema on every request."""

    model_config = ConfigDict(extra="allow")

    @classmethod
    def model_json_schema(cls, *args: Any, **kwargs: Any) -> dict[str, Any]:
        """pydantic's JSON schema of this model, built once per set of arguments."""
        return _json_schema(cls, args, tuple(sorted(kwargs.items())))


@functools.cache
def _json_schema(model: type[BaseModel], args: tuple, kwargs: tuple) -> dict[str, Any]:
    """The uncached pydantic call behind Schema.model_json_schema."""
    return BaseModel.model_json_schema.__func__(model, *args, **dict(kwargs))  # type: ignore[attr-defined]


# ---- requests --------------------------------------------------------------------------------


def _whole_number(value: Any) -> Any:
    """A JSON integer as JSON Schema means it (2 or 2.0), never true/false or "2"."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise PydanticCustomError("int_type", "Input should be a whole number")
    return value


def whole_number(minimum: int) -> Any:
    """A whole number of at least `minimum` (documented as JSON Schema's `minimum`)."""
    return Annotated[Annotated[int, Field(ge=minimum)], BeforeValidator(_whole_number)]


CONVERSATION_ID_PATTERN = r"^(main|[0-9a-f]{12})$"
IDEMPOTENCY_KEY_PATTERN = r"^[A-Za-z0-9_-]{8,64}$"
CONVERSATION_FORM = "A conversation's id from GET /api/conversations; absent: the main conversation."
ConversationId = Annotated[str | None, Strict(), Field(pattern=CONVERSATION_ID_PATTERN, description=CONVERSATION_FORM)]


class ChatRequest(Schema):
    """A message to the assistant; `retry_of` answers an earlier, unanswered one again."""

    message: Annotated[
        str,
        Strict(),
        Field(
            json_schema_extra={"minLength": 1, "pattern": NOT_BLANK},  # documented; the validator below says why
            description="Not blank; at most MAX_MESSAGE_CHARS characters (413 `message_too_long` beyond).",
        ),
    ]
    retry_of: Annotated[
        whole_number(1) | None,
        Field(
            description="Retrying a failed turn: the id of its stored user message (from the error's "
            "`user_message`), so the text is not stored twice."
        ),
    ] = None

    conversation_id: ConversationId = None

    idempotency_key: Annotated[
        str | None,
        Strict(),
        Field(
            pattern=IDEMPOTENCY_KEY_PATTERN,
            description="A key the client makes up for this message (8 to 64 letters, digits, `-` or `_`). Sending "
            "the message again with it, after a connection that dropped before any answer, stores nothing twice: "
            "the answer is the turn already under way (or done); one that failed or was stopped is asked again "
            "(so Retry needs no `retry_of`). The same key with other text is 409 `idempotency_key_reused`.",
        ),
    ] = None

    model_config = ConfigDict(json_schema_extra={"example": {"message": "你好"}})

    @field_validator("message")
    @classmethod
    def _storable_text(cls, text: str) -> str:
        """Not blank, storable as UTF-8 (no lone surrogates), and within this server's MAX_MESSAGE_CHARS."""
        if not text.strip():
            raise PydanticCustomError("empty_message", '"message" must not be empty or blank.')
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise PydanticCustomError("invalid_message", '"message" must be valid Unicode text.') from None
        limit = current_app.extensions["settings"].max_message_chars
        if len(text) > limit:
            raise PydanticCustomError(
                "message_too_long",
                '"message" is {length} characters long; the limit is {limit} (MAX_MESSAGE_CHARS).',
                {"length": len(text), "limit": limit},
            )
        return text


def _empty_is_absent(value: Any) -> Any:
    """A form sends `?limit=` for an empty field: treat it as not given."""
    return None if value == "" else value


def _query_int(minimum: int, description: str, maximum: int | None = None) -> Any:
    """An optional whole-number query parameter, where an empty value means absent."""
    number: dict[str, Any] = {"type": "integer", "minimum": minimum}
    if maximum is not None:
        number["maximum"] = maximum
    bounded = Annotated[int, Field(ge=minimum, le=maximum)]
    return Annotated[
        bounded | None,
        BeforeValidator(_empty_is_absent),
        WithJsonSchema(
            {"anyOf": [number, {"type": "string", "enum": [""]}], "description": description + " Empty means absent."}
        ),
    ]


ConversationParameter = Annotated[
    Annotated[str, Field(pattern=CONVERSATION_ID_PATTERN)] | None,
    BeforeValidator(_empty_is_absent),
    WithJsonSchema(
        {"type": "string", "pattern": r"^(|main|[0-9a-f]{12})$", "description": CONVERSATION_FORM + " Empty: main."}
    ),
]


class ConversationQuery(Schema):
    """Which conversation: `conversation_id`, absent or empty for the main one."""

    conversation_id: ConversationParameter = None


class HistoryQuery(Schema):
    """Which page of a conversation: the newest, one `before` an id, or the messages `after` one."""

    limit: _query_int(1, "Page size (default HISTORY_PAGE_SIZE).", HISTORY_PAGE_MAX) = None  # type: ignore[valid-type]
    before: _query_int(1, "Only messages with a smaller id: the page before this one.") = None  # type: ignore[valid-type]
    after: _query_int(0, "Only messages with a larger id (for polling); not with `before`.") = None  # type: ignore[valid-type]
    conversation_id: ConversationParameter = None

    @model_validator(mode="after")
    def _one_direction(self) -> HistoryQuery:
        """Paging goes one way per request."""
        if self.before is not None and self.after is not None:
            raise PydanticCustomError("invalid_query", 'Use either "before" or "after", not both.')
        return self


class LoginRequest(Schema):
    """The access token, exchanged once for a login cookie."""

    model_config = ConfigDict(json_schema_extra={"example": {"token": "..."}})

    token: str = Field(min_length=1)

    @field_validator("token", mode="wrap")
    @classmethod
    def _a_token(cls, token: Any, handler: Any) -> str:
        """Whatever is wrong with the token, one code: `invalid_token` is the 401 for a wrong one."""
        try:
            return handler(token)
        except ValidationError:
            raise PydanticCustomError("missing_token", 'The request body must be {"token": "..."}.') from None


TITLE_MAX_CHARS = 100
SNOOZE_MAX_MINUTES = 1440  # a day: a longer wait is a new reminder, not a snooze
AT_FORM = "A local date-time without offset, YYYY-MM-DDTHH:MM[:SS], in the reminder's `timezone`; in the future."
CRON_FORM = (
    "Five crontab fields, minute hour day month weekday (0 and 7 are Sunday, names allowed), e.g. `0 8 * * 1-5`."
)


CHANNELS_FORM = "Ids from GET /api/channels to push it to; null (the default) pushes it to every channel."


class ReminderCreate(Schema):
    """A new reminder: what to say and exactly one schedule, `at` (once) or `cron` (recurring)."""

    model_config = ConfigDict(json_schema_extra={"example": {"text": "吃药", "at": "2026-11-26T08:00:00"}})

    text: Annotated[str, Strict(), Field(json_schema_extra={"minLength": 1, "pattern": NOT_BLANK})]
    at: Annotated[str | None, Strict(), Field(description=AT_FORM)] = None
    cron: Annotated[str | None, Strict(), Field(description=CRON_FORM)] = None
    timezone: Annotated[str | None, Strict(), Field(description="IANA zone; default TIMEZONE.")] = None
    mode: Literal["generate", "plain"] = Field(
        "generate", description="`generate`: the model words it; `plain`: the text as is."
    )
    enabled: Annotated[bool, Strict()] = True
    channels: list[Annotated[str, Strict()]] | None = Field(None, description=CHANNELS_FORM)
    conversation_id: ConversationId = Field(None, description="Where its messages go; default the main conversation.")


class ReminderChange(Schema):
    """Any of a reminder's fields; a new `at` replaces a `cron` and the other way round."""

    model_config = ConfigDict(json_schema_extra={"example": {"enabled": False}})

    text: Annotated[str | None, Strict(), Field(json_schema_extra={"minLength": 1, "pattern": NOT_BLANK})] = None
    at: Annotated[str | None, Strict(), Field(description=AT_FORM)] = None
    cron: Annotated[str | None, Strict(), Field(description=CRON_FORM)] = None
    timezone: Annotated[str | None, Strict()] = None
    mode: Literal["generate", "plain"] | None = None
    enabled: Annotated[bool | None, Strict()] = None
    channels: list[Annotated[str, Strict()]] | None = Field(None, description=CHANNELS_FORM)
    conversation_id: ConversationId = Field(None, description="Where its messages go from now on.")


class ReminderPreviewQuery(Schema):
    """A schedule to preview, as a create would take it: `at` or `cron`, and an optional `timezone`."""

    at: Annotated[str | None, BeforeValidator(_empty_is_absent), Field(description=AT_FORM)] = None
    cron: Annotated[str | None, BeforeValidator(_empty_is_absent), Field(description=CRON_FORM)] = None
    timezone: Annotated[
        str | None, BeforeValidator(_empty_is_absent), Field(description="IANA zone; default TIMEZONE.")
    ] = None


class ReminderMessage(Schema):
    """Which reminder message: the id of a message that reminder sent."""

    model_config = ConfigDict(json_schema_extra={"example": {"message_id": 42}})

    message_id: whole_number(1)  # type: ignore[valid-type]
    conversation_id: ConversationId = Field(
        None, description="The conversation the message is in; default the reminder's own (main for the .env one)."
    )


class ReminderSnooze(ReminderMessage):
    """Remind again of a reminder message, once, `minutes` from now."""

    model_config = ConfigDict(json_schema_extra={"example": {"message_id": 42, "minutes": 10}})

    minutes: Annotated[whole_number(1), Field(le=SNOOZE_MAX_MINUTES, description="1 to 1440; default 10.")] = 10  # type: ignore[valid-type]


class ChannelCreate(Schema):
    """A new channel: a name and an Apprise URL."""

    model_config = ConfigDict(json_schema_extra={"example": {"name": "手机", "url": "bark://api.day.app/YOUR_KEY"}})

    name: Annotated[str, Strict(), Field(json_schema_extra={"minLength": 1, "maxLength": 60, "pattern": NOT_BLANK})]
    url: Annotated[
        str,
        Strict(),
        Field(
            description="An Apprise URL: wecombot://, dingtalk://, feishu://, bark://, ntfy://, tgram://, mailto://, json://…"
        ),
    ]


class ChannelChange(Schema):
    """A channel's new name or URL."""

    model_config = ConfigDict(json_schema_extra={"example": {"name": "工作群"}})

    name: Annotated[
        str | None, Strict(), Field(json_schema_extra={"minLength": 1, "maxLength": 60, "pattern": NOT_BLANK})
    ] = None
    url: Annotated[str | None, Strict()] = None


class ChannelPath(BaseModel):
    """Which channel: its `id`."""

    channel_id: str


class ConversationCreate(Schema):
    """A new conversation; untitled, it is titled after its first exchange."""

    model_config = ConfigDict(json_schema_extra={"example": {"title": "旅行计划"}})

    title: Annotated[str, Strict(), Field(max_length=TITLE_MAX_CHARS)] = ""


class ConversationChange(Schema):
    """A conversation's new title, pinned mark, or both."""

    model_config = ConfigDict(json_schema_extra={"example": {"title": "旅行计划", "pinned": True}})

    title: Annotated[str | None, Strict(), Field(max_length=TITLE_MAX_CHARS)] = None
    pinned: Annotated[bool | None, Strict()] = None


class ConversationPath(BaseModel):
    """Which conversation: its `id` (`main` is the main one)."""

    conversation_id: str


class ExportQuery(Schema):
    """The export's format."""

    format: Literal["markdown", "json"] = Field("markdown", description="`markdown` to read, `json` to keep.")


class SearchQuery(Schema):
    """What to look for."""

    q: Annotated[str, Field(min_length=1, max_length=200, description="Words; a message must contain each.")]
    limit: _query_int(1, "At most this many results (default 50).", 200) = None  # type: ignore[valid-type]


class ReplyPath(BaseModel):
    """Which reply: the id of the assistant message (the `message_id` of its stream's `start` event)."""

    message_id: Annotated[int, Field(ge=1)]


class ReplyQuery(Schema):
    """Where to resume: after event `after` (or the Last-Event-ID header), in conversation `conversation_id`."""

    after: _query_int(0, "Replay the events numbered above this; Last-Event-ID, when sent, wins.") = None  # type: ignore[valid-type]
    conversation_id: ConversationParameter = None


class ReplyStop(Schema):
    """Which conversation the reply is in (absent: the main one)."""

    model_config = ConfigDict(json_schema_extra={"example": {"conversation_id": "main"}})

    conversation_id: ConversationId = None


class UsageQuery(Schema):
    """Which days to sum."""

    days: _query_int(1, "The last this many days in TIMEZONE, today included (default 30).", 366) = None  # type: ignore[valid-type]


class ReminderPath(BaseModel):
    """Which reminder: its `id` (`env` is the read-only reminder from .env)."""

    reminder_id: str


# Codes a validator names itself; every other failure is `missing_<field>` or `invalid_<field>`.
NAMED_CODES = frozenset({"empty_message", "invalid_message", "message_too_long", "invalid_query", "missing_token"})


def request_error(error: ValidationError) -> AppError:
    """This API's error for a request that failed its model: the first problem, one sentence, a stable code."""
    problem = error.errors(include_url=False)[0]
    kind, where = problem["type"], problem["loc"]
    field = str(where[0]) if where else ""
    if kind == "message_too_long":
        return PayloadTooLarge(problem["msg"])
    if kind in NAMED_CODES:
        return BadRequest(problem["msg"], code=kind)
    if not field:
        return BadRequest("The request body must be a JSON object.", code="invalid_json")
    if kind == "missing":
        return BadRequest(f'The request body needs a "{field}" field.', code=f"missing_{field}")
    return BadRequest(
        f'"{field}" is invalid: {problem["msg"][:1].lower()}{problem["msg"][1:]}.', code=f"invalid_{field}"
    )


def body_example(model: type[BaseModel]) -> str:
    """The example a body model declares, as JSON, for error sentences."""
    example = (model.model_config.get("json_schema_extra") or {}).get("example", {})  # type: ignore[union-attr]
    return json.dumps(example, ensure_ascii=False)


# ---- browser push ----------------------------------------------------------------------------


# Documented in full, checked by WebPush.subscribe: its sentences say which part is wrong (`invalid_subscription`).
PUSH_SUBSCRIPTION_SCHEMA = {
    "type": "object",
    "description": "The browser's PushSubscription as its toJSON() gives it.",
    "required": ["endpoint", "keys"],
    "properties": {
        "endpoint": {
            "type": "string",
            "description": "The push service URL (https; http only for localhost). A secret: never shown.",
        },
        "keys": {
            "type": "object",
            "required": ["p256dh", "auth"],
            "properties": {
                "p256dh": {"type": "string", "description": "Its P-256 public key (65 bytes), base64url."},
                "auth": {"type": "string", "description": "Its authentication secret (16 bytes), base64url."},
            },
        },
    },
}


class PushSubscribe(Schema):
    """A browser subscribing to reminders: its PushSubscription and a name for it."""

    model_config = ConfigDict(
        json_schema_extra={
            "example": {
                "subscription": {
                    "endpoint": "https://fcm.googleapis.com/fcm/send/…",
                    "keys": {"p256dh": "…", "auth": "…"},
                },
                "name": "Chrome · Android",
            }
        }
    )

    subscription: Annotated[dict[str, Any], WithJsonSchema(PUSH_SUBSCRIPTION_SCHEMA)]
    name: Annotated[str | None, Strict(), Field(max_length=100, description="Shown in the channel list.")] = None


class PushUnsubscribe(Schema):
    """Which browser stops getting pushes: its subscription's endpoint."""

    model_config = ConfigDict(json_schema_extra={"example": {"endpoint": "https://fcm.googleapis.com/fcm/send/…"}})

    endpoint: Annotated[str, Strict()]
