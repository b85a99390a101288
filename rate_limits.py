"""Call budgets per client address: a moving window of calls, refused with 429 and Retry-After.

Every budget of an app counts in one `RateLimitStore`, so the documented limit holds however many
Gunicorn workers serve it:

- by default in `rate_limits.sqlite3` in the data folder, shared by every worker process of the machine
  (SQLite's file locking makes each count-and-check one atomic step across processes);
- with RATE_LIMIT_STORAGE, in any `limits` storage with moving windows (`redis://host:6379`, ...), so
  several machines share one count; `memory://` counts in each process on its own.

While the storage fails (Redis down, disk full) counting goes on in each process's memory, with one
warning, and the storage is tried again every STORAGE_RETRY_SECONDS: a limit too generous for a while,
never a refused or failed request because of the counter itself.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit

from flask import current_app, request
from limits import RateLimitItem
from limits.errors import StorageError
from limits.storage import MemoryStorage, MovingWindowSupport, Storage, storage_from_string
from limits.strategies import MovingWindowRateLimiter

from config import Settings, url_shown
from errors import RateLimited

log = logging.getLogger(__name__)

LOCAL_STORE_NAME = "rate_limits.sqlite3"
STORAGE_TIMEOUT_SECONDS = 1.0  # a Redis that does not answer within this counts as down
STORAGE_RETRY_SECONDS = 10.0  # how long to count in memory after a failure before trying the storage again
_REDIS_SCHEMES = frozenset({"redis", "rediss", "redis+unix", "valkey", "valkeys", "valkey+unix"})

Result = TypeVar("Result")


class Budget:
    """Calls per client address within one or more moving windows (e.g. "10 per minute;500/day")."""

    def __init__(self, rates: list[RateLimitItem], name: str):
        self.rates = rates
        self.name = name

    def check(self, message: str) -> None:
        """429 with Retry-After while this client has no calls left in some window; counts nothing."""
        for rate in self.rates:
            if not _store().test(rate, self.name, _client()):
                self._refuse(rate, message)

    def take(self, message: str) -> None:
        """Count one call from this client, or refuse it with 429: one atomic step per window, so
        simultaneous requests cannot all slip through between a check and a count."""
        for rate in self.rates:
            if not _store().hit(rate, self.name, _client()):
                self._refuse(rate, message)

    def count(self) -> None:
        """Count one event from this client, refusing nothing (wrong tokens: the next check refuses)."""
        for rate in self.rates:
            _store().hit(rate, self.name, _client())

    def _refuse(self, rate: RateLimitItem, message: str) -> None:
        reset_at = _store().reset_time(rate, self.name, _client())
        raise RateLimited(message.format(limit=rate), retry_after=max(1.0, reset_at - time.time()))


class RateLimitStore:
    """Where every budget of one app counts: RATE_LIMIT_STORAGE, else a file in the data folder."""

    def __init__(self, settings: Settings):
        uri = settings.rate_limit_storage
        self.shown = counts_shown(settings)
        self.storage = open_storage(uri) if uri else LocalStorage(settings.data_dir / LOCAL_STORE_NAME)
        self.windows = MovingWindowRateLimiter(self.storage)
        self.fallback = MovingWindowRateLimiter(MemoryStorage())
        self._lock = threading.Lock()
        self._down_until = 0.0  # monotonic time until which the storage counts as down; 0 while it works
        if not self.storage.check():
            self._went_down("does not answer at start-up")
        if isinstance(self.storage, LocalStorage):
            self.storage.release()  # nothing opened here may cross a fork (Gunicorn --preload)

    def hit(self, rate: RateLimitItem, *identifiers: str) -> bool:
        """Count one call in `rate`'s moving window, unless it is full: False then."""
        return self._run(lambda windows: windows.hit(rate, *identifiers))

    def test(self, rate: RateLimitItem, *identifiers: str) -> bool:
        """Whether `rate`'s moving window has room for one more call; counts nothing."""
        return self._run(lambda windows: windows.test(rate, *identifiers))

    def reset_time(self, rate: RateLimitItem, *identifiers: str) -> float:
        """When (epoch seconds) the oldest call in `rate`'s moving window leaves it."""
        return self._run(lambda windows: windows.get_window_stats(rate, *identifiers).reset_time)

    def _run(self, step: Callable[[MovingWindowRateLimiter], Result]) -> Result:
        """Run one step against the shared storage, or in this process's memory while it fails."""
        if time.monotonic() >= self._down_until:
            try:
                result = step(self.windows)
            except StorageError as error:
                self._went_down(f"failed ({error.storage_error.__class__.__name__}: {error.storage_error})")
            else:
                if self._down_until:
                    self._came_back()
                return result
        return step(self.fallback)

    def _went_down(self, reason: str) -> None:
        with self._lock:
            first = not self._down_until
            self._down_until = time.monotonic() + STORAGE_RETRY_SECONDS
        if first:  # once per outage, not once per request
            log.warning(
                "Rate-limit storage %s %s: counting in each worker's memory until it works again",
                self.shown,
                reason,
            )

    def _came_back(self) -> None:
        with self._lock:
            was_down, self._down_until = bool(self._down_until), 0.0
        if was_down:  # once, even when several threads find it back at the same moment
            log.info("Rate-limit storage %s works again: counts are shared again", self.shown)


