"""Structured lifecycle log lines.

Every lifecycle event (sign-up, approval, provisioning, deprovisioning, deletion,
restore, purge, rotation, team sync) is logged as one line of JSON prefixed by
``enertef-event``, so it can be grepped in ``kubectl logs`` and parsed by a log
pipeline without a schema of its own. Values are never secrets.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime, timezone

EVENT_PREFIX = "enertef-event"


def make_event(event: str, username: str | None, actor: str | None = None, **fields) -> dict:
    """Return the dictionary logged for one lifecycle event (pure)."""
    record = {
        "event": event,
        "user": username,
        "actor": actor or "system",
        "time": datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
    }
    record.update(fields)
    return record


def log_event(log: logging.Logger, event: str, username: str | None, actor: str | None = None, **fields) -> dict:
    """Log one lifecycle event as a single JSON line and return what was logged."""
    record = make_event(event, username, actor, **fields)
    log.info("%s %s", EVENT_PREFIX, json.dumps(record, sort_keys=True, default=str))
    return record


def as_data(text: str) -> str:
    """``text`` from an untrusted source, made safe to log: one quoted line that is never an event.

    JSON-quoting keeps it on one line; the event prefix is broken up so that a log
    reader looking for ``enertef-event`` never takes a user's text for an event.
    """
    return json.dumps(str(text)).replace(EVENT_PREFIX, "enertef-\\u0065vent")
