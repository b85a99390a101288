"""One conversation as a JSON Lines log that survives kill -9, many workers and a growing history.

Layout, in the conversations folder (see conversations.py):

- `<id>.jsonl` — the live log. Its first line is a header (next message id, the id below which
  messages are cleared, the conversation's title and other meta); every later line is one record
  appended by a write: a message, a message marked done, or a change of meta. An append is one
  `write` of one line, fdatasync'd before it is acknowledged, under an exclusive `flock` on
  `<id>.jsonl.lock`, so concurrent processes and threads never lose or duplicate a message. A turn
  costs two small appends, whatever the size of the conversation.
- `<id>-archive/<first>-<last>.json` — older messages, written once and never changed; the name is
  the index. When the log holds more than its limit of messages, the oldest ones move into one of
  these and the log is rewritten (temp file, fsync, rename, fsync of the folder) with the rest:
  the cost of a write depends on the limit, never on the total history.

A reader keeps the parsed log and, when the file only grew, parses just the new lines. A last line
without its newline (a writer that died mid-write, a full disk) is ignored by readers and, like a
line that does not parse, repaired by the next writer: the file is copied aside and rewritten.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import fcntl
import json
import logging
import os
import secrets
import shutil
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from errors import StorageError

log = logging.getLogger(__name__)

FORMAT_VERSION = 3
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


class CorruptHistory(ValueError):
    """A legacy history file exists but is not a history this store can read."""


def read_legacy_state(raw: bytes) -> dict[str, Any]:
    """Decode the pre-conversations `chat_history.json`: the current format or the original app's plain list."""
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise CorruptHistory(str(error)) from None
    if isinstance(data, list):  # the spec's original format: a bare list, no ids
        messages = []
        for number, message in enumerate(data, start=1):
            if not isinstance(message, dict) or "role" not in message or "content" not in message:
                raise CorruptHistory("a message without role and content")
            messages.append({"is_scheduled": False, **message, "id": number})
        return {"next_id": len(data) + 1, "floor_id": 1, "messages": messages}
    if (
        not isinstance(data, dict)
        or not isinstance(data.get("messages"), list)
        or not isinstance(data.get("next_id"), int)
    ):
        raise CorruptHistory("not a chat history object")
    return {"next_id": data["next_id"], "floor_id": data.get("floor_id", 1), "messages": data["messages"]}


@dataclass(frozen=True)
class _Log:
    """The parsed log as one reader saw it. Never changed: a newer read makes a new one."""

    inode: int
    generation: bytes  # the header's first bytes: tells a rewritten file from the one read, even on a reused inode
    end: int  # bytes of complete lines parsed
    size: int  # the file's size when read; more than `end` while a last line lacks its newline
    lines: int  # complete lines, the header included
    bad: int  # complete lines that did not parse
    next_id: int
    floor_id: int
    meta: dict[str, Any]
    messages: list[Message]
    mtime: int = 0  # the file's when read; 0: not known (just parsed from bytes)

    @property
    def needs_repair(self) -> bool:
        return self.size > self.end or self.bad > 0


STREAMING = "streaming"  # marks a reply still being written; its "finish" line replaces it
KEYED_LOOKBACK = 200  # how far back a message's idempotency key is looked for
GENERATION_BYTES = 48  # '{"version":3,"generation":"<16 hex>"' and a little more


def _header(next_id: int, floor_id: int, meta: dict[str, Any]) -> bytes:
    header = {
        "version": FORMAT_VERSION,
        "generation": secrets.token_hex(8),
        "next_id": next_id,
        "floor_id": floor_id,
        "meta": meta,
    }
    return _encode(header) + b"\n"


