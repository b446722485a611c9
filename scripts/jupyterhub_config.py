"""JupyterHub configuration of the single-machine workbench (``scripts/workbench.sh``).

Thin on purpose, as The Littlest JupyterHub's: it sets what differs on one machine,
then loads every snippet of ``jupyterhub_config.d/`` exactly as the Kubernetes hub
does, and finally ``$ENERTEF_STATE_DIR/jupyterhub_config.local.py`` if an admin
wrote one (the place for site settings: admins, ports, limits).
"""

import glob
import os

c = get_config()  # noqa: F821 (provided by JupyterHub)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STATE = os.environ.get("ENERTEF_STATE_DIR", os.path.join(ROOT, ".local"))
os.makedirs(os.path.join(STATE, "hub"), mode=0o700, exist_ok=True)

# Each user's server gets an origin of its own (<name>.<host>), so a page a user
# serves cannot act with a visitor's hub session (enertef_hub.origins explains it).
# http://localhost:PORT needs no DNS; another host needs wildcard DNS (and TLS).
from enertef_hub.origins import apply_user_origins, loopback_bind_url  # noqa: E402

HUB_URL = os.environ.get("ENERTEF_HUB_URL", "http://localhost:8000")
apply_user_origins(c.JupyterHub, HUB_URL)
c.JupyterHub.bind_url = os.environ.get("ENERTEF_HUB_BIND_URL") or loopback_bind_url(HUB_URL)
c.JupyterHub.db_url = f"sqlite:///{STATE}/hub/jupyterhub.sqlite"
c.JupyterHub.cookie_secret_file = f"{STATE}/hub/jupyterhub_cookie_secret"
c.ConfigurableHTTPProxy.pid_file = f"{STATE}/hub/proxy.pid"

c.JupyterHub.authenticator_class = "enertef"
c.Authenticator.admin_users = {
    name.strip().lower() for name in os.environ.get("ENERTEF_ADMIN_USERS", "labadmin").split(",") if name.strip()
}

c.JupyterHub.spawner_class = "enertef-local"
c.Spawner.default_url = "/lab"
c.Spawner.start_timeout = 120
if os.geteuid() != 0:
    # Not root: every server runs as this OS user (development only, no isolation).
    c.EnerTEFLocalSpawner.run_as_hub_user = True
    c.EnerTEFLocalSpawner.home_root = os.path.join(STATE, "homes")

for snippet in sorted(glob.glob(os.path.join(ROOT, "jupyterhub_config.d", "*.py"))):
    load_subconfig(snippet)  # noqa: F821

_local = os.path.join(STATE, "jupyterhub_config.local.py")
if os.path.exists(_local):
    load_subconfig(_local)  # noqa: F821

# The spawn page shows the provisioning progress messages only when JupyterHub does
# not give up waiting for them: its default (slow_spawn_timeout 10 s) redirects to the
# bare "Spawning server..." page first. The chart and the e2e hub set 0 as well. Merged
# last, so tornado settings from jupyterhub_config.d or the local file are kept, and
# a slow_spawn_timeout set there wins.
from traitlets.config import LazyConfigValue  # noqa: E402

_tornado = c.JupyterHub.get("tornado_settings", {})
if isinstance(_tornado, LazyConfigValue):  # built with .update() / item assignment
    _tornado = _tornado.get_value({})
c.JupyterHub.tornado_settings = {"slow_spawn_timeout": 0, **_tornado}
