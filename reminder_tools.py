"""Reminders set by talking: the tools offered to the model, running its calls, and the fallbacks a 7B model needs.

The model is offered OpenAI-style `tools` (create, list, update, cancel). Each call is checked and carried out by
the ReminderStore, exactly as the REST API would; a refusal's sentence goes back to the model as the tool's
result, so it can correct itself or tell the user. Small models often write the call as text
(`<tool_call>{"name": …, "arguments": {…}}</tool_call>`, Qwen/Hermes style): `split_tool_calls` and
`ToolCallFilter` find such calls and keep the tags out of the visible reply. When tools are off or refused,
`phrase_action` reads the user's message with the built-in phrase grammar instead.

Every carried-out call becomes an action `{"action", "reminder", "previous"?}` that the page shows as a card.
"""

from __future__ import annotations

import functools
import json
import logging
import re
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from errors import AppError, BadRequest
from reminder_phrases import parse_reminder
from reminders import EDITABLE, ReminderStore, describe
from upstream_client import ToolCall, without_surrogates

log = logging.getLogger(__name__)

MAX_TOOL_ROUNDS = 3  # model → tools → model, at most this many times per turn
TWIN_WINDOW_SECONDS = 600  # the same reminder asked for again this soon (a retried turn) is the one made before
OPEN_TAG, CLOSE_TAG = "<tool_call>", "</tool_call>"
TEXT_CALL = re.compile(re.escape(OPEN_TAG) + r"(.*?)(?:" + re.escape(CLOSE_TAG) + r"|\Z)", re.DOTALL)
# "2026-11-26 08:00" as models often write it: the store wants the ISO "T".
SPACED_DATE_TIME = re.compile(r"^(\d{4}-\d{2}-\d{2}) (\d{1,2}:\d{2})")

_TEXT = {"type": "string", "description": "What to remind the user about, in the user's language, e.g. 吃药."}
_AT = {
    "type": "string",
    "description": "For a one-off reminder: the local date and time YYYY-MM-DDTHH:MM[:SS], no offset, in the future.",
}
_CRON = {
    "type": "string",
    "description": 'For a recurring reminder: five crontab fields "minute hour day month weekday", e.g. '
    '"0 8 * * 1-5" (weekdays at 08:00); 0 and 7 are Sunday.',
}
_MODE = {
    "type": "string",
    "enum": ["generate", "plain"],
    "description": "generate (default): you word the reminder when it is due; plain: the text is sent as is.",
}
_ID = {"type": "string", "description": "The reminder's id, from list_reminders or an earlier result."}


