"""JupyterHub configuration of the end-to-end test hub (``jupyterhub -f hub_config.py``).

Started by tests.harness.hub.running_hub, which passes everything that changes per run
through ``ENERTEF_E2E_*`` environment variables; service credentials come from the
usual ``ENERTEF_*`` variables (scripts/services.sh). It is the production wiring
(EnerTEFAuthenticator + EnerTEFLocalSpawner, real PostgreSQL and MinIO) with the
test-only differences marked below.
"""

import os
import socket

c = get_config()  # noqa: F821  (provided by JupyterHub when it loads this file)

state_dir = os.environ["ENERTEF_E2E_DIR"]
public_port = int(os.environ["ENERTEF_E2E_PORT"])

# -- network: loopback only, ports handed out by the harness (18200-18599) -----------
c.JupyterHub.ip = "127.0.0.1"
c.JupyterHub.port = public_port
c.JupyterHub.hub_ip = "127.0.0.1"
c.JupyterHub.hub_port = public_port + 1
c.ConfigurableHTTPProxy.api_url = f"http://127.0.0.1:{public_port + 2}"
c.ConfigurableHTTPProxy.should_start = True
# Production-like: every user's server on an origin of its own, <name>.localhost:PORT
# (browsers resolve *.localhost to loopback; the harness maps it for Python clients).
from enertef_hub.origins import apply_user_origins  # noqa: E402

if not os.environ.get("ENERTEF_E2E_SHARED_ORIGIN"):
    apply_user_origins(c.JupyterHub, f"http://localhost:{public_port}")

# -- state of this run only ----------------------------------------------------------------
c.JupyterHub.db_url = f"sqlite:///{state_dir}/jupyterhub.sqlite"
c.JupyterHub.cookie_secret_file = f"{state_dir}/jupyterhub_cookie_secret"
c.JupyterHub.pid_file = f"{state_dir}/jupyterhub.pid"
c.JupyterHub.cleanup_servers = True
c.JupyterHub.log_level = "DEBUG" if os.environ.get("ENERTEF_E2E_DEBUG") else "INFO"

# -- the package under test ----------------------------------------------------------------
c.JupyterHub.authenticator_class = "enertef"
c.Authenticator.admin_users = {os.environ["ENERTEF_E2E_ADMIN"]}
# Short login throttle so the hostile-input tests wait seconds, not minutes.
c.EnerTEFAuthenticator.login_delay = 2
c.EnerTEFAuthenticator.login_max_delay = 8
# Re-check approval every 2 s (default 5 min) so a withdrawn approval is testable.
c.Authenticator.auth_refresh_age = 2

c.JupyterHub.spawner_class = "enertef-local"
# Test-only: run every user's server as the hub's own OS user, with homes under the
# temporary directory. ENERTEF_E2E_SYSTEM_USERS=1 gives the production behaviour
# instead: a system account jupyter-<name> per user (the hub must run as root).
c.EnerTEFLocalSpawner.run_as_hub_user = not os.environ.get("ENERTEF_E2E_SYSTEM_USERS")
c.EnerTEFLocalSpawner.home_root = f"{state_dir}/homes"
c.Spawner.start_timeout = 180
c.Spawner.http_timeout = 120
# Answer a spawn request at once (202) so tests can follow the progress events.
c.JupyterHub.tornado_settings = {**c.JupyterHub.get("tornado_settings", {}), "slow_spawn_timeout": 0}
c.Spawner.default_url = "/lab"

_first, _last = (int(p) for p in os.environ["ENERTEF_E2E_USER_PORTS"].split("-"))
_user_ports = range(_first, _last + 1)


_handed_out = {}  # user name -> port; a server binds its port only seconds later


def _pick_user_port(spawner):
    # Test-only: keep users' servers inside the harness's port range, so parallel
    # runs and other engineers' processes on this machine are never hit.
    _handed_out.pop(spawner.user.name, None)
    for port in _user_ports:
        if port in _handed_out.values():
            continue
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT is no user
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        spawner.port = _handed_out[spawner.user.name] = port
        return
    raise RuntimeError(f"no free port for a user server in {_user_ports}")


def _release_user_port(spawner):
    # A stopped server's port may go to the next spawn (runs of many users, e.g. the
    # spawn benchmark, would otherwise run out of the range).
    _handed_out.pop(spawner.user.name, None)


c.Spawner.pre_spawn_hook = _pick_user_port
c.Spawner.post_stop_hook = _release_user_port

# -- the tests' own API access ---------------------------------------------------------------
c.JupyterHub.services = [{"name": "e2e-tests", "api_token": os.environ["ENERTEF_E2E_TOKEN"]}]
# Admin rights over users and servers (not the built-in "admin" role: assigning it
# alongside Authenticator.admin_users makes JupyterHub warn).
c.JupyterHub.load_roles = [
    {
        "name": "e2e-tests",
        "scopes": ["admin:users", "admin:servers", "access:servers", "list:users", "admin:groups", "read:tokens"],
        "services": ["e2e-tests"],
    }
]

# -- config snippets a test adds (os.pathsep-separated paths), loaded last ----------------
for _snippet in filter(None, os.environ.get("ENERTEF_E2E_EXTRA_CONFIG", "").split(os.pathsep)):
    load_subconfig(_snippet)  # noqa: F821