def counts_shown(settings: Settings) -> str:
    """Where the counts are kept, fit for a log line: the local file, or RATE_LIMIT_STORAGE without its password."""
    uri = settings.rate_limit_storage
    return url_shown(uri) if uri else str(settings.data_dir / LOCAL_STORE_NAME)


def open_storage(uri: str) -> Storage:
    """The `limits` storage a RATE_LIMIT_STORAGE URI names; its failures surface as StorageError."""
    options: dict[str, float] = {}
    if urlsplit(uri).scheme in _REDIS_SCHEMES:  # redis-py waits for the system's TCP timeout otherwise
        options = {"socket_connect_timeout": STORAGE_TIMEOUT_SECONDS, "socket_timeout": STORAGE_TIMEOUT_SECONDS}
    storage = storage_from_string(uri, wrap_exceptions=True, **options)
    if not isinstance(storage, Storage) or not isinstance(storage, MovingWindowSupport):
        raise ValueError(f"{urlsplit(uri).scheme}:// storage has no moving windows")
    return storage


def _made_again_once(step: Callable[..., Result]) -> Callable[..., Result]:
    """A LocalStorage step that, when it fails because the file was lost, runs once more on a new file."""

    @functools.wraps(step)
    def run(storage: LocalStorage, *args: object, **kwargs: object) -> Result:
        try:
            return step(storage, *args, **kwargs)
        except sqlite3.Error as error:
            if not storage._start_over(error):
                raise
        return step(storage, *args, **kwargs)

    return run


