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
"""

from __future__ import annotations

import asyncio
import logging

from .errors import EnerTEFError
from .events import log_event
from .naming import InvalidNameError

#: username -> the preparation running in this hub process.
_in_flight: dict[str, asyncio.Task] = {}


def prepare_in_background(workbench, username: str, actor: str, log: logging.Logger) -> asyncio.Task:
    """Start preparing ``username``'s workbench (or return the preparation already running)."""
    task = _in_flight.get(username)
    if task is not None and not task.done():
        return task
    task = asyncio.ensure_future(_prepare(workbench, username, actor, log))
    _in_flight[username] = task
    task.add_done_callback(lambda done: _in_flight.pop(username, None) if _in_flight.get(username) is done else None)
    return task


async def stop_preparing(username: str):
    """Cancel ``username``'s preparation, if one is running, and wait until it has ended."""
    task = _in_flight.get(username)
    if task is None or task.done():
        return
    task.cancel()
    # Whatever it was doing is rolled back or finished once this returns.
    await asyncio.gather(task, return_exceptions=True)


async def _prepare(workbench, username: str, actor: str, log: logging.Logger):
    try:
        result = await workbench.prepare(username, actor=actor)
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
