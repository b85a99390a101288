"""The conversation as a JSON file that survives kill -9, many workers and a growing history.

Layout, under the folder of CHAT_HISTORY_FILE (default `data/`):

- `chat_history.json` — the live file: the newest messages (at most HISTORY_LIVE_LIMIT), the next
  message id and the id below which messages are cleared. Every write replaces it atomically (temp
  file in the same folder, fsync, rename, fsync of the folder), under an exclusive `flock` on
  `chat_history.json.lock`, so concurrent processes and threads never lose or duplicate a message.
- `chat_history-archive/<first>-<last>.json` — older messages, written once and never changed;
  the name is the index. When the live file grows past its limit the oldest half moves into one of
  these, so the cost of a write depends on the limit, never on the total history.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from errors import StorageError

log = logging.getLogger(__name__)

FORMAT_VERSION = 2
Message = dict[str, Any]


def _encode(data: Any) -> bytes:
    return json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode()


def write_json_atomic(path: Path, data: Any) -> None:
    """Replace `path` with `data` as JSON so that a crash at any instant leaves old or new, never half."""
    write_bytes_atomic(path, _encode(data))


def write_bytes_atomic(path: Path, payload: bytes) -> None:
    """Replace `path` with `payload`: temp file in the same folder, fsync, rename, fsync of the folder."""
    descriptor, temp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(descriptor, "wb") as temp:
            temp.write(payload)
            temp.flush()
            os.fsync(temp.fileno())
        os.replace(temp_name, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp_name)
        raise
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def read_json_or_set_aside(path: Path, empty: Callable[[], Any], what: str) -> Any:
    """`path` parsed, or `empty()` when there is none. A file that does not parse is moved aside (logged) and
    `empty()` returned: for files not worth stopping reminders for. StorageError when it cannot be read at all."""
    try:
        return json.loads(path.read_bytes())
    except FileNotFoundError:
        return empty()
    except ValueError as error:
        aside = path.with_name(f"{path.name}.corrupt-{datetime.now():%Y%m%dT%H%M%S}")
        log.error("%s %s cannot be read (%s); moved to %s, starting afresh", what, path.name, error, aside.name)
        with contextlib.suppress(OSError):
            os.replace(path, aside)
        return empty()
    except OSError as error:
        raise StorageError(f"{what} {path.name} cannot be read: {error.strerror or error}.") from None


@contextlib.contextmanager
def changing_json(path: Path, lock_path: Path, read: Callable[[], Any], what: str) -> Iterator[Any]:
    """Under `lock_path`: `read()`, let the caller change the result, and replace `path` atomically if it changed."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with file_lock(lock_path):
            data = read()
            before = json.dumps(data, sort_keys=True)
            yield data
            if json.dumps(data, sort_keys=True) != before:
                write_json_atomic(path, data)
    except OSError as error:
        raise StorageError(
            f"{what} cannot be saved: {error.strerror or error} (is the data folder writable?)."
        ) from None


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive flock on `path`; a fresh descriptor per call also excludes other threads."""
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        yield
    finally:
        os.close(descriptor)  # closing releases the lock


def _empty_state() -> dict[str, Any]:
    return {"version": FORMAT_VERSION, "next_id": 1, "floor_id": 1, "messages": []}


class CorruptHistory(ValueError):
    """The live file exists but is not a history this store can read."""


def _parse_state(raw: bytes) -> dict[str, Any]:
    """Decode the live file, accepting the original app's plain list of messages too."""
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise CorruptHistory(str(error)) from None
    if isinstance(data, list):  # the spec's original format: a bare list, no ids
        state = _empty_state()
        for number, message in enumerate(data, start=1):
            if not isinstance(message, dict) or "role" not in message or "content" not in message:
                raise CorruptHistory("a message without role and content")
            state["messages"].append({"is_scheduled": False, **message, "id": number})
        state["next_id"] = len(data) + 1
        return state
    if (
        not isinstance(data, dict)
        or not isinstance(data.get("messages"), list)
        or not isinstance(data.get("next_id"), int)
    ):
        raise CorruptHistory("not a chat history object")
    data.setdefault("floor_id", 1)
    return data