def _function(name: str, description: str, properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    parameters = {"type": "object", "properties": properties, "required": required}
    return {"type": "function", "function": {"name": name, "description": description, "parameters": parameters}}


# Built once: every chat request sends the same list.
TOOLS: list[dict[str, Any]] = [
    _function(
        "create_reminder",
        "Set a reminder for the user: give `text` and either `at` (one-off) or `cron` (recurring), in local time.",
        {"text": _TEXT, "at": _AT, "cron": _CRON, "mode": _MODE},
        ["text"],
    ),
    _function("list_reminders", "List the user's reminders with their ids and next times.", {}, []),
    _function(
        "update_reminder",
        "Change a reminder: give its `id` and only the fields to change (a new `at` or `cron` replaces the schedule).",
        {"id": _ID, "text": _TEXT, "at": _AT, "cron": _CRON, "mode": _MODE, "enabled": {"type": "boolean"}},
        ["id"],
    ),
    _function("cancel_reminder", "Delete a reminder for good.", {"id": _ID}, ["id"]),
]


def time_line(now: datetime, zone_name: str) -> str:
    """The system prompt's line that lets the model turn "tomorrow at 8" into a date."""
    return (
        f"Now it is {now:%Y-%m-%d %H:%M} ({now:%A}) in the user's time zone {zone_name} (UTC{now:%z}); "
        "reminder times are local times in that zone."
    )


def phrase_note(actions: list[dict[str, Any]]) -> str:
    """The system note telling the model which reminders the phrase grammar has just set, so it confirms them."""
    described = "; ".join(
        f"\u201c{a['reminder']['text']}\u201d "
        + (f"at {a['reminder']['at']}" if a["reminder"]["at"] else f"on the schedule (cron) {a['reminder']['cron']}")
        for a in actions
    )
    return (
        f"The server has just created the reminder the user asked for: {described}. "
        "Confirm it to the user briefly in their language; do not say you cannot set reminders."
    )


class ReminderTools:
    """Runs the model's reminder calls against the store; each returns the result for the model and the action."""

    def __init__(self, store: ReminderStore, timezone: str):
        self.store = store
        self.zone = ZoneInfo(timezone)

    def now(self) -> datetime:
        return datetime.now(self.zone)

    def run(self, call: ToolCall, conversation_id: str = "main") -> tuple[str, dict[str, Any] | None]:
        """Carry out one call: the JSON text for the `tool` message, and the action taken (None when refused).

        A reminder created here reminds in `conversation_id`, the conversation it was asked for in.
        """
        try:
            arguments = without_surrogates(json.loads(call.arguments or "{}"))  # an escaped lone one cannot be stored
        except (ValueError, RecursionError):
            return _refusal("The arguments are not valid JSON; send a JSON object."), None
        if not isinstance(arguments, dict):
            return _refusal("The arguments must be a JSON object."), None
        runner = {
            "create_reminder": functools.partial(self._create, conversation_id=conversation_id),
            "list_reminders": self._list,
            "update_reminder": self._update,
            "cancel_reminder": self._cancel,
        }.get(call.name)
        if runner is None:
            return _refusal(f"There is no tool {call.name!r}; use one of {', '.join(_names())}."), None
        try:
            result, action = runner(arguments)
        except AppError as error:  # the store's one sentence, e.g. "at" is in the past: the model may correct it
            log.info("Reminder tool %s refused: %s", call.name, error.message)
            return _refusal(error.message), None
        except Exception:  # a bug here must not cost the user the reply: the model hears the call failed
            log.exception("Reminder tool %s failed unexpectedly", call.name)
            return _refusal("The server failed while carrying out this call; check with list_reminders."), None
        return json.dumps({"ok": True, **result}, ensure_ascii=False), action

    def _create(self, arguments: dict[str, Any], conversation_id: str) -> tuple[dict[str, Any], dict[str, Any]]:
        fields = {key: _schedule_value(key, arguments.get(key)) for key in ("text", "at", "cron", "mode")}
        fields["conversation_id"] = conversation_id
        now = self.now()
        reminder = describe(self.store.create(fields, now, twin_window=TWIN_WINDOW_SECONDS), now)
        return {"reminder": _for_model(reminder)}, {"action": "created", "reminder": reminder}

    def _list(self, arguments: dict[str, Any]) -> tuple[dict[str, Any], None]:
        now = self.now()
        return {"reminders": [_for_model(describe(r, now)) for r in self.store.all()]}, None

    def _update(self, arguments: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        reminder_id = _id_of(arguments)
        before = self.store.get(reminder_id)
        changes = {
            key: _schedule_value(key, arguments[key])
            for key in ("text", "at", "cron", "mode", "enabled")
            if arguments.get(key) is not None
        }
        now = self.now()
        reminder = describe(self.store.update(reminder_id, changes, now), now)
        previous = {key: before.get(key) for key in EDITABLE}
        return {"reminder": _for_model(reminder)}, {"action": "updated", "reminder": reminder, "previous": previous}

    def _cancel(self, arguments: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        reminder_id = _id_of(arguments)
        now = self.now()
        reminder = describe(self.store.get(reminder_id), now)
        self.store.delete(reminder_id)
        return {"cancelled": _for_model(reminder)}, {"action": "cancelled", "reminder": reminder}

    def phrase_action(self, message: str, conversation_id: str = "main") -> dict[str, Any] | None:
        """Create the reminder `message` asks for, read by the phrase grammar, to remind in `conversation_id`;
        None when it asks for none."""
        now = self.now()
        parsed = parse_reminder(message, now.replace(tzinfo=None))
        if parsed is None:
            return None
        fields = {"text": parsed.text, "cron": parsed.cron, "conversation_id": conversation_id}
        if parsed.at is not None:
            fields["at"] = parsed.at.isoformat(timespec="seconds")
        try:
            reminder = self.store.create(fields, now, twin_window=TWIN_WINDOW_SECONDS)
        except AppError as error:
            log.info("The reminder read from the message was refused: %s", error.message)
            return None
        return {"action": "created", "reminder": describe(reminder, now)}


def _names() -> list[str]:
    return [tool["function"]["name"] for tool in TOOLS]


def _refusal(sentence: str) -> str:
    return json.dumps({"ok": False, "error": sentence}, ensure_ascii=False)


def _for_model(reminder: dict[str, Any]) -> dict[str, Any]:
    """What the model needs of a reminder (not its delivery log)."""
    keys = ("id", "text", "at", "cron", "timezone", "enabled", "mode", "next_runs", "done")
    return {key: reminder.get(key) for key in keys}


def _id_of(arguments: dict[str, Any]) -> str:
    """The `id` argument as the store keys it: models send 3 as often as "3"."""
    value = arguments.get("id")
    if isinstance(value, bool) or not isinstance(value, str | int) or str(value).strip() == "":
        raise BadRequest('"id" must name a reminder, as list_reminders shows it.', code="invalid_id")
    return str(value).strip()


def _schedule_value(key: str, value: Any) -> Any:
    """`at` with a space instead of the ISO "T" (as models write it) made ISO; anything else unchanged."""
    if key == "at" and isinstance(value, str):
        return SPACED_DATE_TIME.sub(r"\1T\2", value.strip())
    return value


# ---- calls written as text ----------------------------------------------------------------------


def split_tool_calls(text: str, first_number: int = 0) -> tuple[str, list[ToolCall]]:
    """`text` without its `<tool_call>…</tool_call>` blocks, and the calls they hold (an unclosed last one too)."""
    if OPEN_TAG not in text:
        return text, []
    calls: list[ToolCall] = []
    for match in TEXT_CALL.finditer(text):
        call = _text_call(match.group(1), first_number + len(calls))
        if call is not None:
            calls.append(call)
    return TEXT_CALL.sub("", text).strip(), calls


def _text_call(body: str, number: int) -> ToolCall | None:
    """The call inside one tag: `{"name": …, "arguments": {…}}`; None when it is not one."""
    try:
        data = json.loads(body.strip())
    except (ValueError, RecursionError):
        log.info("A <tool_call> block the model wrote is not JSON; ignored")
        return None
    if not isinstance(data, dict) or not isinstance(data.get("name"), str):
        return None
    arguments = data.get("arguments", data.get("parameters", {}))
    if not isinstance(arguments, str):
        arguments = json.dumps(arguments, ensure_ascii=False)
    return ToolCall(f"call_text_{number}", data["name"], arguments)


class ToolCallFilter:
    """Streamed text with `<tool_call>` blocks held back: text that may begin a tag waits until it is clear."""

    def __init__(self, first_number: int = 0):
        self._pending = ""
        self._first = first_number
        self.calls: list[ToolCall] = []

    def feed(self, text: str) -> str:
        """The part of the text so far that can be shown now."""
        self._pending += text
        shown: list[str] = []
        while self._pending:
            start = self._pending.find(OPEN_TAG)
            if start < 0:
                keep = _partial_tag_length(self._pending)
                shown.append(self._pending[: len(self._pending) - keep])
                self._pending = self._pending[len(self._pending) - keep :]
                break
            shown.append(self._pending[:start])
            end = self._pending.find(CLOSE_TAG, start)
            if end < 0:
                self._pending = self._pending[start:]
                break
            self._take(self._pending[start + len(OPEN_TAG) : end])
            self._pending = self._pending[end + len(CLOSE_TAG) :]
        return "".join(shown)

    def finish(self) -> str:
        """What is left at the end: an unclosed block is a call when it parses, else it was just text."""
        rest, self._pending = self._pending, ""
        if rest.startswith(OPEN_TAG) and self._take(rest[len(OPEN_TAG) :]):
            return ""
        return rest

    def _take(self, body: str) -> bool:
        call = _text_call(body, self._first + len(self.calls))
        if call is not None:
            self.calls.append(call)
        return call is not None


def _partial_tag_length(text: str) -> int:
    """How many characters at the end of `text` could be the start of `<tool_call>`."""
    for length in range(min(len(OPEN_TAG) - 1, len(text)), 0, -1):
        if OPEN_TAG.startswith(text[-length:]):
            return length
    return 0
