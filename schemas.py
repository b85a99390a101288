"""The API's request and response shapes, declared once: they validate input and make the OpenAPI document.

Request models are checked by flask-openapi3 before a view runs; a failure becomes our 400 body through
`bad_request`, with a stable `code`: `missing_<field>`, `invalid_<field>`, `invalid_json` for a body that
is not an object, or the code a validator names (`empty_message`, `invalid_query`, `missing_token`).
Response models are used for the document only, so a reply costs no second validation.
"""

from __future__ import annotations

import functools
from typing import Annotated, Any, Literal

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
from errors import BadRequest

# "Not blank" as the app judges it (str.strip), spelled out: regex \s means different things in Python and ECMAScript.
NOT_BLANK = "[^" + "".join(f"\\u{code:04x}" for code in range(0x3001) if chr(code).isspace()) + "]"


class Schema(BaseModel):
    """A model whose JSON schema is built once: flask-openapi3 asks for a query model's schema on every request."""

    model_config = ConfigDict(extra="allow")

    @classmethod
    def model_json_schema(cls, *args: Any, **kwargs: Any) -> dict[str, Any]:
        return _json_schema(cls, args, tuple(sorted(kwargs.items())))


@functools.cache
def _json_schema(model: type[BaseModel], args: tuple, kwargs: tuple) -> dict[str, Any]:
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

    model_config = ConfigDict(json_schema_extra={"example": {"message": "你好"}})

    @field_validator("message")
    @classmethod
    def _not_blank(cls, text: str) -> str:
        if not text.strip():
            raise PydanticCustomError("empty_message", '"message" must not be empty or blank.')
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


class HistoryQuery(Schema):
    """Which page of the conversation: the newest, one `before` an id, or the messages `after` one."""

    limit: _query_int(1, "Page size (default HISTORY_PAGE_SIZE).", HISTORY_PAGE_MAX) = None  # type: ignore[valid-type]
    before: _query_int(1, "Only messages with a smaller id: the page before this one.") = None  # type: ignore[valid-type]
    after: _query_int(0, "Only messages with a larger id (for polling); not with `before`.") = None  # type: ignore[valid-type]

    @model_validator(mode="after")
    def _one_direction(self) -> HistoryQuery:
        if self.before is not None and self.after is not None:
            raise PydanticCustomError("invalid_query", 'Use either "before" or "after", not both.')
        return self


class LoginRequest(Schema):
    """The access token, exchanged once for a login cookie."""

    token: str = Field(min_length=1)

    @field_validator("token", mode="before")
    @classmethod
    def _a_token(cls, token: Any) -> str:
        if not isinstance(token, str) or not token:
            raise PydanticCustomError("missing_token", 'The request body must be {"token": "..."}.')
        return token


# Codes a validator names itself; every other failure is `missing_<field>` or `invalid_<field>`.
NAMED_CODES = frozenset({"empty_message", "invalid_query", "missing_token"})


def bad_request(error: ValidationError) -> BadRequest:
    """Our 400 for a request that failed its model: the first problem, in one sentence, with a stable code."""
    problem = error.errors(include_url=False)[0]
    kind, where = problem["type"], problem["loc"]
    field = str(where[0]) if where else ""
    if kind in NAMED_CODES:
        return BadRequest(problem["msg"], code=kind)
    if not field or kind in ("model_type", "model_attributes_type", "dict_type"):
        return BadRequest('The request body must be a JSON object such as {"message": "你好"}.', code="invalid_json")
    if kind == "missing":
        return BadRequest(f'The request body needs a "{field}" field.', code=f"missing_{field}")
    return BadRequest(
        f'"{field}" is invalid: {problem["msg"][:1].lower()}{problem["msg"][1:]}.', code=f"invalid_{field}"
    )


# ---- responses (for the document) -----------------------------------------------------------


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
    model: str | None = None
    reasoning: str | None = Field(None, description="The model's reasoning, kept apart from the reply.")
    usage: dict[str, Any] | None = None
    scheduled_for: str | None = Field(None, description="The reminder's cron tick.")
    incomplete: bool | None = Field(None, description="The stream broke; `content` is what arrived.")
    stopped: bool | None = Field(None, description="The client left mid-stream.")
    error: str | None = Field(None, description="Why an incomplete reply stopped.")


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


class Health(BaseModel):
    """Liveness, and whether chat and reminders work."""

    status: Literal["ok"]
    scheduler_running: bool
    scheduler_enabled: bool
    chat_configured: bool
    auth_required: bool


class LastRun(BaseModel):
    """The outcome of the last reminder."""

    time: str
    ok: bool
    error: str | None = None
    message_id: int | None = None


class Schedule(BaseModel):
    """The reminder schedule, its next run and the last outcome."""

    success: Literal[True]
    enabled: bool
    running: bool
    cron: str
    cron_fields: dict[str, str]
    timezone: str
    next_run_time: str | None
    last_run: LastRun | None


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
        "invalid_limit",
        "invalid_before",
        "invalid_after",
        "invalid_query",
        "missing_token",
        "bad_request",
    ],
)
UNAUTHORIZED = _error(
    "ACCESS_TOKEN is set and the request has neither the Bearer token nor a login cookie",
    ["unauthorized", "invalid_token"],
)
TOO_LARGE = _error(
    "The message is over MAX_MESSAGE_CHARS, or the body over MAX_BODY_BYTES", ["message_too_long", "payload_too_large"]
)
NOT_JSON = _error("The body was not sent as application/json", ["unsupported_media_type"])
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
UNAVAILABLE = _error(
    "Chat is not configured (no API_KEY), or the history cannot be saved (the data folder is read-only or full)",
    ["not_configured", "storage_unavailable"],
)
STORAGE_UNAVAILABLE = _error("The history cannot be read or saved", ["storage_unavailable"])
UPSTREAM_TIMEOUT = _error("The model API did not answer within READ_TIMEOUT", ["upstream_timeout"])

# The answers every guarded route may give, and those of the routes that call the model.
GUARDED = {401: UNAUTHORIZED}
CALLS_THE_MODEL = {429: RATE_LIMITED, 502: UPSTREAM_FAILED, 503: UNAVAILABLE, 504: UPSTREAM_TIMEOUT}
TAKES_JSON = {400: BAD_REQUEST, 413: TOO_LARGE, 415: NOT_JSON}
