"""Waiting for something another process does, with a deadline."""

from __future__ import annotations

import time


def wait_for(check, timeout: float = 60, what: str = "condition", interval: float = 0.3):
    """Call ``check`` until it returns something true; return that.

    Raises AssertionError naming ``what`` after ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")
