"""Login sessions behind the page's cookie: a random signing secret and the list of live sessions.

Both are files in the data folder, so every Gunicorn worker and every restart sees the same ones:

- `session_secret` (mode 0600): 32 random bytes, made once. It is written complete under a temporary
  name and then hard-linked into place; a link never replaces a file, so when two workers start at
  once the first link wins and the other reads the winner's secret.
- `sessions.json` (mode 0600): the id and start time of every live session. A cookie counts only
  while its id is listed, so logging out (which removes it) holds in every worker at once. Changes
  are made under a lock and written atomically; each check reads the file afresh (it is small).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import tempfile
import threading
from pathlib import Path

from errors import StorageError
from history_store import file_lock, write_bytes_atomic

log = logging.getLogger(__name__)

SECRET_FILE = "session_secret"
SESSIONS_FILE = "sessions.json"
SECRET_BYTES = 32
MAX_SESSIONS = 200  # the oldest logins are dropped beyond this; scripts use the Bearer token instead


class SessionSecret:
    """The data folder's signing secret, created on first use and then read once per process."""

    def __init__(self, folder: Path):
        self.path = folder / SECRET_FILE
        self._value: bytes | None = None
        self._lock = threading.Lock()

    def value(self) -> bytes:
        """The secret; StorageError when the data folder cannot hold it."""
        with self._lock:
            if self._value is None:
                try:
                    self._value = _read_or_create_secret(self.path)
                except OSError as error:
                    raise _storage_error("The login secret cannot be read or made", error) from None
            return self._value


def _read_or_create_secret(path: Path) -> bytes:
    """The secret stored at `path`, made first if there is none; every process gets the same one."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor, temp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")  # mode 0600
        try:
            with os.fdopen(descriptor, "wb") as temp:
                temp.write(secrets.token_bytes(SECRET_BYTES))
                temp.flush()
                os.fsync(temp.fileno())
            with contextlib.suppress(FileExistsError):  # another worker linked its secret first: use that one
                os.link(temp_name, path)
        finally:
            os.unlink(temp_name)
    secret = path.read_bytes()
    if len(secret) < SECRET_BYTES:
        raise OSError(f"{path} is shorter than {SECRET_BYTES} bytes; delete it to make a new one")
    return secret


class SessionStore:
    """The ids of live login sessions, kept in the data folder and shared by every worker."""

    def __init__(self, folder: Path, lifetime: int):
        self.path = folder / SESSIONS_FILE
        self.lock_path = folder / f".{SESSIONS_FILE}.lock"
        self.lifetime = lifetime

    def __contains__(self, session_id: str) -> bool:
        return session_id in self._read()

    def add(self, session_id: str, now: float) -> None:
        """Record a new session; drop those past their lifetime, and the oldest beyond MAX_SESSIONS."""
        with self._changing() as sessions:
            for old_id, started in list(sessions.items()):
                if started < now - self.lifetime:
                    del sessions[old_id]
            sessions[session_id] = now
            for old_id in sorted(sessions, key=sessions.__getitem__)[:-MAX_SESSIONS]:
                del sessions[old_id]

    def remove(self, session_id: str) -> None:
        """End a session: its cookie no longer counts, in any worker."""
        with self._changing() as sessions:
            sessions.pop(session_id, None)

    @contextlib.contextmanager
    def _changing(self):
        """The sessions to edit in place, under the lock; written back atomically afterwards."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with file_lock(self.lock_path):
                sessions = self._read()
                yield sessions
                write_bytes_atomic(self.path, json.dumps(sessions).encode("utf-8"))  # mkstemp's 0600 is kept
        except OSError as error:
            raise _storage_error("The login sessions cannot be saved", error) from None

    def _read(self) -> dict[str, float]:
        """The live sessions: none when the file is missing or garbled (everyone logs in again)."""
        try:
            data = json.loads(self.path.read_bytes())
        except (FileNotFoundError, ValueError):
            return {}
        except OSError as error:
            raise _storage_error("The login sessions cannot be read", error) from None
        if not isinstance(data, dict):
            return {}
        return {key: value for key, value in data.items() if isinstance(value, int | float)}


def _storage_error(what: str, error: OSError) -> StorageError:
    """A 503 for anyone (login and logout are public): the reason, but the folder's path only in the log."""
    log.warning("%s: %s", what, error)
    return StorageError(f"{what}: {error.strerror or 'storage error'} (is the data folder writable and not full?).")
