"""Keep team memberships in step with JupyterHub's groups: a hub-managed service.

JupyterHub has no hook for group edits in the admin panel, so membership is synced
at each spawn (for the spawning user) and by this service every
``ENERTEF_TEAM_SYNC_INTERVAL`` seconds (default 60) for everyone: a member removed
from a group loses database and storage access within that interval. Set the
interval to 0 to disable the service.
"""

import os
import sys

_interval = os.environ.get("ENERTEF_TEAM_SYNC_INTERVAL", "60")
if float(_interval) > 0:
    # extend(): a snippet loaded with load_subconfig gets a Config of its own, and
    # extend() adds to the hub's list at the merge (assigning would replace it).
    c.JupyterHub.services.extend([  # noqa: F821
        {
            "name": "enertef-team-sync",
            "command": [sys.executable, "-m", "enertef_hub.cli", "sync", "--loop", _interval],
            # The service administers PostgreSQL and MinIO like the hub does; it runs
            # beside the hub, never in a user's server.
            # (The admin's bootstrap password is the hub's alone.)
            "environment": {
                k: v for k, v in os.environ.items() if k.startswith("ENERTEF_") and k != "ENERTEF_HUB_ADMIN_PASSWORD"
            },
        }
    ])
    c.JupyterHub.load_roles.extend([  # noqa: F821
        {"name": "enertef-team-sync", "scopes": ["list:groups", "read:groups"], "services": ["enertef-team-sync"]}
    ])
del _interval
