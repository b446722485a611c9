"""Prometheus figures of the workbench, served on the hub's ``/hub/metrics`` next to JupyterHub's.

JupyterHub serves ``prometheus_client``'s default registry on ``/hub/metrics``, so
metrics created here (in the hub process) appear there with no handler of our own.
One histogram times every lifecycle operation, labelled by operation and outcome,
and one counter counts failures; a Prometheus query then gives rates, percentiles
and error ratios per operation:

- ``enertef_operation_duration_seconds{operation, outcome}`` (histogram)
- ``enertef_operation_failures_total{operation}`` (counter)

Operations: ``provision``, ``deprovision``, ``restore``, ``rotate``, ``suspend``;
``team_sync`` (every team at once: ``enertef-hub sync`` and the sync service, whose
figures are in its own process) and ``team_sync_user`` (one user's teams, at each
spawn); ``store_tables`` (a new MLflow store's tables) and ``store_upgrade`` (an
older MLflow's store migrated).
"""

from __future__ import annotations

import functools
import time

from prometheus_client import Counter, Histogram

OPERATION_SECONDS = Histogram(
    "enertef_operation_duration_seconds",
    "Duration of workbench lifecycle operations (provisioning, revocation, team sync, MLflow store upgrades)",
    ["operation", "outcome"],
    # From the fast path of provisioning (milliseconds) to a large store's upgrade (minutes).
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 180, 600),
)

OPERATION_FAILURES = Counter(
    "enertef_operation_failures_total",
    "Workbench lifecycle operations that failed",
    ["operation"],
)


def observe(operation: str, seconds: float, ok: bool):
    """Record one finished operation."""
    OPERATION_SECONDS.labels(operation=operation, outcome="success" if ok else "failure").observe(seconds)
    if not ok:
        OPERATION_FAILURES.labels(operation=operation).inc()


def measured(operation: str):
    """Decorator for an async method: time it and count its failures as ``operation``."""

    def decorate(func):
        @functools.wraps(func)
        async def wrapper(*args, **kwargs):
            started = time.perf_counter()
            ok = False
            try:
                result = await func(*args, **kwargs)
                ok = True
                return result
            finally:
                observe(operation, time.perf_counter() - started, ok)

        return wrapper

    return decorate