class LocalStorage(Storage, MovingWindowSupport):
    """A `limits` storage in one SQLite file, shared by every process of this machine that opens it.

    Each step is one transaction that takes the write lock first (BEGIN IMMEDIATE), so a count and
    its check are atomic across processes; each process keeps one connection for its steps. The file
    is in WAL mode, so readers do not wait for the writer; counts need no durability, so no fsync per
    step (synchronous=NORMAL). A file that is deleted or damaged while the app runs is made again at
    the next step: counts are disposable.
    """

    STORAGE_SCHEME = None  # not reachable by URI: RATE_LIMIT_STORAGE left empty selects it
    BUSY_TIMEOUT_SECONDS = 5.0  # a lock held longer than this (a stuck process) counts as a failure: memory for now

    def __init__(self, path: Path):
        super().__init__(wrap_exceptions=True)
        self.path = path
        self._ready = False
        self._create_lock = threading.Lock()  # threads creating the file at once made SQLite fail (SQLITE_IOERR)
        self._use_lock = threading.Lock()  # one connection per process, one transaction at a time
        self._kept: tuple[int, tuple[int, ...] | None, sqlite3.Connection] | None = None  # pid, file identity

    @property
    def base_exceptions(self) -> type[Exception] | tuple[type[Exception], ...]:
        return (sqlite3.Error, OSError)

    @contextlib.contextmanager
    def _transaction(self, write: bool = True) -> Iterator[sqlite3.Connection]:
        """One transaction on this process's connection, one thread at a time; a write transaction takes
        the write lock at once, so nothing changes between its reads and its writes."""
        if not self._ready:
            self._create()
        with self._use_lock:
            connection = self._connection()
            try:
                connection.execute("BEGIN IMMEDIATE" if write else "BEGIN")
                try:
                    yield connection
                except BaseException:
                    connection.execute("ROLLBACK")
                    raise
                connection.execute("COMMIT")
            except sqlite3.Error:
                self._kept = None  # whatever went wrong, the next step starts on a new connection
                connection.close()
                raise

    def _connection(self) -> sqlite3.Connection:
        """This process's connection, kept between steps: opening one per step cost ~2 ms (the last connection
        to close checkpoints the WAL). Opened again after a fork, and whenever the file itself changed (WAL
        steps write only beside it; a checkpoint, or someone deleting, replacing or overwriting it, changes it),
        so a lost file is noticed and every worker counts in the same one."""
        try:
            status = os.stat(self.path)
            identity: tuple[int, ...] | None = (status.st_ino, status.st_size, status.st_mtime_ns)
        except FileNotFoundError:
            identity = None
        kept = self._kept
        if kept is not None and kept[0] == os.getpid() and kept[1] == identity:
            return kept[2]
        self._kept = None
        connection = self._connect()  # a deleted file: SQLITE_CANTOPEN, made again by the caller
        connection.execute("PRAGMA synchronous=NORMAL")
        if kept is not None and kept[0] == os.getpid():
            kept[2].close()  # after the new one opened, so it is not the last (no checkpoint); a connection
            # from before a fork is left alone: it belongs to the parent
        self._kept = (os.getpid(), identity, connection)
        return connection

    def release(self) -> None:
        """Close this process's connection; the next step opens one again."""
        with self._use_lock:
            kept, self._kept = self._kept, None
            if kept is not None and kept[0] == os.getpid():
                kept[2].close()

    def _connect(self) -> sqlite3.Connection:
        """A connection to the existing file: a deleted one is an error (SQLITE_CANTOPEN), not a new 0644 file."""
        uri = self.path.resolve().as_uri() + "?mode=rw"
        return sqlite3.connect(
            uri, uri=True, timeout=self.BUSY_TIMEOUT_SECONDS, isolation_level=None, check_same_thread=False
        )

    def _create(self) -> None:
        """The file (0600: it lists client addresses) in WAL mode and its tables, if missing."""
        with self._create_lock:
            if self._ready:
                return
            self.path.parent.mkdir(parents=True, exist_ok=True)
            os.close(os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600))
            connection = self._connect()
            try:
                connection.execute("PRAGMA journal_mode=WAL")  # kept in the file: once is enough
                with connection:
                    connection.executescript(
                        """
                        CREATE TABLE IF NOT EXISTS entries (key TEXT NOT NULL, at REAL NOT NULL, expires REAL NOT NULL);
                        CREATE INDEX IF NOT EXISTS entries_by_key ON entries (key, at);
                        CREATE INDEX IF NOT EXISTS entries_by_expiry ON entries (expires);
                        CREATE TABLE IF NOT EXISTS counters (
                            key TEXT PRIMARY KEY, value INTEGER NOT NULL, expires REAL NOT NULL
                        );
                        """
                    )
            finally:
                connection.close()
            self._ready = True

    def _start_over(self, error: sqlite3.Error) -> bool:
        """After `error`: whether the file was lost (deleted, emptied or damaged), in which case it is made again."""
        damaged = getattr(error, "sqlite_errorname", "") in ("SQLITE_NOTADB", "SQLITE_CORRUPT")
        cannot_open = getattr(error, "sqlite_errorname", "") == "SQLITE_CANTOPEN"
        missing = (cannot_open and not self.path.exists()) or "no such table" in str(error)  # not a permission
        if not (damaged or missing):
            return False
        log.warning("Rate-limit file %s was %s: making it again", self.path, "damaged" if damaged else "removed")
        with self._create_lock:
            self._ready = False
            # Another thread or worker may have made it again already: remove only a file still damaged.
            if damaged and self._damaged():
                for suffix in ("", "-wal", "-shm"):
                    Path(f"{self.path}{suffix}").unlink(missing_ok=True)
        self._create()
        return True

    def _damaged(self) -> bool:
        """Whether the file is not (or no longer) a readable database."""
        try:
            connection = self._connect()
            try:
                connection.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
            finally:
                connection.close()
        except sqlite3.Error as error:
            return getattr(error, "sqlite_errorname", "") in ("SQLITE_NOTADB", "SQLITE_CORRUPT")
        return False

    # ---- moving windows (what Budget uses) ---------------------------------------------------

    @_made_again_once
    def acquire_entry(self, key: str, limit: int, expiry: int, amount: int = 1) -> bool:
        """Add `amount` entries now if the last `expiry` seconds hold at most `limit - amount`."""
        if amount > limit:
            return False
        with self._transaction() as db:
            now = time.time()
            db.execute("DELETE FROM entries WHERE expires <= ?", (now,))  # every key's stale entries
            (held,) = db.execute(
                "SELECT COUNT(*) FROM entries WHERE key = ? AND at > ?", (key, now - expiry)
            ).fetchone()
            if held + amount > limit:
                return False
            db.executemany("INSERT INTO entries VALUES (?, ?, ?)", [(key, now, now + expiry)] * amount)
            return True

    @_made_again_once
    def get_moving_window(self, key: str, limit: int, expiry: int) -> tuple[float, int]:
        """(time of the oldest entry in the window, or now; entries in the window)."""
        with self._transaction(write=False) as db:
            now = time.time()
            oldest, held = db.execute(
                "SELECT MIN(at), COUNT(*) FROM entries WHERE key = ? AND at > ?", (key, now - expiry)
            ).fetchone()
            return (now if oldest is None else oldest), held

    # ---- fixed-window counters (the rest of the `limits` storage interface) -------------------

    @_made_again_once
    def incr(self, key: str, expiry: int, amount: int = 1) -> int:
        with self._transaction() as db:
            now = time.time()
            db.execute("DELETE FROM counters WHERE key = ? AND expires <= ?", (key, now))
            db.execute(
                "INSERT INTO counters VALUES (?, ?, ?) ON CONFLICT (key) DO UPDATE SET value = value + excluded.value",
                (key, amount, now + expiry),
            )
            (value,) = db.execute("SELECT value FROM counters WHERE key = ?", (key,)).fetchone()
            return int(value)

    @_made_again_once
    def get(self, key: str) -> int:
        with self._transaction(write=False) as db:
            row = db.execute("SELECT value FROM counters WHERE key = ? AND expires > ?", (key, time.time())).fetchone()
            return int(row[0]) if row else 0

    @_made_again_once
    def get_expiry(self, key: str) -> float:
        with self._transaction(write=False) as db:
            now = time.time()
            row = db.execute("SELECT expires FROM counters WHERE key = ? AND expires > ?", (key, now)).fetchone()
            return float(row[0]) if row else now

    def check(self) -> bool:
        try:
            self._read_tables()
            return True
        except (sqlite3.Error, OSError):
            return False

    @_made_again_once
    def _read_tables(self) -> None:
        with self._transaction(write=False) as db:
            db.execute("SELECT 1 FROM entries LIMIT 1").fetchone()

    @_made_again_once
    def reset(self) -> int | None:
        with self._transaction() as db:
            removed = db.execute("DELETE FROM entries").rowcount + db.execute("DELETE FROM counters").rowcount
            return int(removed)

    @_made_again_once
    def clear(self, key: str) -> None:
        with self._transaction() as db:
            db.execute("DELETE FROM entries WHERE key = ?", (key,))
            db.execute("DELETE FROM counters WHERE key = ?", (key,))


def _store() -> RateLimitStore:
    """The current app's RateLimitStore: create_app makes one whenever RATE_LIMIT or ACCESS_TOKEN makes a Budget."""
    return current_app.extensions["rate_limits"]


def _client() -> str:
    """The client's address (after ProxyFix, when TRUSTED_PROXIES is set)."""
    return request.remote_addr or "unknown"
