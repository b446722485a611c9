"""Stop idle servers on one machine, as the chart does on Kubernetes: jupyterhub-idle-culler as a hub service.

z2jh runs its own culler from the chart's ``cull`` values, so this snippet does
nothing there (the chart's config has imported its ``z2jh`` module before loading
``jupyterhub_config.d``). Elsewhere (scripts/jupyterhub_config.py, the single-machine
mode) a server idle for ``ENERTEF_CULL_TIMEOUT`` seconds is stopped; its home, MLflow
store and bucket are kept. The default is the chart's ``cull.timeout``
(chart-values/jupyterhub.yaml) and ``cull.every``; ``ENERTEF_CULL_TIMEOUT=0``
disables the culler.
"""

import importlib.util
import os
import sys

#: chart-values/jupyterhub.yaml ``cull.timeout`` and z2jh's default ``cull.every`` (a unit test keeps them equal).
CULL_TIMEOUT = 3600
CULL_EVERY = 600

_timeout = int(os.environ.get("ENERTEF_CULL_TIMEOUT", CULL_TIMEOUT))
if "z2jh" not in sys.modules and _timeout > 0:
    if importlib.util.find_spec("jupyterhub_idle_culler") is None:
        print("enertef: jupyterhub-idle-culler is not installed: idle servers are not stopped"
              " (pip install jupyterhub-idle-culler)", file=sys.stderr)
    else:
        _every = int(os.environ.get("ENERTEF_CULL_EVERY", min(CULL_EVERY, max(1, _timeout // 2))))
        # extend(): a snippet loaded with load_subconfig gets a Config of its own, and
        # extend() adds to the hub's list at the merge (assigning would replace it).
        c.JupyterHub.services.extend([  # noqa: F821
            {
                "name": "jupyterhub-idle-culler",
                # Through our launcher, which ends on the hub's SIGINT at once (see its docstring).
                "command": [sys.executable, "-m", "enertef_hub.idle_culler",
                            f"--timeout={_timeout}", f"--cull-every={_every}", "--concurrency=10"],
            }
        ])
        # The scopes the culler's README lists, nothing more.
        c.JupyterHub.load_roles.extend([  # noqa: F821
            {
                "name": "jupyterhub-idle-culler",
                "scopes": ["list:users", "read:users:activity", "read:servers", "delete:servers"],
                "services": ["jupyterhub-idle-culler"],
            }
        ])
        del _every
del _timeout