def _scheduled_in(state: dict[str, Any], scheduled_for: str, reminder_id: str | None) -> Message | None:
    """The stored message of occurrence `reminder_id@scheduled_for` (reminder_id None: the .env reminder's tick)."""
    return next(
        (
            m
            for m in reversed(state["messages"])
            if m.get("scheduled_for") == scheduled_for and m.get("reminder_id") == reminder_id
        ),
        None,
    )


def _sent_by(message: Message, message_id: int, reminder_id: str | None) -> bool:
    """Whether `message` is message `message_id` and reminder `reminder_id` sent it (None: the .env reminder)."""
    sent = bool(message.get("is_scheduled")) and message.get("reminder_id") == reminder_id
    return sent and message["id"] == message_id


class HistoryStore:
    """Appends, pages and clears the conversation; safe across threads and processes."""

    def __init__(self, path: Path, *, live_limit: int = 200, timezone: str = "UTC"):
        self.path = Path(path)
        self.lock_path = self.path.with_name(self.path.name + ".lock")
        self.archive_dir = self.path.with_name(self.path.stem + "-archive")
        self.live_limit = live_limit
        self.zone = ZoneInfo(timezone)
        self._cache_lock = threading.Lock()
        self._cached_key: tuple[int, int, int] | None = None
        self._cached_state: dict[str, Any] = _empty_state()
        self._archive_cache: OrderedDict[str, list[Message]] = OrderedDict()
        self._archive_index_key: tuple[int, int] | None = None
        self._archive_index: list[tuple[int, int, str]] = []
        # A stored message's JSON. Messages never change but for `done_at`, set once, which is part of the key.
        self._encoded: dict[tuple[int, str, str], bytes] = {}
        self._recover_at_start()

    # ---- reading -------------------------------------------------------------------------

    def _stat_key(self) -> tuple[int, int, int] | None:
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            return None
        return (stat.st_ino, stat.st_mtime_ns, stat.st_size)

    def _read_state(self) -> dict[str, Any]:
        """The live state, parsed again only when the file changed since the last read."""
        try:
            key = self._stat_key()
            with self._cache_lock:
                if key == self._cached_key:
                    return self._cached_state
            state = _empty_state() if key is None else _parse_state(self.path.read_bytes())
        except FileNotFoundError:  # replaced between stat and read: read again
            return self._read_state()
        except OSError as error:
            raise StorageError(f"The chat history cannot be read: {error.strerror}.") from None
        with self._cache_lock:
            self._cached_key, self._cached_state = key, state
        return state

    def _state(self) -> dict[str, Any]:
        """The live state for a reader; a corrupt file is dealt with under the lock."""
        try:
            return self._read_state()
        except CorruptHistory:
            with self._locked():
                return self._locked_state()

    def _locked_state(self) -> dict[str, Any]:
        """The live state for a caller holding the lock: a corrupt file is moved aside, never overwritten."""
        try:
            return self._read_state()
        except CorruptHistory as problem:
            self._move_aside(problem)
            return self._read_state()

    def recent(self, max_messages: int) -> list[Message]:
        """The newest visible messages from the live file, oldest first."""
        if max_messages <= 0:
            return []
        return list(self._state()["messages"][-max_messages:])

    def page(self, limit: int, before: int | None = None) -> tuple[list[Message], bool]:
        """Up to `limit` visible messages older than id `before` (newest when None), and whether more exist."""
        state = self._state()
        floor, live = state["floor_id"], state["messages"]
        bound = before if before is not None else state["next_id"]
        wanted = limit + 1
        found = [m for m in live if floor <= m["id"] < bound][-wanted:]
        # Archives hold only ids below the live file's first; `lowest` also skips the overlap of an
        # archive written by a process killed before it could update the live file.
        live_first = live[0]["id"] if live else state["next_id"]
        lowest = min(bound, live_first)
        for first, last, name in reversed(self._archives(live_first)):
            if len(found) >= wanted:
                break
            if first >= lowest or last < floor:
                continue
            older = [m for m in self._archive(name) if floor <= m["id"] < lowest][-(wanted - len(found)) :]
            if older:
                found, lowest = older + found, older[0]["id"]
        has_more = len(found) > limit
        return found[-limit:] if limit else [], has_more

    def newer(self, after: int, limit: int) -> tuple[list[Message], bool]:
        """Up to `limit` visible messages newer than id `after`, oldest first, and whether more exist.

        For polling: a page that knows its newest id asks only for what came since. Usually that is
        all in the live file; a page that fell further behind than a rotation reads the archives too.
        """
        state = self._state()
        live = state["messages"]
        after = max(after, state["floor_id"] - 1)  # nothing below the floor is visible, so never read it
        live_first = live[0]["id"] if live else state["next_id"]
        found: list[Message] = []
        if after + 1 < live_first:  # oldest first, stopping once the page is full
            for first, last, name in self._archives(live_first):
                if len(found) > limit:
                    break
                if last <= after or first >= live_first:
                    continue
                since = found[-1]["id"] if found else after  # also skips an orphaned archive's repeats
                found += [m for m in self._archive(name) if since < m["id"] < live_first]
        if len(found) <= limit:
            found += [m for m in live if m["id"] > after]
        return found[:limit], len(found) > limit

    def find_scheduled(self, scheduled_for: str, reminder_id: str | None = None) -> Message | None:
        """The live message stored for occurrence `reminder_id@scheduled_for` (None: the .env reminder's tick)."""
        return _scheduled_in(self._state(), scheduled_for, reminder_id)

    def _archives(self, live_first: int) -> list[tuple[int, int, str]]:
        """(first id, last id, file name) of every archive file, sorted by last id.

        Listed again only when the folder or the live file's first id changed (every rotation and
        clear moves that id, even when the folder's mtime does not visibly change).
        """
        try:
            key = (self.archive_dir.stat().st_mtime_ns, live_first)
        except FileNotFoundError:
            return []
        with self._cache_lock:
            if key == self._archive_index_key:
                return self._archive_index
        index = []
        for entry in self.archive_dir.glob("*.json"):
            first, _, last = entry.stem.partition("-")
            if first.isdigit() and last.isdigit():
                index.append((int(first), int(last), entry.name))
        index.sort(key=lambda item: (item[1], item[0]))
        with self._cache_lock:
            self._archive_index_key, self._archive_index = key, index
        return index

    def _archive(self, name: str) -> list[Message]:
        """Archive files never change, so a few recently used ones stay parsed in memory."""
        with self._cache_lock:
            if name in self._archive_cache:
                self._archive_cache.move_to_end(name)
                return self._archive_cache[name]
        try:
            messages = json.loads((self.archive_dir / name).read_bytes())["messages"]
        except (OSError, ValueError, KeyError, TypeError):
            log.error("Archive %s is missing or unreadable; paging skips it", name)
            messages = []
        with self._cache_lock:
            self._archive_cache[name] = messages
            while len(self._archive_cache) > 4:
                self._archive_cache.popitem(last=False)
        return messages

    # ---- writing -------------------------------------------------------------------------

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with file_lock(self.lock_path):
                yield
        except OSError as error:
            raise StorageError(
                f"The chat history cannot be saved: {error.strerror or error} "
                "(is the data folder writable and not full?)."
            ) from None

    def _save(self, state: dict[str, Any]) -> None:
        payload, encoded = self._encode_state(state)
        write_bytes_atomic(self.path, payload)
        # Only after the write: a failed write's message id is given again to the next message.
        self._encoded = encoded
        key = self._stat_key()
        with self._cache_lock:
            self._cached_key, self._cached_state = key, state

    def _encode_state(self, state: dict[str, Any]) -> tuple[bytes, dict[tuple[int, str, str], bytes]]:
        """The live file's JSON, re-encoding only messages this process has already written before.

        Returns the payload and the encodings of the live messages (callers hold the file lock).
        """
        encoded = {}
        for message in state["messages"]:
            # An id alone can name another message after a corrupt file was reset; done_at is its one change.
            key = (message["id"], message.get("timestamp", ""), message.get("done_at", ""))
            encoded[key] = self._encoded.get(key) or _encode(message)
        header = _encode({key: value for key, value in state.items() if key != "messages"})
        return header[:-1] + b',"messages":[' + b",".join(encoded.values()) + b"]}", encoded

    def _now(self) -> str:
        return datetime.now(self.zone).isoformat(timespec="milliseconds")

    def append(self, role: str, content: str, **fields: Any) -> Message:
        """Store one message with a fresh id and timestamp and return it.

        A scheduled message carries `scheduled_for` (its tick) and, for a user's reminder, `reminder_id`;
        a second append for the same occurrence returns the stored message instead of adding another,
        so a reminder is never stored twice.
        """
        with self._locked():
            state = self._locked_state()
            tick = fields.get("scheduled_for")
            if tick is not None:
                existing = _scheduled_in(state, tick, fields.get("reminder_id"))
                if existing is not None:
                    return existing
            message: Message = {
                "id": state["next_id"],
                "role": role,
                "content": content,
                "timestamp": self._now(),
                "is_scheduled": bool(fields.pop("is_scheduled", False)),
                **fields,
            }
            new_state = {**state, "next_id": state["next_id"] + 1, "messages": [*state["messages"], message]}
            if len(new_state["messages"]) > self.live_limit:
                self._rotate(new_state)
            self._save(new_state)
            return message

    def reminder_message(self, message_id: int, reminder_id: str | None) -> Message | None:
        """The live message `message_id` if reminder `reminder_id` sent it (None: the .env reminder's), else None."""
        return next((m for m in self._state()["messages"] if _sent_by(m, message_id, reminder_id)), None)

    def mark_done(self, message_id: int, reminder_id: str | None) -> Message | None:
        """Mark a live reminder message done (`done_at`, once) and return it; None when no such reminder message."""
        with self._locked():
            state = self._locked_state()
            index = next((i for i, m in enumerate(state["messages"]) if _sent_by(m, message_id, reminder_id)), None)
            if index is None:
                return None
            message = state["messages"][index]
            if message.get("done_at"):
                return message
            changed = {**message, "done_at": self._now()}  # a new dict and list: readers may hold the cached state
            messages = [*state["messages"]]
            messages[index] = changed
            self._save({**state, "messages": messages})
            return changed

    def _rotate(self, state: dict[str, Any]) -> None:
        """Move the oldest half of the live messages into a new archive file."""
        keep = self.live_limit // 2
        moving, state["messages"] = state["messages"][:-keep], state["messages"][-keep:]
        self._write_archive(moving)

    def _write_archive(self, messages: list[Message]) -> None:
        self.archive_dir.mkdir(exist_ok=True)
        name = f"{messages[0]['id']:09d}-{messages[-1]['id']:09d}.json"
        write_json_atomic(self.archive_dir / name, {"messages": messages})

    def clear(self) -> int:
        """Hide every message from the conversation, moving the live ones into an archive; returns how many."""
        with self._locked():
            state = self._locked_state()
            visible = [m for m in state["messages"] if m["id"] >= state["floor_id"]]
            if state["messages"]:
                self._write_archive(state["messages"])
            self._save({**state, "floor_id": state["next_id"], "messages": []})
            return len(visible)

    # ---- recovery ------------------------------------------------------------------------

    def _recover_at_start(self) -> None:
        """Set a corrupt file aside and sweep temp files; an unreadable file is left alone and reported."""
        try:
            with self._locked():
                self._remove_stale_temp_files()
                self._locked_state()
        except StorageError as error:
            log.error("%s Chat will answer 503 until this is fixed.", error.message)

    def _remove_stale_temp_files(self) -> None:
        """Delete temp files left by a writer killed mid-write; under the lock no write is in progress."""
        for folder, name in ((self.path.parent, self.path.name), (self.archive_dir, "")):
            for stale in folder.glob(f".{name}*.tmp"):
                with contextlib.suppress(OSError):
                    stale.unlink()

    def _move_aside(self, problem: CorruptHistory) -> None:
        """Rename a live file that does not parse, so it is kept for inspection and a new one starts.

        Only for content that is not a history: a file we cannot read (permissions, I/O) stays
        where it is and chat answers 503 until an operator fixes it.
        """
        stamp = datetime.now(self.zone).strftime("%Y%m%dT%H%M%S.%f")  # unique: callers hold the lock
        aside = self.path.with_name(f"{self.path.name}.corrupt-{stamp}")
        os.rename(self.path, aside)
        log.warning(
            "History file %s is not valid (%s); moved it to %s and started a new one", self.path, problem, aside
        )
