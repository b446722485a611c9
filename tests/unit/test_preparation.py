"""Background preparation at approval (enertef_hub.preparation): one at a time, stoppable, never fatal."""

from __future__ import annotations

import asyncio
import logging

from enertef_hub import preparation
from enertef_hub.errors import ServiceUnavailableError


class FakeWorkbench:
    """Stands in for Workbench.prepare: blocks until released, records how it ended."""

    def __init__(self, error: Exception | None = None):
        self.release = asyncio.Event()
        self.calls = 0
        self.ended = None
        self.error = error

    async def prepare(self, username, actor=None):
        self.calls += 1
        try:
            await self.release.wait()
        except asyncio.CancelledError:
            await asyncio.sleep(0.05)  # a rollback takes a moment: stop_preparing must wait for it
            self.ended = "rolled back"
            raise
        if self.error:
            raise self.error
        self.ended = "done"

        class Result:
            seconds = 0.01

            class resources:  # noqa: N801
                schema, bucket = f"u_{username}", f"user-{username}"

        return Result()


async def test_a_second_approval_joins_the_preparation_in_flight():
    wb = FakeWorkbench()
    first = preparation.prepare_in_background(wb, "ann", "boss", logging.getLogger("t"))
    second = preparation.prepare_in_background(wb, "ann", "boss", logging.getLogger("t"))
    assert first is second
    wb.release.set()
    await first
    assert wb.calls == 1 and wb.ended == "done"


async def test_stop_preparing_returns_only_after_the_preparation_has_ended():
    wb = FakeWorkbench()
    task = preparation.prepare_in_background(wb, "bea", "boss", logging.getLogger("t"))
    await asyncio.sleep(0)  # it has started
    await preparation.stop_preparing("bea")
    assert task.done() and wb.ended == "rolled back"
    assert "bea" not in preparation._in_flight


async def test_stop_preparing_without_a_preparation_does_nothing():
    await preparation.stop_preparing("nobody")


async def test_a_failed_preparation_is_logged_for_the_admin_and_not_raised(caplog):
    wb = FakeWorkbench(error=ServiceUnavailableError("The object storage (MinIO at x) is unreachable"))
    wb.release.set()
    with caplog.at_level(logging.WARNING):
        result = await preparation.prepare_in_background(wb, "cid", "boss", logging.getLogger("t"))
    assert result is None
    assert "cid's workbench could not be prepared" in caplog.text and "unreachable" in caplog.text
