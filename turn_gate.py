"""Keeps reminder messages out of the middle of a turn, across every Gunicorn worker.

A turn (the user's message stored … the reply stored, streamed or not) holds a shared `flock` on
`data/turns.lock` for its whole length; any number of turns run at once. Storing a reminder's message
takes the exclusive lock, so it waits until no turn is in progress and lands right after the reply,
never between a question and its answer. The wait is bounded: a reminder is late rather than lost.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

log = logging.getLogger(__name__)

POLL_SECONDS = 0.05  # how often a waiting reminder tries again; only while a turn is in progress


class Turn:
    """One turn's hold on the gate; `close()` (or dropping it) lets reminders through again."""

    def __init__(self, handle: IO[bytes] | None):
        self._handle = handle

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()  # closing releases the lock
            self._handle = None

    __del__ = close  # a stream never started is dropped, not closed


class TurnGate:
    """Shared locks for turns, a bounded exclusive wait for reminder messages."""

    def __init__(self, path: Path, max_wait_seconds: float):
        self.path = path
        self.max_wait_seconds = max_wait_seconds

    def _open(self) -> IO[bytes] | None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            return open(self.path, "ab")  # noqa: SIM115 - held for the turn, closed by Turn.close
        except OSError as error:  # a read-only data folder fails the turn itself, with a clearer error
            log.warning("Cannot open %s (%s); reminders may land mid-turn", self.path.name, error.strerror)
            return None

    def turn(self) -> Turn:
        """Hold the gate shared until the returned Turn is closed."""
        handle = self._open()
        if handle is not None:
            try:
                fcntl.flock(handle, fcntl.LOCK_SH)
            except OSError:  # e.g. no locks on a network file system: chat still works
                handle.close()
                handle = None
        return Turn(handle)

    @contextlib.contextmanager
    def between_turns(self) -> Iterator[None]:
        """Hold the gate alone: wait (at most max_wait_seconds) until no turn is in progress."""
        handle = self._open()
        try:
            if handle is not None:
                self._wait_alone(handle)
            yield
        finally:
            if handle is not None:
                handle.close()

    def _wait_alone(self, handle: IO[bytes]) -> None:
        # Polled with LOCK_NB, because a blocking flock cannot time out.
        deadline = time.monotonic() + self.max_wait_seconds
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    log.warning(
                        "A turn has been in progress for over %g s; delivering the reminder anyway",
                        self.max_wait_seconds,
                    )
                    return
                time.sleep(POLL_SECONDS)
            except OSError:
                return
