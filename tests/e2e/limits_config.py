"""Test-only hub config snippet: small resource limits for tests/e2e/test_server_limits.py.

Loaded through ``ENERTEF_E2E_EXTRA_CONFIG``. The users' groups go below a parent of
the test run's own (``ENERTEF_E2E_CGROUP_PARENT``), so parallel runs never meet; the group
``ENERTEF_E2E_LIMIT_GROUP`` gets a CPU cap of its own; and
the sizes are small: the machine is shared.
"""

import os

c = get_config()  # noqa: F821  (provided by JupyterHub when it loads this file)

c.EnerTEFLocalSpawner.cgroup_parent = os.environ["ENERTEF_E2E_CGROUP_PARENT"]
c.EnerTEFLocalSpawner.mem_limit = "400M"
c.EnerTEFLocalSpawner.pids_limit = 512
c.EnerTEFLocalSpawner.limit_overrides = {f"group:{os.environ['ENERTEF_E2E_LIMIT_GROUP']}": {"cpu_limit": 0.5}}
