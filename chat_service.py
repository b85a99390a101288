"""A turn of conversation: store the user's words, ask the model with recent context, store the reply.

The model may set, change or cancel reminders during a turn through tools (reminder_tools.py); the calls
and their results go back and forth within the turn, and only the final reply is stored, with the
`reminder_actions` it took. Reminder messages wait for a turn in progress to end (turn_gate.py).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field
from typing import Any, NamedTuple, TypeVar

from config import Settings
from conversations import MAIN, Conversations
from errors import INTERNAL_ERROR, AppError, KeyReused, NotConfigured, NotFound, StorageError, UpstreamError
from history_store import KEYED_LOOKBACK, STREAMING, HistoryStore, Message
from reminder_tools import (
    MAX_TOOL_ROUNDS,
    TOOLS,
    ReminderTools,
    ToolCallFilter,
    phrase_note,
    split_tool_calls,
    time_line,
)
from reminders import ReminderStore
from replies import TERMINAL, Journal, Replies
from titles import Titles
from turn_gate import Turn, TurnGate
from upstream_client import Cancel, Completion, ToolCall, UpstreamClient, UpstreamStream

log = logging.getLogger(__name__)


REMINDER_PROMPT = (
    "It is time for a reminder I set: \u201c{text}\u201d. Remind me of it now, briefly and warmly, "
    "in the language of the reminder."
)


# Besides the reminder's own wording time, how long its message may wait for a turn in progress to end.
TURN_WAIT_MARGIN_SECONDS = 30
STOP_WAIT_SECONDS = 5.0  # Stop answers once the reply is stored stopped; the writer notices within 0.1 s
SETTLE_WAIT_SECONDS = 2.0  # reading a dead writer's journal to settle its reply
INTERRUPTED = "The server stopped while writing this reply; try again."
Answer = TypeVar("Answer", Completion, UpstreamStream)


@dataclass
class _Turn:
    """What one turn sends the model, and what its reminder tools did so far."""

    conversation_id: str
    store: HistoryStore
    question: Message
    messages: list[dict[str, Any]]
    offer_tools: bool
    rounds: int = 0  # tool rounds carried out
    actions: list[dict[str, Any]] = field(default_factory=list)
    cancel: Cancel = field(default_factory=Cancel)  # Stop reaches every request of the turn through it

    @property
    def tools(self) -> list[dict[str, Any]] | None:
        """The tools to offer on the next request: none once refused, or after the last round allowed."""
        return TOOLS if self.offer_tools and self.rounds < MAX_TOOL_ROUNDS else None


class _Asked(NamedTuple):
    """A turn's question, the reply to answer with instead when the message came before, and what its new reply
    carries (the key a retry was sent with)."""

    question: Message
    answer: Message | None
    reply_fields: dict[str, Any] = {}  # noqa: RUF012 (never changed)


class ChatService:
    """Ties the history store and the upstream client together; routes and the scheduler call it."""

    def __init__(
        self,
        settings: Settings,
        conversations: Conversations,
        upstream: UpstreamClient,
        reminders: ReminderStore,
    ):
        self.settings = settings
        self.conversations = conversations
        self.upstream = upstream
        self.reminder_tools = ReminderTools(reminders, settings.timezone)
        self.titles = Titles(settings, upstream)
        self.replies = Replies(settings.data_dir / "replies")

    def _gate(self, conversation_id: str) -> TurnGate:
        """The gate of one conversation: a turn there holds back only that conversation's reminder messages."""
        path = self.conversations.folder / f"{conversation_id}.turns.lock"
        return TurnGate(path, self.settings.read_timeout + TURN_WAIT_MARGIN_SECONDS)

    # ---- input ---------------------------------------------------------------------------

    def _question(self, store: HistoryStore, text: str, retry_of: int | None, key: str | None) -> _Asked:
        """The user's message: the stored one when retrying a turn that got no whole reply, else a new one; and,
        when the message came before with its idempotency key, the reply to it to answer with instead.

        A retry that names another message, or one already answered, stores the text as new. A retry of a
        stored question with a key not seen before puts the key on its reply, so that sending it again finds it.
        """
        if key is not None:
            known = store.keyed(key)
            if known is not None and known["role"] == "assistant":  # a retry first sent with this key
                question = store.message(known.get("reply_to") or 0)
                return self._sent_again(store, question, text, {"idempotency_key": key})
            if known is not None or retry_of is None:
                stored: list[int] = []
                question = store.append("user", text, durable=False, on_id=stored.append, idempotency_key=key)
                return _Asked(question, None) if stored else self._sent_again(store, question, text, {})
        keyed = {"idempotency_key": key} if key is not None else {}
        if retry_of is not None:
            recent = store.recent(self.settings.history_live_limit)
            answered = any(
                m.get("reply_to") == retry_of and not m.get("incomplete") and not m.get("stopped") for m in recent
            )
            earlier = next((m for m in recent if m["id"] == retry_of), None)
            if earlier and not answered and earlier["role"] == "user" and earlier["content"] == text:
                return _Asked(earlier, None, keyed)
        # Synced with the turn's reply or failure record, which are always stored: the model is asked sooner.
        return _Asked(store.append("user", text, durable=False, **keyed), None)

    def _sent_again(
        self, store: HistoryStore, question: Message | None, text: str, reply_fields: dict[str, Any]
    ) -> _Asked:
        """A message whose key came before: its question, and the reply to answer with if there is one."""
        if question is None or question["content"] != text:
            raise KeyReused("This idempotency_key came before with another message; make up a new one.")
        return _Asked(question, self._answer_to(store, question), reply_fields)

    @staticmethod
    def _answer_to(store: HistoryStore, question: Message) -> Message | None:
        """The reply that answers `question` when the message comes again: being written, or ended whole. None
        when there is none (its sender died before the model answered) or it failed or was stopped: ask again,
        as `retry_of` would."""
        recent = store.recent(KEYED_LOOKBACK)
        reply = next((m for m in reversed(recent) if m.get("reply_to") == question["id"]), None)
        if reply is None or ((reply.get("error_code") or reply.get("stopped")) and not reply.get(STREAMING)):
            return None
        return reply

    @contextlib.contextmanager
    def _sending(self, conversation_id: str, key: str | None) -> Iterator[None]:
        """Held from storing a keyed message until its reply is begun (or stored, or failed): the same message sent
        again meanwhile, on any worker, waits for that and then answers with it."""
        with contextlib.ExitStack() as held:
            if key is not None:
                try:
                    held.enter_context(self.replies.sending(conversation_id, key))
                except OSError as error:
                    raise StorageError(f"The message cannot be stored: {error.strerror or error}.") from None
            yield

    def _require_configured(self) -> None:
        if not self.settings.chat_configured:
            raise NotConfigured("Chat is not configured: set API_KEY in .env (or the environment) and restart.")

    # ---- turns ---------------------------------------------------------------------------

    def reply(
        self, text: str, retry_of: int | None = None, conversation_id: str | None = None, key: str | None = None
    ) -> Message:
        """Store the user's message, get the whole reply (carrying out its reminder calls), store it and return it."""
        store = self.conversations.store(conversation_id)
        self._require_configured()
        with (
            contextlib.closing(self._gate(conversation_id or MAIN).turn()),
            self._sending(conversation_id or MAIN, key),
        ):
            question, earlier, reply_fields = self._question(store, text, retry_of, key)
            if earlier is not None:  # the same message sent again: its reply, once it ends, unless it fails
                earlier = self._awaited(conversation_id or MAIN, store, earlier, self.settings.read_timeout + 30)
                if not earlier.get("error_code"):
                    return earlier
            turn = self._start_turn(conversation_id or MAIN, store, question)
            with self._failing_turn(turn):
                completion = self._complete(turn)
            reply = self._store_reply(
                store, completion, reply_to=question["id"], **reply_fields, **_actions_field(turn)
            )
        self.titles.after_exchange(conversation_id or MAIN, store, question, reply)
        return reply

    def stream_reply(
        self, text: str, retry_of: int | None = None, conversation_id: str | None = None, key: str | None = None
    ) -> Iterator[dict[str, Any]]:
        """Store the user's message and open the model stream now, so refusals raise before any event.

        The reply is then written by a thread of its own, into the history (a `streaming` message from the
        start) and into its journal; a client that leaves does not stop it, only `stop_reply` does. The returned
        iterator follows the journal: the page's events, each with its `id`. The same message sent again with
        its idempotency key follows the reply already under way instead, from its first event.
        """
        conversation_id = conversation_id or MAIN
        store = self.conversations.store(conversation_id)
        self._require_configured()
        hold = self._gate(conversation_id).turn()
        try:
            with self._sending(conversation_id, key):
                question, earlier, reply_fields = self._question(store, text, retry_of, key)
                if earlier is not None:
                    hold.close()
                    return self._follow(conversation_id, store, earlier, 0)
                turn = self._start_turn(conversation_id, store, question)
                with self._failing_turn(turn):
                    pieces = self._ask(turn, self.upstream.stream)
                    try:
                        journal, placeholder = self._begin_reply(
                            store, conversation_id, None, reply_to=question["id"], **reply_fields
                        )
                    except BaseException:
                        pieces.close()
                        raise
        except BaseException:
            hold.close()
            raise
        return _Written(journal, self._relay(turn, pieces, hold, placeholder, journal))

    def _begin_reply(
        self, store: HistoryStore, conversation_id: str, fallback: str | None, **fields: Any
    ) -> tuple[Journal, Message]:
        """The reply's journal, locked, and its message stored as `streaming` (numbered, the journal named after it)."""
        if self.replies.sweep_due():  # a server up for days: its old journals go, off the reply's path
            threading.Thread(target=self.settle_orphans, name="reply-sweep", daemon=True).start()
        try:
            journal = self.replies.open(conversation_id, fallback)
        except OSError as error:
            raise StorageError(f"The reply cannot be written: {error.strerror or error}.") from None
        try:
            message = store.append(
                "assistant", "", durable=False, on_id=journal.bind, streaming=True, model=self.settings.model, **fields
            )
        except BaseException:
            journal.end()
            raise
        if not journal.message_id:  # a reminder occurrence stored already: that message, no journal
            journal.end()
        return journal, message

    def follow_reply(self, conversation_id: str, message_id: int, after: int = 0) -> Iterator[dict[str, Any]]:
        """The events of reply `message_id` numbered above `after`, then live until its end, from any worker.

        A reply whose journal is gone (ended long ago) answers only its end, from the history.
        """
        store = self.conversations.store(conversation_id)
        message = self._reply(store, message_id)  # checked now, not once the response has started
        return self._follow(conversation_id, store, message, after)

    def _follow(
        self, conversation_id: str, store: HistoryStore, message: Message, after: int
    ) -> Iterator[dict[str, Any]]:
        try:
            yield from self.replies.follow(conversation_id, message["id"], after, self._settler(store, message["id"]))
        except FileNotFoundError:
            yield {"id": after + 1, **_terminal(self._settled(conversation_id, store, message))}

    @staticmethod
    def _reply(store: HistoryStore, message_id: int) -> Message:
        message = store.message(message_id)
        if message is None or message["role"] != "assistant":
            raise NotFound("There is no reply with this id in this conversation.", code="message_not_found")
        return message

    def stop_reply(self, conversation_id: str | None, message_id: int) -> Message:
        """Stop reply `message_id` wherever it is being written; returns it as stored (stopped, or as it ended)."""
        conversation_id = conversation_id or MAIN
        store = self.conversations.store(conversation_id)
        message = self._reply(store, message_id)
        if message.get(STREAMING):
            self.replies.stop(conversation_id, message_id)
            return self._awaited(conversation_id, store, message, STOP_WAIT_SECONDS)
        return message

    def _awaited(self, conversation_id: str, store: HistoryStore, message: Message, seconds: float) -> Message:
        """Message `message` once its reply ended (at most `seconds` from now; settled if its writer died)."""
        deadline = time.monotonic() + seconds
        settle = self._settler(store, message["id"])
        with contextlib.suppress(FileNotFoundError):
            for event in self.replies.follow(conversation_id, message["id"], 0, settle, deadline):
                if event.get("type") in TERMINAL and event.get("message"):
                    return event["message"]
        return self._settled(conversation_id, store, store.message(message["id"]) or message)

    def settle_orphans(self) -> None:
        """At start-up (and hourly): drop old journals, and store as interrupted each reply a dead process left
        `streaming`."""
        self.replies.sweep_due()  # marked swept: the workers starting with this one need not sweep at once again
        for conversation_id, message_id, old in self.replies.sweep():
            try:
                store = self.conversations.store(conversation_id)
                message = store.message(message_id)
                if message is not None:
                    self._settled(conversation_id, store, message)
            except AppError as error:  # a deleted conversation, an unreadable log: nothing to settle there
                log.info("Reply %s-%d not settled: %s", conversation_id, message_id, error.message)
            if old:
                with contextlib.suppress(OSError):
                    self.replies.remove(conversation_id, message_id)

    def _settled(self, conversation_id: str, store: HistoryStore, message: Message) -> Message:
        """A `streaming` message no process is writing any more (no journal, or an unlocked one), stored as
        interrupted; any other message as it is."""
        if not message.get(STREAMING):
            return message
        alive = self.replies.alive(conversation_id, message["id"])
        if alive:
            return message
        if alive is None:  # no journal at all
            terminal = self._settler(store, message["id"])([])
            return terminal.get("message") or message
        return self._awaited(conversation_id, store, message, SETTLE_WAIT_SECONDS)

    def _settler(self, store: HistoryStore, message_id: int) -> Callable[[list[dict[str, Any]]], dict[str, Any]]:
        """How to end a reply whose writer died, from the events it wrote: the text so far, marked interrupted
        (Retry answers it again); a reminder's message gets the reminder's own text, so it is never lost."""

        def settle(events: list[dict[str, Any]]) -> dict[str, Any]:
            begin = next((e for e in events if e.get("type") == "begin"), {})
            content = "".join(str(e.get("content", "")) for e in events if e.get("type") == "delta")
            reasoning = "".join(str(e.get("content", "")) for e in events if e.get("type") == "reasoning")
            actions = [_action(e) for e in events if e.get("type") == "reminder"]
            fields: dict[str, Any] = {"content": content, "interrupted": True}
            if begin.get("fallback") is not None:
                fields.update(content=begin["fallback"], generated=False)
            else:
                fields.update(incomplete=True, error=INTERRUPTED, error_code="interrupted")
                if reasoning:
                    fields["reasoning"] = reasoning
                if actions:
                    fields["reminder_actions"] = actions
            try:
                message = store.finish(message_id, fields)
            except StorageError as error:
                log.warning("The interrupted reply %d was not stored: %s", message_id, error.message)
                message = None
            if message is not None:  # as stored: by this settler, by another, or by the writer just before it died
                return _terminal(message)
            if begin.get("fallback") is not None:
                return {"type": "done", "message": message}
            return {"type": "error", "error": INTERRUPTED, "code": "interrupted", "message": message}

        return settle

    @contextlib.contextmanager
    def _failing_turn(self, turn: _Turn) -> Iterator[None]:
        """An error raised inside is stored as the turn's failure and carries the stored question, so a
        client can retry with `retry_of`."""
        try:
            yield
        except AppError as error:
            self._store_failure(turn, error.message, error.code)
            error.extra["user_message"] = turn.question
            raise

    def _store_failure(self, turn: _Turn, error: str, code: str) -> None:
        """Record that the question got no reply, so the history shows the error (and a page its Retry) after a reload.

        An empty, incomplete assistant message: `_context` leaves it out and `_question` still lets the turn
        be retried. If even this cannot be stored, the caller's error is the one worth reporting.
        """
        question = turn.question
        try:
            turn.store.append(
                "assistant",
                "",
                reply_to=question["id"],
                incomplete=True,
                error=error,
                error_code=code,
                **_actions_field(turn),
            )
        except StorageError:
            log.warning("Could not record the failed turn of message %d in the history", question["id"])

    # ---- reminder tools ------------------------------------------------------------------

    def _start_turn(self, conversation_id: str, store: HistoryStore, question: Message) -> _Turn:
        """The turn's context, with tools offered, or with the reminder the phrase grammar set already."""
        context = self._context(store, question)
        turn = _Turn(conversation_id, store, question, context, offer_tools=self.settings.reminder_tools)
        if not turn.offer_tools:
            self._apply_phrases(turn)
        return turn

    def _apply_phrases(self, turn: _Turn) -> None:
        """Without tools: set the reminder the user's words ask for, and tell the model it is set."""
        action = self.reminder_tools.phrase_action(turn.question["content"], turn.conversation_id)
        if action is not None:
            turn.actions.append(action)
            system = turn.messages[0]
            turn.messages[0] = {**system, "content": f"{system['content']}\n{phrase_note([action])}"}

    def _ask(self, turn: _Turn, send: Callable[..., Answer]) -> Answer:
        """One request of the turn; when the provider refuses tools (HTTP 400), once more without them."""
        tools = turn.tools
        try:
            return send(turn.messages, tools, cancel=turn.cancel)
        except UpstreamError as error:
            if tools is None or error.upstream_status != 400:
                raise
            log.warning("The model API refused the reminder tools (%s); asking again without them", error.message)
        turn.offer_tools = False
        if turn.rounds == 0:  # refused before any call ran: the phrase grammar reads the user's words instead
            self._apply_phrases(turn)
        return send(turn.messages, None, cancel=turn.cancel)

    def _complete(self, turn: _Turn) -> Completion:
        """The whole reply, after up to MAX_TOOL_ROUNDS rounds of reminder calls."""
        shown: list[str] = []
        reasoning: list[str] = []
        usage: dict[str, Any] = {}
        while True:
            completion = self._ask(turn, self.upstream.complete)
            calls = completion.tool_calls if turn.tools else []
            text = completion.content
            if turn.offer_tools:  # a small model may write its calls as text; the tags are never shown
                text, written = split_tool_calls(text, len(calls))
                calls = [*calls, *written] if turn.tools else []
            shown.append(text)
            reasoning.append(completion.reasoning)
            _add_usage(usage, completion.usage)
            if not calls:
                break
            list(self._run_tools(turn, calls, text))
        completion.content = "\n\n".join(part for part in shown if part.strip())
        completion.reasoning = "\n\n".join(part for part in reasoning if part)
        completion.usage = usage
        return completion

    def _run_tools(self, turn: _Turn, calls: list[ToolCall], text: str) -> Iterator[dict[str, Any]]:
        """Carry out one round of calls, adding them and their results to the context; yields the page's events."""
        turn.rounds += 1
        turn.messages.append(
            {
                "role": "assistant",
                "content": text,
                "tool_calls": [
                    {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
                    for c in calls
                ],
            }
        )
        for call in calls:
            result, action = self.reminder_tools.run(call, turn.conversation_id)
            turn.messages.append({"role": "tool", "tool_call_id": call.id, "content": result})
            if action is not None:
                turn.actions.append(action)
                yield {"type": "reminder", **action}

    # ---- streaming -----------------------------------------------------------------------

    def _relay(
        self, turn: _Turn, pieces: UpstreamStream, hold: Turn, placeholder: Message, journal: Journal
    ) -> Generator[dict[str, Any], None, None]:
        """The events of one streamed turn, for its journal; stores the reply however the stream ends."""
        question = turn.question
        content: list[str] = []
        reasoning: list[str] = []
        outcome = Completion(content="", model=self.settings.model)
        extra: dict[str, Any] = {"incomplete": True, "error": INTERNAL_ERROR, "error_code": "internal_error"}
        journal.on_stop(turn.cancel.cancel)  # the stream open now, and the requests of any tool rounds to come
        try:
            yield {
                "type": "start",
                "message_id": placeholder["id"],
                "conversation_id": turn.conversation_id,
                "user_message": question,
            }
            for action in turn.actions:  # set by the phrase grammar before the model was asked
                yield {"type": "reminder", **action}
            while True:
                hidden = ToolCallFilter() if turn.offer_tools else None
                calls: list[ToolCall] = []
                round_text: list[str] = []
                for piece in pieces:
                    if piece.kind == "delta":
                        text = hidden.feed(piece.text) if hidden else piece.text
                        if text:
                            yield self._shown(text, content, round_text)
                    elif piece.kind == "reasoning":
                        reasoning.append(piece.text)
                        yield {"type": "reasoning", "content": piece.text}
                    else:
                        _add_usage(outcome.usage, piece.usage)
                        calls = piece.tool_calls
                    outcome.model = piece.model or outcome.model
                if hidden is not None:
                    rest = hidden.finish()
                    if rest:
                        yield self._shown(rest, content, round_text)
                    calls = [*calls, *hidden.calls]
                if not calls or turn.tools is None or journal.stopping.is_set():
                    break
                pieces.close()
                yield from self._run_tools(turn, calls, "".join(round_text))
                pieces = self._ask(turn, self.upstream.stream)
            extra = {"stopped": True} if journal.stopping.is_set() else {}
        except AppError as error:
            if journal.stopping.is_set():  # the aborted read, or a request Stop caught before it was answered
                extra = {"stopped": True}
            else:
                extra = {"incomplete": True, "error": error.message, "error_code": error.code}
        except Exception:
            log.exception("The reply stream failed unexpectedly")
        finally:
            pieces.close()
        message: Message | None = None
        try:
            outcome.content, outcome.reasoning = "".join(content), "".join(reasoning)
            message = self._finish_reply(turn.store, placeholder, outcome, **extra, **_actions_field(turn))
            if "stopped" in extra:
                log.info("Reply stopped; stored %d characters", len(outcome.content))
        except StorageError as error:  # a full disk, or the conversation deleted meanwhile: say so, no traceback
            log.warning("The streamed reply to message %d was not stored: %s", question["id"], error.message)
            extra = {"incomplete": True, "error": error.message, "error_code": error.code}
        finally:
            hold.close()  # the reply is stored: a reminder due meanwhile may follow it now
        if not extra and message is not None:
            self.titles.after_exchange(turn.conversation_id, turn.store, question, message)
        yield _terminal(message, extra)

    def _finish_reply(
        self, store: HistoryStore, placeholder: Message, completion: Completion, **fields: Any
    ) -> Message:
        """Store a streamed reply's final form in its `streaming` message; the form is returned even if the
        message is gone (its conversation was cleared meanwhile)."""
        fields = {"content": completion.content, "model": completion.model or self.settings.model, **fields}
        if completion.reasoning:
            fields["reasoning"] = completion.reasoning
        if completion.usage:
            fields["usage"] = completion.usage
        stored = store.finish(placeholder["id"], fields)
        if stored is None:
            return {k: v for k, v in {**placeholder, **fields}.items() if k != STREAMING}
        return stored

    @staticmethod
    def _shown(text: str, content: list[str], round_text: list[str]) -> dict[str, Any]:
        """A delta event for visible text; a new round's first words are set apart from the last round's."""
        if not round_text and content:
            text = "\n\n" + text
        content.append(text)
        round_text.append(text)
        return {"type": "delta", "content": text}

    def scheduled_reply(self, tick: str) -> Message:
        """Ask the model for the reminder of cron tick `tick` and store it (once per tick)."""
        self._require_configured()
        store = self.conversations.main
        existing = store.find_scheduled(tick)
        if existing is not None:
            return self._awaited(MAIN, store, existing, self.settings.read_timeout + 30)
        prompt = {"role": "user", "content": self.settings.scheduled_message_prompt}
        pieces = self.upstream.stream([*self._context(store, None), prompt], None)
        try:
            with self._gate(MAIN).between_turns():  # after a reply in progress, never between a question and its answer
                journal, message = self._begin_reply(store, MAIN, None, is_scheduled=True, scheduled_for=tick)
        except BaseException:
            pieces.close()
            raise
        if not journal.message_id:  # another process stored this tick meanwhile
            pieces.close()
            return message
        message, failure = self._word(journal, store, message, pieces)
        if failure is not None:
            raise failure
        return message

    def reminder_reply(
        self, reminder: dict[str, Any], scheduled_for: str, late: bool = False
    ) -> tuple[Message, AppError | None]:
        """Store the message of one occurrence of a user's reminder (once) and return it with the model's failure.

        `generate` asks the model to word it, with the conversation as context; when that fails, or in
        `plain` mode, the reminder's own text is sent (`generated: false`), so a reminder is never lost.
        """
        conversation_id = self.reminder_conversation(reminder)
        store = self.conversations.store(conversation_id)
        gate = self._gate(conversation_id)
        existing = store.find_scheduled(scheduled_for, reminder["id"])
        if existing is not None:  # still being worded (by a leader since killed, or a manual run): its end
            return self._awaited(conversation_id, store, existing, self.settings.read_timeout + 30), None
        fields: dict[str, Any] = {"is_scheduled": True, "reminder_id": reminder["id"], "scheduled_for": scheduled_for}
        if late:
            fields["late"] = True
        failure: AppError | None = None
        if reminder["mode"] == "generate":
            try:
                self._require_configured()
                prompt = {"role": "user", "content": REMINDER_PROMPT.format(text=reminder["text"])}
                pieces = self.upstream.stream([*self._context(store, None), prompt], None)
            except AppError as error:
                log.warning("Reminder %s could not be worded by the model: %s", reminder["id"], error.message)
                failure = error
            else:
                try:
                    with gate.between_turns():  # after a reply in progress, never between a question and its answer
                        journal, message = self._begin_reply(
                            store, conversation_id, reminder["text"], generated=True, **fields
                        )
                except BaseException:
                    pieces.close()
                    raise
                if not journal.message_id:  # another process stored this occurrence meanwhile
                    pieces.close()
                    return message, None
                return self._word(journal, store, message, pieces)
        with gate.between_turns():
            return store.append("assistant", reminder["text"], generated=False, **fields), failure

    def _word(
        self, journal: Journal, store: HistoryStore, placeholder: Message, pieces: UpstreamStream
    ) -> tuple[Message, AppError | None]:
        """Stream a reminder's wording into its message and journal, live for open pages. If the model fails or
        someone stops it, the message is the reminder's own text (`generated: false`): a reminder is never lost.
        The .env reminder (no text of its own, `journal.fallback` None) keeps what arrived, marked failed or stopped."""
        content: list[str] = []
        outcome = Completion(content="", model=self.settings.model)
        failure: AppError | None = None
        journal.on_stop(pieces.abort)
        try:
            start = {"type": "start", "message_id": placeholder["id"], "conversation_id": journal.conversation_id}
            journal.write({**start, "message": placeholder})
            for piece in pieces:
                if piece.kind == "delta":
                    content.append(piece.text)
                    journal.write({"type": "delta", "content": piece.text})
                elif piece.kind == "reasoning":
                    journal.write({"type": "reasoning", "content": piece.text})
                else:
                    _add_usage(outcome.usage, piece.usage)
                outcome.model = piece.model or outcome.model
        except AppError as error:
            if not journal.stopping.is_set():
                log.warning("Reminder message %d could not be worded: %s", placeholder["id"], error.message)
                failure = error
        except OSError as error:  # the journal cannot be written (a full disk): the reminder's own text still goes
            failure = StorageError(f"The reminder's wording cannot be written: {error.strerror or error}.")
            log.warning("Reminder message %d could not be worded: %s", placeholder["id"], failure.message)
        finally:
            pieces.close()
        try:
            outcome.content = "".join(content)
            fallback = journal.fallback
            if fallback is not None and (failure or journal.stopping.is_set() or not outcome.content.strip()):
                fields = {"content": fallback, "generated": False, "model": outcome.model}
                message = store.finish(placeholder["id"], fields) or {**placeholder, **fields}
            elif failure is not None:  # the .env reminder has no text of its own: what arrived, marked failed
                failed = {"incomplete": True, "error": failure.message, "error_code": failure.code}
                message = self._finish_reply(store, placeholder, outcome, **failed)
            else:
                stopped = {"stopped": True} if journal.stopping.is_set() else {}
                message = self._finish_reply(store, placeholder, outcome, **stopped)
            with contextlib.suppress(OSError):  # without its end, followers settle it from the stored message
                journal.write(_terminal(message))
        finally:
            journal.end()
        return message, failure

    def reminder_conversation(self, reminder: dict[str, Any]) -> str:
        """Where a reminder's messages go: its conversation, or main once that was deleted (never lost)."""
        conversation_id = reminder.get("conversation_id") or MAIN
        if self.conversations.exists(conversation_id):
            return conversation_id
        log.warning("Reminder %s names deleted conversation %s; sending to main", reminder["id"], conversation_id)
        return MAIN

    def _store_reply(self, store: HistoryStore, completion: Completion, **fields: Any) -> Message:
        if completion.reasoning:
            fields["reasoning"] = completion.reasoning
        if completion.usage:
            fields["usage"] = completion.usage
        return store.append("assistant", completion.content, model=completion.model or self.settings.model, **fields)

    # ---- context -------------------------------------------------------------------------

    def _context(self, store: HistoryStore, question: Message | None) -> list[dict[str, Any]]:
        """SYSTEM_PROMPT (and the local time) plus the newest turns within the message and character budgets.

        A user message that never got an answer (its turn failed) is left out, so a failure does
        not leave two user turns in a row; the empty record of a failure is no answer, and is left
        out too. Scheduled reminders count as assistant turns.
        """
        settings = self.settings
        recent = store.recent(settings.context_max_messages * 2 + 2)
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
        now = self.reminder_tools.now()
        system = f"{settings.system_prompt}\n{time_line(now, settings.timezone)}"
        return [{"role": "system", "content": system}, *reversed(chosen)]

    # ---- history -------------------------------------------------------------------------

    def history(
        self,
        limit: int | None,
        before: int | None = None,
        after: int | None = None,
        conversation_id: str | None = None,
    ) -> tuple[list[Message], bool]:
        """A page of the conversation and whether more exist beyond it.

        By default the newest page; with `before`, the page older than that id; with `after`,
        the messages newer than that id (for polling).
        """
        store = self.conversations.store(conversation_id)
        limit = limit or self.settings.history_page_size
        messages, more = store.newer(after, limit) if after is not None else store.page(limit, before)
        conversation_id = conversation_id or MAIN
        # A reply left `streaming` by a process that died is stored as interrupted before anyone sees it.
        return [self._settled(conversation_id, store, m) if m.get(STREAMING) else m for m in messages], more

    def clear_history(self, conversation_id: str | None = None) -> int:
        """Archive and hide every message of a conversation; returns how many were cleared."""
        return self.conversations.store(conversation_id).clear()


class _Written:
    """A reply's events as the request's own thread journals them, so the first words wait for no hand-off
    between threads. When the client leaves first (`close()`), a thread of its own writes the rest: the reply
    belongs to the server, not to the request."""

    def __init__(self, journal: Journal, events: Iterator[dict[str, Any]]):
        self._journal = journal
        self._events = events
        self._over = False

    def __iter__(self) -> _Written:
        return self

    def __next__(self) -> dict[str, Any]:
        try:
            event = next(self._events)
        except BaseException:  # StopIteration after the terminal event, or a bug in the relay
            self._end()
            raise
        return self._journal.write(event)

    def _end(self) -> None:
        if not self._over:
            self._over = True
            self._journal.end()

    def close(self) -> None:
        if not self._over:
            self._over = True
            # Not a daemon: a worker stopping gracefully lets the reply finish (Gunicorn's graceful_timeout allowing).
            threading.Thread(target=_write, args=(self._journal, self._events), name="reply", daemon=False).start()


def _write(journal: Journal, events: Iterator[dict[str, Any]]) -> None:
    """The reply's thread: each event into its journal, the journal released at the end (a reply that ends
    without its terminal event reads to followers as one whose writer died)."""
    try:
        for event in events:
            journal.write(event)
    except Exception:
        log.exception("Writing a reply's events failed")
    finally:
        journal.end()


def _terminal(message: Message | None, failure: dict[str, Any] | None = None) -> dict[str, Any]:
    """The last event of a reply: `done`, `stopped` or `error`, with the message as stored."""
    failure = failure if failure is not None else message or {}
    if failure.get("stopped"):
        return {"type": "stopped", "message": message}
    if failure.get("error_code"):
        return {"type": "error", "error": failure.get("error"), "code": failure["error_code"], "message": message}
    return {"type": "done", "message": message}


def _action(event: dict[str, Any]) -> dict[str, Any]:
    """A `reminder` event as the stored message's reminder action."""
    return {k: v for k, v in event.items() if k not in ("id", "type")}


def _actions_field(turn: _Turn) -> dict[str, Any]:
    """`reminder_actions` for the stored message, when the turn set, changed or cancelled reminders."""
    return {"reminder_actions": turn.actions} if turn.actions else {}


def _add_usage(total: dict[str, Any], usage: dict[str, Any]) -> None:
    """Add one request's token counts to the turn's: a turn with tool rounds makes several requests."""
    for key, value in usage.items():
        if isinstance(value, int | float) and not isinstance(value, bool):
            total[key] = total.get(key, 0) + value
        else:
            total.setdefault(key, value)
