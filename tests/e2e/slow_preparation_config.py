"""Test-only hub config snippet: each approval's preparation starts 1.5 s late.

Loaded through ``ENERTEF_E2E_EXTRA_CONFIG`` by test_approval_prepares.py, so that an
admin's withdrawal or deletion lands while the preparation is surely still running
(otherwise the race the tests are about is won or lost by milliseconds).
"""

import asyncio

from enertef_hub import preparation

_prepare = preparation._prepare


async def _late_prepare(workbench, username, actor, log):
    await asyncio.sleep(1.5)
    return await _prepare(workbench, username, actor, log)


preparation._prepare = _late_prepare  # the approval's preparation only, not the spawn's
