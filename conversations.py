"""Several conversations, each a JSON Lines log (history_store.py), with a small rebuildable index.

Layout, in `conversations/` beside CHAT_HISTORY_FILE (default `data/conversations/`):

- `main.jsonl` — the main conversation: the one every call without `conversation_id` uses, where
  reminders land by default. It always exists and cannot be deleted.
- `<12 hex>.jsonl` (+ `-archive/`) — every other conversation. Its title and pinned mark live in
  its own log (header and meta lines), so the log alone is the truth.
- `index.json` — each conversation's title, times, message count and pinned mark, with the size of
  the log they were read from: a listing reads only the logs that changed since. Losing it costs
  one slower listing; it is rebuilt from the logs.
- `deleted/<id>-<time>/` — a deleted conversation's files, moved, never destroyed.

The pre-conversations history (`chat_history.json`, either the original app's plain list or the
format with `chat_history-archive/`) becomes the main conversation on first start, ids kept; the
old files are renamed `.migrated` only after the new log is safely written.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import secrets
import shutil
import threading
from collections import OrderedDict
from collections.abc import Iterator
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from config import Settings
from errors import Conflict, NotFound, StorageError
from exchange import ImportedConversation
from history_store import (
    CorruptHistory,
    HistoryStore,
    Message,
    file_lock,
    forget_archived,
    read_json_or_set_aside,
    read_legacy_state,
    write_json_atomic,
)
from search import Source

log = logging.getLogger(__name__)

MAIN = "main"
ID_PATTERN = re.compile(r"^(main|[0-9a-f]{12})$")
OPEN_STORES = 32  # conversations kept parsed in memory per process; the rest are read again when asked
PUBLIC_FIELDS = ("id", "title", "created_at", "updated_at", "message_count", "pinned", "reminder_at")


class Conversations:
    """Creates, lists, changes and deletes conversations, and hands out each one's HistoryStore."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.folder = settings.data_dir / "conversations"
        self.zone = ZoneInfo(settings.timezone)
        self._lock = threading.Lock()
        self._stores: OrderedDict[str, HistoryStore] = OrderedDict()
        self._index_cache: tuple[tuple[int, int] | None, dict[str, Any]] = (None, {})
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            with file_lock(self.folder / ".migrate.lock"):
                self._migrate_legacy()
        except OSError as error:
            log.error("The conversations folder %s cannot be prepared: %s", self.folder, error.strerror or error)
        self.main.recover()

    # ---- stores --------------------------------------------------------------------------

    def _new_store(self, conversation_id: str) -> HistoryStore:
        return HistoryStore(
            self.folder / f"{conversation_id}.jsonl",
            live_limit=self.settings.history_live_limit,
            timezone=self.settings.timezone,
            creates=conversation_id == MAIN,
        )

    def _cached_store(self, conversation_id: str) -> HistoryStore:
        with self._lock:
            store = self._stores.get(conversation_id)
            if store is None:
                store = self._stores[conversation_id] = self._new_store(conversation_id)
            self._stores.move_to_end(conversation_id)
            while len(self._stores) > OPEN_STORES:
                self._stores.popitem(last=False)
            return store

    @property
    def main(self) -> HistoryStore:
        return self._cached_store(MAIN)

    def store(self, conversation_id: str | None) -> HistoryStore:
        """The history of conversation `conversation_id` (None: main); NotFound when there is none."""
        if conversation_id is None or conversation_id == MAIN:
            return self.main
        if not ID_PATTERN.match(conversation_id) or not (self.folder / f"{conversation_id}.jsonl").exists():
            raise not_found(conversation_id)
        return self._cached_store(conversation_id)

    def exists(self, conversation_id: str) -> bool:
        return conversation_id == MAIN or (
            bool(ID_PATTERN.match(conversation_id)) and (self.folder / f"{conversation_id}.jsonl").exists()
        )

    # ---- the conversations ---------------------------------------------------------------

    def describe(self, conversation_id: str) -> dict[str, Any]:
        """The public fields of one conversation."""
        return _public(conversation_id, self.store(conversation_id).meta())

    def listed(self) -> list[dict[str, Any]]:
        """Every conversation, pinned first, then the most recently updated first."""
        entries = self._refreshed_index()
        listed = [_public(conversation_id, meta) for conversation_id, meta in entries.items()]
        listed.sort(key=lambda c: _instant(c["updated_at"] or c["created_at"]), reverse=True)
        listed.sort(key=lambda c: not c["pinned"])
        return listed

    def create(
        self,
        title: str = "",
        *,
        messages: list[dict[str, Any]] | None = None,
        pinned: bool = False,
        created_at: str | None = None,
        source: str | None = None,
    ) -> dict[str, Any]:
        """A new conversation, empty or (for an import) with `messages`; returns its public fields."""
        conversation_id = secrets.token_hex(6)
        store = self._new_store(conversation_id)
        meta: dict[str, Any] = {"title": title, "pinned": pinned, "created_at": created_at or self._now()}
        if source is not None:
            meta["source"] = source
        try:
            with file_lock(store.lock_path):
                store.initialise(meta, messages or [])
        except OSError as error:
            raise StorageError(
                f"The conversation cannot be saved: {error.strerror or error} (is the data folder writable?)."
            ) from None
        return self.describe(conversation_id)

    def change(self, conversation_id: str, **changes: Any) -> dict[str, Any]:
        """Rename or pin a conversation; returns its public fields."""
        meta = self.store(conversation_id).change_meta(**changes)
        return _public(conversation_id, meta)

    def delete(self, conversation_id: str) -> None:
        """Move a conversation's files into `deleted/`: it disappears from the app but stays on disk."""
        if conversation_id == MAIN:
            raise Conflict("The main conversation cannot be deleted; clear it instead.", code="main_conversation")
        store = self.store(conversation_id)
        stamp = datetime.now(self.zone).strftime("%Y%m%dT%H%M%S.%f")
        target = self.folder / "deleted" / f"{conversation_id}-{stamp}"
        try:
            target.mkdir(parents=True)
            with file_lock(store.lock_path):  # no write is half done while the files move
                for path in (store.path, store.archive_dir):
                    if path.exists():
                        os.rename(path, target / path.name)
            with contextlib.suppress(OSError):
                store.lock_path.unlink()
        except OSError as error:
            raise StorageError(f"The conversation cannot be deleted: {error.strerror or error}.") from None
        with self._lock:
            self._stores.pop(conversation_id, None)
        forget_archived(store.archive_dir)

    def sources(self) -> list[Source]:
        """Every conversation as the search index reads it: a version, and its visible messages when that moved."""
        return [Source(cid, store.version(), store.visible) for cid, store in self.each()]

    def import_all(self, imported: list[ImportedConversation]) -> tuple[list[dict[str, Any]], int]:
        """Create a conversation for each one not imported before; returns those created and how many were skipped.

        Idempotent: a conversation is known by its source's key and creation time, so the same file imported
        twice, or our own export imported back into this server, adds nothing the second time.
        """
        created, skipped = [], 0
        try:
            with file_lock(self.folder / ".import.lock"):  # two imports of one file at once still add it once
                index = self._refreshed_index()
                known = {meta.get("source") for meta in index.values()}
                for item in imported:
                    source = f"{item.key}@{item.created_at}"
                    ours = index.get(item.key)
                    same_here = (
                        ours is not None and abs(_instant(ours.get("created_at")) - _instant(item.created_at)) < 0.002
                    )
                    if source in known or same_here:
                        skipped += 1
                        continue
                    meta = self.create(
                        item.title,
                        messages=_answering(item.messages),
                        pinned=item.pinned,
                        created_at=item.created_at,
                        source=source,
                    )
                    known.add(source)
                    created.append(meta)
        except OSError as error:
            raise StorageError(f"The import cannot be saved: {error.strerror or error}.") from None
        return created, skipped

    def each(self) -> Iterator[tuple[str, HistoryStore]]:
        """(id, store) of every conversation, for search and export; stores beyond the cache are not kept."""
        for conversation_id in self._refreshed_index():
            with self._lock:
                store = self._stores.get(conversation_id)
            yield conversation_id, store or self._new_store(conversation_id)

    def _now(self) -> str:
        return datetime.now(self.zone).isoformat(timespec="milliseconds")

    # ---- the index -----------------------------------------------------------------------

    def _log_ids(self) -> list[str]:
        ids = [path.stem for path in self.folder.glob("*.jsonl") if ID_PATTERN.match(path.stem)]
        return ids if MAIN in ids else [MAIN, *ids]

    def _refreshed_index(self) -> dict[str, dict[str, Any]]:
        """Each conversation's meta, from `index.json` where its log has not changed since, else from the log."""
        path = self.folder / "index.json"
        try:
            stat = path.stat()
            key: tuple[int, int] | None = (stat.st_ino, stat.st_mtime_ns)
        except FileNotFoundError:
            key = None
        with self._lock:
            cached_key, cached = self._index_cache
        if key != cached_key or key is None:
            cached = read_json_or_set_aside(path, dict, "The conversation index")
            if not isinstance(cached, dict):
                cached = {}
        entries: dict[str, dict[str, Any]] = {}
        for conversation_id in self._log_ids():
            log_path = self.folder / f"{conversation_id}.jsonl"
            try:
                log_stat = log_path.stat()
                seen = [log_stat.st_ino, log_stat.st_size, log_stat.st_mtime_ns]
            except FileNotFoundError:
                seen = None  # main before its first message; or deleted meanwhile
                if conversation_id != MAIN:
                    continue
            entry = cached.get(conversation_id)
            if not isinstance(entry, dict) or entry.get("log") != seen or seen is None:
                with self._lock:
                    store = self._stores.get(conversation_id)
                meta = (store or self._new_store(conversation_id)).meta()
                entry = {**meta, "log": seen}
            entries[conversation_id] = entry
        if entries != cached:
            try:
                write_json_atomic(path, entries)
                stat = path.stat()
                key = (stat.st_ino, stat.st_mtime_ns)
            except OSError as error:  # a cache: listing still works without it
                log.warning("The conversation index cannot be saved: %s", error.strerror or error)
                key = None
        with self._lock:
            self._index_cache = (key, entries)
        return entries

    # ---- migration -----------------------------------------------------------------------

    def _migrate_legacy(self) -> None:
        """Make the pre-conversations history the main conversation, once; callers hold the migration lock."""
        legacy = self.settings.chat_history_file
        legacy_archive = legacy.with_name(legacy.stem + "-archive")
        main_log = self.folder / f"{MAIN}.jsonl"
        if main_log.exists():
            return
        if not (legacy.exists() or legacy_archive.is_dir()):
            self.main.write_log(1, 1, {"title": "", "pinned": False, "created_at": self._now()}, [])
            return
        state: dict[str, Any] = {"next_id": 1, "floor_id": 1, "messages": []}
        if legacy.exists():
            try:
                state = read_legacy_state(legacy.read_bytes())
            except CorruptHistory as problem:
                stamp = datetime.now(self.zone).strftime("%Y%m%dT%H%M%S.%f")
                aside = legacy.with_name(f"{legacy.name}.corrupt-{stamp}")
                os.rename(legacy, aside)
                log.warning("History file %s is not valid (%s); moved it to %s", legacy, problem, aside)
        store = self._new_store(MAIN)
        archived = 0
        if legacy_archive.is_dir():
            store.archive_dir.mkdir(exist_ok=True)
            for archive in sorted(legacy_archive.glob("*.json")):
                shutil.copyfile(archive, store.archive_dir / archive.name)
                with open(store.archive_dir / archive.name, "rb") as copied:
                    os.fsync(copied.fileno())
                first, _, last = archive.stem.partition("-")
                if last.isdigit():
                    state["next_id"] = max(state["next_id"], int(last) + 1)
                    archived += 1
        live: list[Message] = state["messages"]
        meta: dict[str, Any] = {"title": "", "pinned": False, "created_at": self._now()}
        stamps = [m.get("timestamp") for m in live if m.get("timestamp")]
        if stamps:
            meta["updated_at"] = stamps[-1]
        scheduled = [m.get("timestamp") for m in live if m.get("is_scheduled")]
        if scheduled:
            meta["reminder_at"] = scheduled[-1]
        with file_lock(store.lock_path):
            store.write_log(state["next_id"], state["floor_id"], meta, live)
        for old in (legacy, legacy_archive):
            if old.exists():
                os.rename(old, old.with_name(old.name + ".migrated"))
        log.info(
            "Moved the chat history (%d live messages, %d archive files) into the main conversation, %s",
            len(live),
            archived,
            main_log,
        )


