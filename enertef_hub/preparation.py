"""An approved user's workbench is prepared in the background, before their first spawn.

When an admin approves a sign-up, the user's store, bucket, credentials and MLflow
tables are made at once, while the admin goes on and before the user has even
logged in (:meth:`Workbench.prepare`). Their first spawn then only checks that all
is there, like a returning user's (issue 13: the first spawn as fast as a stock
hub's). Nothing depends on it: if it fails (a service is down) or the hub
restarts meanwhile, the spawn does the same work and shows what went wrong.

Preparation must never give back access that is being taken away: withdrawing the
approval or deleting the user first cancels the preparation in flight and waits
for it to end (:func:`stop_preparing`), so the revocation comes after whatever the
preparation did. A cancelled provisioning rolls back and undoes what it made in
MinIO, like any failed one.

The same holds for the MLflow tables a first spawn makes once the user's server is
up (:func:`run_in_background`): they are background work for the user, and a
revocation cancels them too.
"""

from __future__ import annotations

import asyncio
import logging

from .errors import EnerTEFError
from .events import log_event
from .naming import InvalidNameError

#: (username, what) -> background work for that user running in this hub process.
_in_flight: dict[tuple[str, str], asyncio.Task] = {}


def run_in_background(username: str, what: str, coro) -> asyncio.Task:
    """Run *coro*, ``username``'s background work called *what*, unless that work already runs.

    Returns the task doing it (*coro* is closed unused when one already runs).
    :func:`stop_preparing` cancels it.
    """
    key = (username, what)
    task = _in_flight.get(key)
    if task is not None and not task.done():
        coro.close()
        return task
    task = asyncio.ensure_future(coro)
    _in_flight[key] = task
    task.add_done_callback(lambda done: _in_flight.pop(key, None) if _in_flight.get(key) is done else None)
    return task


def running(username: str, what: str) -> asyncio.Task | None:
    """``username``'s background work called *what*, while it runs; else None."""
    task = _in_flight.get((username, what))
    return task if task is not None and not task.done() else None


def prepare_in_background(workbench, username: str, actor: str, log: logging.Logger) -> asyncio.Task:
    """Start preparing ``username``'s workbench (or return the preparation already running)."""
    return run_in_background(username, "prepare", _prepare(workbench, username, actor, log))


async def stop_preparing(username: str):
    """Cancel all of ``username``'s background work and wait until it has ended."""
    tasks = [task for (name, _), task in list(_in_flight.items()) if name == username and not task.done()]
    for task in tasks:
        task.cancel()
    # Whatever it was doing is rolled back or finished once this returns.
    await asyncio.gather(*tasks, return_exceptions=True)


async def _prepare(workbench, username: str, actor: str, log: logging.Logger):
    try:
        result = (await workbench.prepare(username, actor=actor)).result
    except asyncio.CancelledError:
        log.info("Preparation of %s's workbench stopped (approval withdrawn or user deleted)", username)
        raise
    except (EnerTEFError, InvalidNameError) as exc:
        log.warning("%s's workbench could not be prepared ahead of their first spawn (the spawn"
                    " will try again and show what is wrong): %s", username, exc)
        return None
    except Exception:
        log.exception("Preparing %s's workbench failed (the spawn will try again)", username)
        return None
    log_event(log, "prepared", username, actor, seconds=round(result.seconds, 4),
              schema=result.resources.schema, bucket=result.resources.bucket)
    return result
