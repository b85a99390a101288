"""A turn of conversation: store the user's words, ask the model with recent context, store the reply."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Generator, Iterator
from typing import Any

from config import Settings
from errors import INTERNAL_ERROR, AppError, NotConfigured, StorageError
from history_store import HistoryStore, Message
from upstream_client import Completion, UpstreamClient, UpstreamStream

log = logging.getLogger(__name__)


REMINDER_PROMPT = (
    "It is time for a reminder I set: \u201c{text}\u201d. Remind me of it now, briefly and warmly, "
    "in the language of the reminder."
)


class ChatService:
    """Ties the history store and the upstream client together; routes and the scheduler call it."""

    def __init__(self, settings: Settings, store: HistoryStore, upstream: UpstreamClient):
        self.settings = settings
        self.store = store
        self.upstream = upstream

    # ---- input ---------------------------------------------------------------------------

    def _question(self, text: str, retry_of: int | None) -> Message:
        """The user's message: the stored one when retrying a turn that got no whole reply, else a new one.

        A retry that names another message, or one already answered, stores the text as new.
        """
        if retry_of is not None:
            recent = self.store.recent(self.settings.history_live_limit)
            answered = any(
                m.get("reply_to") == retry_of and not m.get("incomplete") and not m.get("stopped") for m in recent
            )
            earlier = next((m for m in recent if m["id"] == retry_of), None)
            if earlier and not answered and earlier["role"] == "user" and earlier["content"] == text:
                return earlier
        return self.store.append("user", text)

    def _require_configured(self) -> None:
        if not self.settings.chat_configured:
            raise NotConfigured("Chat is not configured: set API_KEY in .env (or the environment) and restart.")

    # ---- turns ---------------------------------------------------------------------------

    def reply(self, text: str, retry_of: int | None = None) -> Message:
        """Store the user's message, get the whole reply, store it and return it."""
        self._require_configured()
        question = self._question(text, retry_of)
        with self._failing_turn(question):
            completion = self.upstream.complete(self._context(question))
        return self._store_reply(completion, reply_to=question["id"])

    def stream_reply(self, text: str, retry_of: int | None = None) -> Generator[dict[str, Any], None, None]:
        """Store the user's message and open the model stream now, so refusals raise before any event.

        The returned iterator yields the page's events; whatever happens to it (end, error, client
        gone), the text received so far is stored.
        """
        self._require_configured()
        question = self._question(text, retry_of)
        with self._failing_turn(question):
            pieces = self.upstream.stream(self._context(question))
        return self._relay(question, pieces)

    @contextlib.contextmanager
    def _failing_turn(self, question: Message) -> Iterator[None]:
        """An error raised inside is stored as the turn's failure and carries the stored question, so a
        client can retry with `retry_of`."""
        try:
            yield
        except AppError as error:
            self._store_failure(question, error.message, error.code)
            error.extra["user_message"] = question
            raise

    def _store_failure(self, question: Message, error: str, code: str) -> None:
        """Record that `question` got no reply, so the history shows the error (and a page its Retry) after a reload.

        An empty, incomplete assistant message: `_context` leaves it out and `_question` still lets the turn
        be retried. If even this cannot be stored, the caller's error is the one worth reporting.
        """
        try:
            self.store.append("assistant", "", reply_to=question["id"], incomplete=True, error=error, error_code=code)
        except StorageError:
            log.warning("Could not record the failed turn of message %d in the history", question["id"])

    def _relay(self, question: Message, pieces: UpstreamStream) -> Generator[dict[str, Any], None, None]:
        """The page's events for one streamed turn; stores the reply however the stream ends."""
        content: list[str] = []
        reasoning: list[str] = []
        outcome = Completion(content="")
        extra: dict[str, Any] = {"stopped": True}  # until the stream ends one way or the other
        try:
            yield {"type": "start", "user_message": question}
            for piece in pieces:
                if piece.kind == "delta":
                    content.append(piece.text)
                    yield {"type": "delta", "content": piece.text}
                elif piece.kind == "reasoning":
                    reasoning.append(piece.text)
                    yield {"type": "reasoning", "content": piece.text}
                else:
                    outcome.usage = piece.usage
                outcome.model = piece.model or outcome.model
            extra = {}
        except AppError as error:
            extra = {"incomplete": True, "error": error.message, "error_code": error.code}
            yield {"type": "error", "error": error.message, "code": error.code}
        except Exception:
            log.exception("The reply stream failed unexpectedly")
            extra = {"incomplete": True, "error": INTERNAL_ERROR, "error_code": "internal_error"}
            yield {
                "type": "error",
                "error": INTERNAL_ERROR,
                "code": "internal_error",
            }
        finally:
            pieces.close()
            outcome.content, outcome.reasoning = "".join(content), "".join(reasoning)
            if not extra or outcome.content or outcome.reasoning:
                reply = self._store_reply(outcome, reply_to=question["id"], **extra)
                if "stopped" in extra:
                    log.info("Client left mid-reply; stored %d characters as stopped", len(reply["content"]))
            elif "error" in extra:  # failed before any text: still recorded, as a non-stream failure is
                self._store_failure(question, extra["error"], extra["error_code"])
        if not extra:
            yield {"type": "done", "message": reply}

    def scheduled_reply(self, tick: str) -> Message:
        """Ask the model for the reminder of cron tick `tick` and store it (once per tick)."""
        self._require_configured()
        existing = self.store.find_scheduled(tick)
        if existing is not None:
            return existing
        prompt = {"role": "user", "content": self.settings.scheduled_message_prompt}
        completion = self.upstream.complete([*self._context(None), prompt])
        return self._store_reply(completion, is_scheduled=True, scheduled_for=tick)

    def reminder_reply(
        self, reminder: dict[str, Any], scheduled_for: str, late: bool = False
    ) -> tuple[Message, AppError | None]:
        """Store the message of one occurrence of a user's reminder (once) and return it with the model's failure.

        `generate` asks the model to word it, with the conversation as context; when that fails, or in
        `plain` mode, the reminder's own text is sent (`generated: false`), so a reminder is never lost.
        """
        existing = self.store.find_scheduled(scheduled_for, reminder["id"])
        if existing is not None:
            return existing, None
        fields: dict[str, Any] = {"is_scheduled": True, "reminder_id": reminder["id"], "scheduled_for": scheduled_for}
        if late:
            fields["late"] = True
        failure: AppError | None = None
        if reminder["mode"] == "generate":
            try:
                self._require_configured()
                prompt = {"role": "user", "content": REMINDER_PROMPT.format(text=reminder["text"])}
                completion = self.upstream.complete([*self._context(None), prompt])
                return self._store_reply(completion, generated=True, **fields), None
            except AppError as error:
                log.warning("Reminder %s could not be worded by the model: %s", reminder["id"], error.message)
                failure = error
        return self.store.append("assistant", reminder["text"], generated=False, **fields), failure

    def _store_reply(self, completion: Completion, **fields: Any) -> Message:
        if completion.reasoning:
            fields["reasoning"] = completion.reasoning
        if completion.usage:
            fields["usage"] = completion.usage
        return self.store.append(
            "assistant", completion.content, model=completion.model or self.settings.model, **fields
        )

    # ---- context -------------------------------------------------------------------------

    def _context(self, question: Message | None) -> list[dict[str, str]]:
        """SYSTEM_PROMPT plus the newest turns within the message and character budgets.

        A user message that never got an answer (its turn failed) is left out, so a failure does
        not leave two user turns in a row; the empty record of a failure is no answer, and is left
        out too. Scheduled reminders count as assistant turns.
        """
        settings = self.settings
        recent = self.store.recent(settings.context_max_messages * 2 + 2)
        current = question["id"] if question else None
        if current is not None:  # a retried question may have partial replies after it: end on the question
            recent = [m for m in recent if m["id"] < current] + [question]
        answered = {m.get("reply_to") for m in recent if m["role"] == "assistant" and m["content"]}
        turns = [
            m
            for m in recent
            if (m["role"] == "assistant" and m["content"])
            or (m["role"] == "user" and (m["id"] in answered or m["id"] == current))
        ]
        chosen: list[dict[str, str]] = []
        budget = settings.context_max_chars
        for message in reversed(turns):
            is_current = message["id"] == current
            if not is_current and (len(chosen) >= settings.context_max_messages or len(message["content"]) > budget):
                break
            budget -= len(message["content"])
            chosen.append({"role": message["role"], "content": message["content"]})
        return [{"role": "system", "content": settings.system_prompt}, *reversed(chosen)]

    # ---- history -------------------------------------------------------------------------

    def history(
        self, limit: int | None, before: int | None = None, after: int | None = None
    ) -> tuple[list[Message], bool]:
        """A page of the conversation and whether more exist beyond it.

        By default the newest page; with `before`, the page older than that id; with `after`,
        the messages newer than that id (for polling).
        """
        limit = limit or self.settings.history_page_size
        if after is not None:
            return self.store.newer(after, limit)
        return self.store.page(limit, before)

    def clear_history(self) -> int:
        """Archive and hide every message; returns how many were cleared."""
        return self.store.clear()
