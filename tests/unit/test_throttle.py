"""LoginThrottle: growing delays per key, a cap, forgetting, bounded memory."""

from __future__ import annotations

import pytest

from enertef_hub.throttle import LoginThrottle


@pytest.fixture
def clock():
    return [0.0]


@pytest.fixture
def throttle(clock):
    return LoginThrottle(free_failures=2, base_delay=1.0, max_delay=8.0, clock=lambda: clock[0])


@pytest.mark.parametrize(
    "count, delay", [(1, 0), (2, 0), (3, 1), (4, 2), (5, 4), (6, 8), (7, 8), (50, 8)]
)
def test_delays_grow_and_are_capped(throttle, count, delay):
    assert throttle.delay_after(count) == delay


def test_a_key_waits_after_its_free_failures(throttle, clock):
    key = ("alice", "203.0.113.9")
    assert throttle.failed(key) == 0 and throttle.failed(key) == 0
    assert throttle.wait_seconds(key) == 0
    assert throttle.failed(key) == 1
    assert throttle.wait_seconds(key) == 1
    assert throttle.wait_seconds(("alice", "198.51.100.7")) == 0  # another address
    clock[0] += 1
    assert throttle.wait_seconds(key) == 0
    assert throttle.failed(key) == 2


def test_success_and_a_quiet_hour_reset(throttle, clock):
    key = ("alice", "203.0.113.9")
    for _ in range(4):
        throttle.failed(key)
    throttle.succeeded(key)
    assert throttle.failed(key) == 0
    for _ in range(4):
        throttle.failed(key)
    clock[0] += throttle.forget_after + 1
    assert throttle.failed(key) == 0


def test_memory_is_bounded(clock):
    throttle = LoginThrottle(max_entries=10, clock=lambda: clock[0])
    for i in range(100):
        throttle.failed((f"name{i}", "203.0.113.9"))
    assert len(throttle._failures) == 10
