"""Login throttling: after a number of failed logins for one user name (5), or from one
client address (30: many users may share one behind a hospital's NAT), within ``window_s``
seconds, further attempts are refused (even with the right password) until the oldest
failure leaves the window. Keys are ``<kind>:<value>``. Kept in memory: one server process
(several processes each count their own)."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable

from kahu.errors import KahuError


class TooManyAttempts(KahuError):
    """HTTP 429; ``retry_after`` seconds until the next attempt is considered."""

    http_status = 429

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class LoginThrottle:
    def __init__(
        self,
        limits: dict[str, int] | None = None,
        window_s: float = 900.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limits = limits or {"user": 5, "address": 30}
        self.window_s = window_s
        self.clock = clock
        self._failures: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def _recent(self, key: str, now: float) -> deque[float]:
        failures = self._failures.setdefault(key, deque())
        while failures and now - failures[0] >= self.window_s:
            failures.popleft()
        return failures

    def check(self, *keys: str) -> None:
        """Refuse the attempt when any key has used up its failures."""
        now = self.clock()
        with self._lock:
            for key in keys:
                failures = self._recent(key, now)
                if len(failures) >= self.limits.get(key.partition(":")[0], 5):
                    wait = int(self.window_s - (now - failures[0])) + 1
                    raise TooManyAttempts(
                        f"too many failed logins; try again in {wait} s", retry_after=wait
                    )

    def failed(self, *keys: str) -> None:
        now = self.clock()
        with self._lock:
            for key in keys:
                self._recent(key, now).append(now)

    def succeeded(self, user_key: str) -> None:
        """A good login clears the user name's count (not the address's)."""
        with self._lock:
            self._failures.pop(user_key, None)
