"""Failed-login throttling per (name, client address), with growing delays.

NativeAuthenticator locks an *account* after N failures: anyone who knows the
admin's name can keep the admin out, and its message tells a stranger which
names exist. Here failures are counted per (name, client address) instead, for
names that exist and names that do not alike: after ``free_failures`` failures,
each further failure makes that pair wait ``base_delay``, then twice as long,
up to ``max_delay``. Guessing from one address becomes slow; the owner of the
name, from another address, is not affected.

Pure and in memory (one hub process holds it); the clock is injectable for tests.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable


@dataclass
class _Failures:
    count: int
    until: float  # monotonic time before which this pair must wait
    last: float


class LoginThrottle:
    """Remembers failed logins per key and says how long a key must wait."""

    def __init__(
        self,
        free_failures: int = 3,
        base_delay: float = 1.0,
        max_delay: float = 300.0,
        max_entries: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.free_failures = free_failures
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.max_entries = max_entries
        self.clock = clock
        self._failures: OrderedDict[tuple, _Failures] = OrderedDict()

    def delay_after(self, count: int) -> float:
        """Seconds a key must wait after its ``count``-th consecutive failure."""
        if count <= self.free_failures:
            return 0.0
        return min(self.max_delay, self.base_delay * 2 ** (count - self.free_failures - 1))

    def wait_seconds(self, key: tuple) -> float:
        """Seconds ``key`` must still wait before its next attempt is even checked (0: go)."""
        entry = self._failures.get(key)
        if entry is None:
            return 0.0
        return max(0.0, entry.until - self.clock())

    def failed(self, key: tuple) -> float:
        """Record a failure of ``key``; return the seconds it must now wait."""
        now = self.clock()
        entry = self._failures.pop(key, None)
        if entry is not None and now - entry.last > self.forget_after:
            entry = None  # quiet for long enough: start afresh
        count = 1 if entry is None else entry.count + 1
        delay = self.delay_after(count)
        self._failures[key] = _Failures(count, now + delay, now)
        while len(self._failures) > self.max_entries:
            self._failures.popitem(last=False)  # the least recently failed
        return delay

    def succeeded(self, key: tuple) -> None:
        """Forget the failures of ``key`` (a correct password was given)."""
        self._failures.pop(key, None)

    @property
    def forget_after(self) -> float:
        """A key quiet for this long starts again with free failures."""
        return max(3600.0, 2 * self.max_delay)
