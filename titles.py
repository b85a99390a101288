"""A short title for a new conversation, from its first exchange, without delaying the reply.

After the first reply in an untitled conversation, a background thread asks the model for a title;
if the model is unavailable or answers nothing usable, the first words of the question are used.
A title the user set meanwhile is never overwritten.
"""

from __future__ import annotations

import logging
import re
import threading
from typing import Any

from config import Settings
from conversations import MAIN
from errors import AppError
from history_store import HistoryStore, Message
from upstream_client import UpstreamClient

log = logging.getLogger(__name__)

TITLE_PROMPT = (
    "Write a title of at most six words for the conversation below, in the language the user wrote in. "
    "Answer with the title alone: no quotes, no full stop."
)
TITLE_MAX_CHARS = 40
EXCHANGE_CHARS = 1500  # of each side, sent to the model: a title needs no more
QUOTES = "\"'“”‘’「」『』《》`*#"


def first_words(text: str, limit: int = 24) -> str:
    """The question's opening, on one line: a title when the model cannot give one."""
    line = " ".join(text.split())
    if len(line) <= limit:
        return line
    cut = line[:limit]
    if " " in cut and line[limit] != " ":  # end on a word boundary where words have spaces
        cut = cut.rsplit(" ", 1)[0]
    return cut.rstrip(" ,，。.;；:：") + "…"


def cleaned(answer: str) -> str:
    """The model's title on one line, without quotes, a label or a final full stop; "" when unusable."""
    lines = [line.strip() for line in answer.strip().splitlines() if line.strip()]
    if not lines:
        return ""
    title = re.sub(r"^(title|标题)\s*[:：]\s*", "", lines[0], flags=re.IGNORECASE)
    title = title.strip(QUOTES + " 。.!！")
    return title[:TITLE_MAX_CHARS].strip()


class Titles:
    """Gives an untitled conversation a title after its first exchange, in a background thread."""

    def __init__(self, settings: Settings, upstream: UpstreamClient):
        self.settings = settings
        self.upstream = upstream
        self._busy: set[str] = set()
        self._lock = threading.Lock()

    def after_exchange(self, conversation_id: str, store: HistoryStore, question: Message, reply: Message) -> None:
        """Start titling `conversation_id` if it has no title yet (the main conversation keeps none)."""
        if conversation_id == MAIN or not reply.get("content"):
            return
        meta = store.meta()
        if meta.get("title") or meta.get("titled"):
            return
        with self._lock:
            if conversation_id in self._busy:
                return
            self._busy.add(conversation_id)
        thread = threading.Thread(
            target=self._title, args=(conversation_id, store, question, reply), name="title", daemon=True
        )
        thread.start()

    def _title(self, conversation_id: str, store: HistoryStore, question: Message, reply: Message) -> None:
        try:
            title = self._ask(question["content"], reply["content"]) or first_words(question["content"])
            store.change_meta(only_unset=True, title=title, titled=True)
        except AppError as error:
            log.warning("Conversation %s could not be titled: %s", conversation_id, error.message)
        finally:
            with self._lock:
                self._busy.discard(conversation_id)

    def _ask(self, question: str, answer: str) -> str:
        if not self.settings.chat_configured:
            return ""
        exchange = f"User: {question[:EXCHANGE_CHARS]}\n\nAssistant: {answer[:EXCHANGE_CHARS]}"
        messages: list[dict[str, Any]] = [
            {"role": "system", "content": TITLE_PROMPT},
            {"role": "user", "content": exchange},
        ]
        try:
            return cleaned(self.upstream.complete(messages).content)
        except AppError as error:
            log.info("The model gave no title (%s); using the first words", error.message)
            return ""
