"""Test-only hub config snippet: each approval's preparation starts 1.5 s late.

Loaded through ``ENERTEF_E2E_EXTRA_CONFIG`` by test_approval_prepares.py, so that an
admin's withdrawal or deletion lands while the preparation is surely still running
(otherwise the race the tests are about is won or lost by milliseconds).
"""

import asyncio

from enertef_hub.workbench import Workbench

_prepare = Workbench.prepare


async def _late_prepare(self, username, actor=None):
    await asyncio.sleep(1.5)
    return await _prepare(self, username, actor=actor)


Workbench.prepare = _late_prepare
