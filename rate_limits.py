"""Call budgets per client address: a moving window of calls, refused with 429 and Retry-After."""

from __future__ import annotations

import time

from flask import request
from limits import RateLimitItem
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter

from errors import RateLimited


class Budget:
    """Calls per client address within one or more moving windows (e.g. "10 per minute;500/day")."""

    def __init__(self, rates: list[RateLimitItem], name: str):
        self.rates = rates
        self.name = name
        self.windows = MovingWindowRateLimiter(MemoryStorage())

    def check(self, message: str) -> None:
        """429 with Retry-After while this client has no calls left in some window; counts nothing."""
        for rate in self.rates:
            if not self.windows.test(rate, self.name, _client()):
                self._refuse(rate, message)

    def take(self, message: str) -> None:
        """Count one call from this client, or refuse it with 429: one atomic step per window, so
        simultaneous requests cannot all slip through between a check and a count."""
        for rate in self.rates:
            if not self.windows.hit(rate, self.name, _client()):
                self._refuse(rate, message)

    def count(self) -> None:
        """Count one event from this client, refusing nothing (wrong tokens: the next check refuses)."""
        for rate in self.rates:
            self.windows.hit(rate, self.name, _client())

    def _refuse(self, rate: RateLimitItem, message: str) -> None:
        reset_at = self.windows.get_window_stats(rate, self.name, _client()).reset_time
        raise RateLimited(message.format(limit=rate), retry_after=max(1.0, reset_at - time.time()))


def _client() -> str:
    """The client's address (after ProxyFix, when TRUSTED_PROXIES is set)."""
    return request.remote_addr or "unknown"