def _parse_lines(base: _Log | None, inode: int, size: int, chunk: bytes) -> _Log:
    """`base` (None: an empty log) with the complete lines of `chunk`, the bytes after `base.end`, applied."""
    if base is None:
        base = _Log(inode, chunk[:GENERATION_BYTES], 0, 0, 0, 0, 1, 1, {}, [])
    complete = chunk.rfind(b"\n") + 1
    next_id, floor_id, meta = base.next_id, base.floor_id, base.meta
    messages: list[Message] | None = None  # copied on the first change: readers may hold base's list
    lines, bad = base.lines, base.bad
    for line in chunk[:complete].split(b"\n")[:-1]:
        lines += 1
        try:
            record = json.loads(line)
        except ValueError:
            record = None
        if not isinstance(record, dict):
            bad += 1
        elif isinstance(record.get("id"), int) and isinstance(record.get("content"), str) and "role" in record:
            if messages is None:
                messages = list(base.messages)
            messages.append(record)
            next_id = max(next_id, record["id"] + 1)
            meta = {**meta, "updated_at": record.get("timestamp")}
            if record.get("is_scheduled") and record["id"] >= int(meta.get("reminders_from") or 0):
                meta["reminder_at"] = record.get("timestamp")
        elif "done" in record:
            if messages is None:
                messages = list(base.messages)
            index = next((i for i, m in enumerate(messages) if m["id"] == record["done"]), None)
            if index is not None:
                messages[index] = {**messages[index], "done_at": record.get("at")}
        elif "finish" in record and isinstance(record.get("fields"), dict):
            if messages is None:
                messages = list(base.messages)
            index = _live_index(messages, record["finish"])
            if index is not None:
                kept = {k: v for k, v in messages[index].items() if k != STREAMING}
                messages[index] = {**kept, **record["fields"]}
                meta = {**meta, "updated_at": record.get("at")}
        elif isinstance(record.get("meta"), dict):
            meta = {**meta, **record["meta"]}
            if "version" in record and lines == 1:  # the header
                given = record.get("next_id"), record.get("floor_id")
                if all(isinstance(number, int) for number in given):
                    next_id, floor_id = given
                else:  # an edited header: ids then come from the messages (and archives, on repair)
                    bad += 1
        else:
            bad += 1
    return _Log(
        inode,
        base.generation,
        base.end + complete,
        size,
        lines,
        bad,
        next_id,
        floor_id,
        meta,
        base.messages if messages is None else messages,
    )


def _live_index(messages: list[Message], message_id: Any) -> int | None:
    """Where message `message_id` is in the live log, searching from the newest (a reply being written is recent)."""
    return next((i for i in range(len(messages) - 1, -1, -1) if messages[i]["id"] == message_id), None)


def _with_count(log_state: _Log) -> dict[str, Any]:
    """The meta and the number of visible messages: every id from the floor up, less those no message holds."""
    count = log_state.next_id - log_state.floor_id - int(log_state.meta.get("gaps") or 0)
    return {**log_state.meta, "message_count": max(count, 0)}


def _scheduled_in(log_state: _Log, scheduled_for: str, reminder_id: str | None) -> Message | None:
    """The stored message of occurrence `reminder_id@scheduled_for` (reminder_id None: the .env reminder's tick)."""
    return next(
        (
            m
            for m in reversed(log_state.messages)
            if m.get("scheduled_for") == scheduled_for and m.get("reminder_id") == reminder_id
        ),
        None,
    )


def _keyed_in(log_state: _Log, key: str) -> Message | None:
    """The newest recent message stored with idempotency key `key`: a client sends a message again within minutes."""
    return next((m for m in reversed(log_state.messages[-KEYED_LOOKBACK:]) if m.get("idempotency_key") == key), None)


def _sent_by(message: Message, message_id: int, reminder_id: str | None) -> bool:
    """Whether `message` is message `message_id` and reminder `reminder_id` sent it (None: the .env reminder)."""
    sent = bool(message.get("is_scheduled")) and message.get("reminder_id") == reminder_id
    return sent and message["id"] == message_id


# Each archive folder's visible messages, for `visible()`: archive folder → (what they were read from, messages).
_ARCHIVED: dict[Path, tuple[Any, list[Message]]] = {}
_ARCHIVED_LOCK = threading.Lock()


