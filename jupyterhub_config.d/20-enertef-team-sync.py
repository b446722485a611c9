"""Keep team memberships in step with JupyterHub's groups: a hub-managed service.

Group edits made through the admin panel or the REST API are synced at once by the
hub itself (``enertef_hub.api_handlers``), and a spawn syncs the spawning user. This
service is the safety net, for everyone every ``ENERTEF_TEAM_SYNC_INTERVAL`` seconds
(default 60): changes made elsewhere (``hub.loadGroups``, the hub's database edited by
hand) and syncs that failed (a service was down) take effect within that interval.
Set the interval to 0 to disable the service.
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