def _answering(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """`messages` with each reply's `reply_to` set to the question before it, as renumbered from 1 on import.

    Another server's ids, or none at all (ChatGPT), would leave replies answering nothing, and the model's
    context leaves out questions that look unanswered.
    """
    answered: list[dict[str, Any]] = []
    question: int | None = None
    for number, message in enumerate(messages, start=1):
        fields = {key: value for key, value in message.items() if key != "reply_to"}
        if message.get("role") == "user":
            question = number
        elif question is not None and not message.get("is_scheduled"):
            fields["reply_to"] = question
        answered.append(fields)
    return answered


def not_found(conversation_id: str) -> NotFound:
    return NotFound(f"There is no conversation {conversation_id!r}.", code="conversation_not_found")


def _public(conversation_id: str, meta: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": conversation_id,
        "title": meta.get("title") or "",
        "created_at": meta.get("created_at"),
        "updated_at": meta.get("updated_at") or meta.get("created_at"),
        "message_count": meta.get("message_count", 0),
        "pinned": bool(meta.get("pinned")),
        "reminder_at": meta.get("reminder_at"),
    }


def _instant(stamp: str | None) -> float:
    """A timestamp as seconds, for ordering stamps written with different offsets."""
    try:
        return datetime.fromisoformat(stamp).timestamp() if stamp else 0.0
    except ValueError:
        return 0.0