def forget_archived(archive_dir: Path) -> None:
    """Drop the kept archived messages of a folder that is gone (a deleted conversation)."""
    with _ARCHIVED_LOCK:
        _ARCHIVED.pop(archive_dir, None)


class ConversationGone(StorageError):
    """The conversation's log is gone (it was deleted) while a request was still writing to it."""

    status = 404
    code = "conversation_not_found"


class HistoryStore:
    """Appends, pages and clears one conversation; safe across threads and processes.

    A missing log is started empty on the first write (`creates`), or by `starts` (the main conversation:
    from the old history first); otherwise a missing log means the conversation was deleted, and writing
    to it raises ConversationGone.
    """

    def __init__(
        self,
        path: Path,
        *,
        live_limit: int = 200,
        timezone: str = "UTC",
        creates: bool = True,
        starts: Callable[[], None] | None = None,
    ):
        self.path = Path(path)
        self.lock_path = self.path.with_name(self.path.name + ".lock")
        self.archive_dir = self.path.with_name(self.path.stem + "-archive")
        self.live_limit = live_limit
        self.zone = ZoneInfo(timezone)
        self.creates = creates
        self.starts = starts
        self._cache_lock = threading.Lock()
        self._cached: _Log | None = None
        self._archive_cache: OrderedDict[str, list[Message]] = OrderedDict()
        self._archive_index_key: tuple[int, int] | None = None
        self._archive_index: list[tuple[int, int, str]] = []

    # ---- reading -------------------------------------------------------------------------

    def _read(self) -> _Log | None:
        """The log, parsing only the lines added since the last read when the file just grew; None if absent."""
        try:
            descriptor = os.open(self.path, os.O_RDONLY)
        except FileNotFoundError:
            return None
        except OSError as error:
            raise StorageError(f"The chat history cannot be read: {error.strerror}.") from None
        try:
            stat = os.fstat(descriptor)
            with self._cache_lock:
                cached = self._cached
            # The same inode is not the same file: a rewrite may get the inode just freed, even at the same size.
            # The header's random generation tells them apart; the mtime, a torn line replaced by another.
            if (
                cached is not None
                and cached.inode == stat.st_ino
                and os.pread(descriptor, GENERATION_BYTES, 0) == cached.generation
            ):
                if cached.size == stat.st_size and cached.mtime == stat.st_mtime_ns:
                    return cached
                if stat.st_size > cached.end:
                    chunk = os.pread(descriptor, stat.st_size - cached.end, cached.end)
                    grown = _parse_lines(cached, stat.st_ino, cached.end + len(chunk), chunk)
                    return self._remember(dataclasses.replace(grown, mtime=stat.st_mtime_ns))
            chunk = b""
            while piece := os.pread(descriptor, max(stat.st_size, 65536), len(chunk)):
                chunk += piece
            whole = _parse_lines(None, stat.st_ino, len(chunk), chunk)
            return self._remember(dataclasses.replace(whole, mtime=stat.st_mtime_ns))
        except OSError as error:
            raise StorageError(f"The chat history cannot be read: {error.strerror}.") from None
        finally:
            os.close(descriptor)

    def _remember(self, log_state: _Log) -> _Log:
        with self._cache_lock:
            self._cached = log_state
        return log_state

    def _log(self) -> _Log:
        """The log for a reader; an absent one reads as empty."""
        return self._read() or _parse_lines(None, 0, 0, b"")

    @property
    def exists(self) -> bool:
        return self.path.exists()

    def meta(self) -> dict[str, Any]:
        """The conversation's meta (title, pinned, created_at, updated_at, reminder_at) and its message count."""
        return _with_count(self._log())

    def recent(self, max_messages: int) -> list[Message]:
        """The newest visible messages from the live log, oldest first."""
        if max_messages <= 0:
            return []
        return list(self._log().messages[-max_messages:])

    def visible(self) -> list[Message]:
        """Every visible message, oldest first, archives included (for search and export)."""
        log_state = self._log()
        live = log_state.messages
        live_first = live[0]["id"] if live else log_state.next_id
        return self._archived(log_state.floor_id, live_first) + [m for m in live if m["id"] >= log_state.floor_id]

    def _archived(self, floor_id: int, live_first: int) -> list[Message]:
        """The visible archived messages. Archives never change, so the list is kept (per folder, shared by
        every store object) until a rotation or clear: searching again after a turn reads no archive."""
        archives = self._archives(live_first)
        key = (floor_id, live_first, tuple(archives))
        with _ARCHIVED_LOCK:
            cached = _ARCHIVED.get(self.archive_dir)
        if cached is not None and cached[0] == key:
            return cached[1]
        found = self._archived_between(archives, floor_id - 1, live_first)
        with _ARCHIVED_LOCK:
            _ARCHIVED[self.archive_dir] = (key, found)
        return found

    def _archived_between(
        self, archives: list[tuple[int, int, str]], after: int, below: int, limit: int | None = None
    ) -> list[Message]:
        """The archived messages with `after` < id < `below`, oldest first; with `limit`, the first `limit` + 1
        (it stops reading once they are found and no later archive overlaps them). Where archives overlap (a
        rotation a crash interrupted, done again later), the later archive's copy wins: it may carry a done mark."""
        by_id: dict[int, Message] = {}
        for first, last, name in archives:  # by last id: a later overlapping copy replaces an earlier one
            if last <= after or first >= below:
                continue
            if limit is not None and len(by_id) > limit and first > max(by_id):
                break
            read = self._archive(name) if limit is not None else self._read_archive(name)
            by_id.update((m["id"], m) for m in read if after < m["id"] < below)
        found = [by_id[number] for number in sorted(by_id)]
        return found if limit is None else found[: limit + 1]

    def version(self) -> tuple[Any, ...]:
        """Changes whenever the visible messages may have: for caches built from `visible()`."""
        try:
            log_stat = self.path.stat()
            key: tuple[Any, ...] = (log_stat.st_ino, log_stat.st_size, log_stat.st_mtime_ns)
        except FileNotFoundError:
            key = (None,)
        try:
            return (*key, self.archive_dir.stat().st_mtime_ns)
        except FileNotFoundError:
            return key

    def page(self, limit: int, before: int | None = None) -> tuple[list[Message], bool]:
        """Up to `limit` visible messages older than id `before` (newest when None), and whether more exist."""
        log_state = self._log()
        floor, live = log_state.floor_id, log_state.messages
        bound = before if before is not None else log_state.next_id
        wanted = limit + 1
        found = [m for m in live if floor <= m["id"] < bound][-wanted:]
        # Archives hold only ids below the live log's first; `lowest` also skips the overlap of an
        # archive written by a process killed before it could rewrite the live log.
        live_first = live[0]["id"] if live else log_state.next_id
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
        all in the live log; a page that fell further behind than a rotation reads the archives too.
        """
        log_state = self._log()
        live = log_state.messages
        after = max(after, log_state.floor_id - 1)  # nothing below the floor is visible, so never read it
        live_first = live[0]["id"] if live else log_state.next_id
        found: list[Message] = []
        if after + 1 < live_first:  # a page that fell behind a rotation
            found = self._archived_between(self._archives(live_first), after, live_first, limit)
        if len(found) <= limit:
            found += [m for m in live if m["id"] > after]
        return found[:limit], len(found) > limit

    def find_scheduled(self, scheduled_for: str, reminder_id: str | None = None) -> Message | None:
        """The live message stored for occurrence `reminder_id@scheduled_for` (None: the .env reminder's tick)."""
        return _scheduled_in(self._log(), scheduled_for, reminder_id)

    def reminder_message(self, message_id: int, reminder_id: str | None) -> Message | None:
        """The live message `message_id` if reminder `reminder_id` sent it (None: the .env reminder's), else None."""
        return next((m for m in self._log().messages if _sent_by(m, message_id, reminder_id)), None)

    def _archives(self, live_first: int) -> list[tuple[int, int, str]]:
        """(first id, last id, file name) of every archive file, sorted by last id.

        Listed again only when the folder or the live log's first id changed (every rotation and
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

    def _read_archive(self, name: str) -> list[Message]:
        try:
            return json.loads((self.archive_dir / name).read_bytes())["messages"]
        except (OSError, ValueError, KeyError, TypeError):
            log.error("Archive %s is missing or unreadable; paging skips it", name)
            return []

    def _archive(self, name: str) -> list[Message]:
        """Archive files never change, so a few recently used ones stay parsed in memory."""
        with self._cache_lock:
            if name in self._archive_cache:
                self._archive_cache.move_to_end(name)
                return self._archive_cache[name]
        messages = self._read_archive(name)
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

    def _writable(self) -> _Log:
        """The log for a writer holding the lock: started if absent (and allowed), repaired if damaged."""
        log_state = self._read()
        if log_state is None and self.starts is not None:
            self.starts()
            log_state = self._read()
            if log_state is None:
                raise StorageError("The conversation's log cannot be started.")
        if log_state is None:
            if not self.creates:
                raise ConversationGone("This conversation was deleted.")
            return self.initialise({"created_at": self._now()}, [])
        if log_state.needs_repair:
            log_state = self._repair(log_state)
        return log_state

    def _append_line(self, log_state: _Log, record: dict[str, Any], durable: bool = True) -> _Log:
        """Append one record as one line and return the log with it; `durable`: fdatasync'd before returning.

        Without `durable` the line is in the file, so other processes read it and a kill -9 keeps it, but a power
        cut may lose it until the next durable append, whose fdatasync covers every line before it.
        """
        line = _encode(record) + b"\n"
        descriptor = os.open(self.path, os.O_WRONLY | os.O_APPEND)
        try:
            written = os.write(descriptor, line)
            if written != len(line):  # a full disk: take the piece back rather than leave a torn line
                os.ftruncate(descriptor, log_state.end)
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            if durable:
                os.fdatasync(descriptor)
            mtime = os.fstat(descriptor).st_mtime_ns
        finally:
            os.close(descriptor)
        appended = _parse_lines(log_state, log_state.inode, log_state.end + len(line), line)
        return self._remember(dataclasses.replace(appended, mtime=mtime))

    def write_log(self, next_id: int, floor_id: int, meta: dict[str, Any], messages: list[Message]) -> _Log:
        """Replace the log with a header and `messages`, atomically; done marks and meta changes fold in."""
        payload = _header(next_id, floor_id, meta) + b"".join(_encode(m) + b"\n" for m in messages)
        write_bytes_atomic(self.path, payload)
        return self._read() or _parse_lines(None, 0, 0, b"")

    def _compact(self, log_state: _Log) -> _Log:
        """Keep the log short: past the limit, the oldest messages go to an archive; extra lines fold away."""
        messages = log_state.messages
        if len(messages) > self.live_limit:
            # A reply still being written stays live, and so does what follows it: its finish line must find it.
            writing = next((i for i, m in enumerate(messages) if m.get(STREAMING)), len(messages))
            cut = min(len(messages) - self.live_limit // 2, writing)
            if cut == 0:
                return log_state
            self._write_archive(messages[:cut])
            messages = messages[cut:]
        elif log_state.lines - len(messages) <= self.live_limit:
            return log_state
        return self.write_log(log_state.next_id, log_state.floor_id, log_state.meta, messages)

    def _now(self) -> str:
        return datetime.now(self.zone).isoformat(timespec="milliseconds")

    def append(
        self,
        role: str,
        content: str,
        *,
        durable: bool = True,
        on_id: Callable[[int], None] | None = None,
        **fields: Any,
    ) -> Message:
        """Store one message with a fresh id and timestamp and return it.

        A scheduled message carries `scheduled_for` (its tick) and, for a user's reminder, `reminder_id`;
        a second append for the same occurrence returns the stored message instead of adding another,
        so a reminder is never stored twice. So does a second with the `idempotency_key` of a recent
        message. `durable=False` leaves the fdatasync to the next durable append
        (a turn's question, synced with its reply: one sync a turn, none before the model is asked).
        `on_id(id)` runs under the lock before the message is written: what it prepares (a reply's journal) is in
        place before any reader can see the message; if it raises, nothing is stored.
        """
        with self._locked():
            log_state = self._writable()
            tick = fields.get("scheduled_for")
            if tick is not None:
                existing = _scheduled_in(log_state, tick, fields.get("reminder_id"))
                if existing is not None:
                    return existing
            key = fields.get("idempotency_key")
            if key is not None and role == "user":  # a reply may carry its retry's key too; it never stands for it
                existing = _keyed_in(log_state, key)
                if existing is not None and existing["role"] == "user":
                    return existing
            message: Message = {
                "id": log_state.next_id,
                "role": role,
                "content": content,
                "timestamp": self._now(),
                "is_scheduled": bool(fields.pop("is_scheduled", False)),
                **fields,
            }
            if on_id is not None:
                on_id(message["id"])
            self._compact(self._append_line(log_state, message, durable))
            return message

    def finish(self, message_id: int, fields: dict[str, Any]) -> Message | None:
        """Give a reply stored while `streaming` its final fields (content, usage, stopped …), durably; returns
        it as stored. A message already finished is returned unchanged (two settlers of one dead turn write
        once); None if the message is gone (the conversation was cleared meanwhile)."""
        with self._locked():
            log_state = self._writable()
            index = _live_index(log_state.messages, message_id)
            if index is None:
                return None
            if not log_state.messages[index].get(STREAMING):
                return log_state.messages[index]
            appended = self._append_line(log_state, {"finish": message_id, "at": self._now(), "fields": fields})
            self._compact(appended)
            return appended.messages[_live_index(appended.messages, message_id) or 0]

    def keyed(self, key: str) -> Message | None:
        """The newest recent message stored with idempotency key `key`, if any: a question, or a retry's reply."""
        return _keyed_in(self._log(), key)

    def message(self, message_id: int) -> Message | None:
        """Visible message `message_id`, live or archived; None if there is none."""
        log_state = self._log()
        if message_id < log_state.floor_id:
            return None
        index = _live_index(log_state.messages, message_id)
        if index is not None:
            return log_state.messages[index]
        live = log_state.messages
        live_first = live[0]["id"] if live else log_state.next_id
        found = self._archived_between(self._archives(live_first), message_id - 1, message_id + 1)
        return found[0] if found else None

    def change_meta(self, *, only_unset: bool = False, **changes: Any) -> dict[str, Any]:
        """Change the conversation's title, pinned mark or other meta; returns the meta as changed.

        `only_unset`: change only what is not set yet (an automatic title never replaces the user's).
        """
        with self._locked():
            log_state = self._writable()
            if only_unset and log_state.meta.get("title"):
                changes = {}
            if any(log_state.meta.get(key) != value for key, value in changes.items()):
                log_state = self._compact(self._append_line(log_state, {"meta": changes}))
            return _with_count(log_state)

    def mark_done(self, message_id: int, reminder_id: str | None) -> Message | None:
        """Mark a live reminder message done (`done_at`, once) and return it; None when no such reminder message."""
        with self._locked():
            log_state = self._writable()
            message = next((m for m in log_state.messages if _sent_by(m, message_id, reminder_id)), None)
            if message is None or message.get("done_at"):
                return message
            log_state = self._append_line(log_state, {"done": message_id, "at": self._now()})
            changed = next(m for m in log_state.messages if m["id"] == message_id)
            self._compact(log_state)
            return changed

    def _write_archive(self, messages: list[Message]) -> None:
        self.archive_dir.mkdir(exist_ok=True)
        name = f"{messages[0]['id']:09d}-{messages[-1]['id']:09d}.json"
        write_json_atomic(self.archive_dir / name, {"messages": messages})

    def clear(self) -> int:
        """Hide every message from the conversation, moving the live ones into an archive; returns how many."""
        with self._locked():
            log_state = self._writable()
            visible = [m for m in log_state.messages if m["id"] >= log_state.floor_id]
            if log_state.messages:
                self._write_archive(log_state.messages)
            meta = {**log_state.meta, "reminder_at": None, "gaps": 0}  # nothing visible: no badge, no gap
            self.write_log(log_state.next_id, log_state.next_id, meta, [])
            return len(visible)

    def initialise(self, meta: dict[str, Any], messages: list[dict[str, Any]]) -> _Log:
        """Write a new log with `meta` and `messages` (numbered from 1; the oldest go to archives past the limit).

        For a conversation being created or imported: callers hold the lock or own the file alone.
        """
        numbered = [{**m, "id": number} for number, m in enumerate(messages, start=1)]
        keep = self.live_limit // 2 if len(numbered) > self.live_limit else len(numbered)
        older, live = numbered[: len(numbered) - keep], numbered[len(numbered) - keep :]
        for start in range(0, len(older), max(keep, 1)):
            self._write_archive(older[start : start + max(keep, 1)])
        if numbered:
            meta = {**meta, "updated_at": numbered[-1].get("timestamp")}
        # Reminder messages brought in are history, not news: only those that arrive from now on set reminder_at.
        meta = {**meta, "reminder_at": None, "reminders_from": len(numbered) + 1}
        return self.write_log(len(numbered) + 1, 1, meta, live)

    # ---- recovery ------------------------------------------------------------------------

    def _repair(self, log_state: _Log) -> _Log:
        """Copy a damaged log aside for inspection, then rewrite it with what parsed.

        A last line without its newline is a write that was never acknowledged; other lines that do not
        parse (a bad edit, a disk error) are dropped from the live log but kept in the copy.
        """
        stamp = datetime.now(self.zone).strftime("%Y%m%dT%H%M%S.%f")  # unique: callers hold the lock
        aside = self.path.with_name(f"{self.path.name}.corrupt-{stamp}")
        shutil.copyfile(self.path, aside)
        archived = [last for _first, last, _name in self._archives(-1)]
        # Never give an id again: not an archived one, nor one a line that did not parse may have held.
        next_id = max([log_state.next_id + log_state.bad, *(last + 1 for last in archived)])
        live = [m for m in log_state.messages if m["id"] >= log_state.floor_id]
        live_first = live[0]["id"] if live else next_id
        visible = len(self._archived(log_state.floor_id, live_first)) + len(live)
        meta = {**log_state.meta, "gaps": next_id - log_state.floor_id - visible}  # ids no message holds
        log.warning(
            "History log %s had %d unreadable line(s)%s; copied it to %s and kept the rest",
            self.path.name,
            log_state.bad,
            " and a torn last line" if log_state.size > log_state.end else "",
            aside.name,
        )
        return self.write_log(next_id, log_state.floor_id, meta, log_state.messages)

    def recover(self) -> None:
        """At start-up: delete temp files left by a writer killed mid-write and repair a damaged log.

        Under the lock no write is in progress. A log that cannot be read at all is left alone and reported.
        """
        try:
            with self._locked():
                for folder, name in ((self.path.parent, self.path.name), (self.archive_dir, "")):
                    for stale in folder.glob(f".{name}*.tmp"):
                        with contextlib.suppress(OSError):
                            stale.unlink()
                log_state = self._read()
                if log_state is not None and log_state.needs_repair:
                    self._repair(log_state)
        except StorageError as error:
            log.error("%s Chat will answer 503 until this is fixed.", error.message)
