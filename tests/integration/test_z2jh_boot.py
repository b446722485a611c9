"""A real hub boots with the config zero-to-jupyterhub would build from our chart values.

The hub pod's jupyterhub_config.py is the chart's; we have no cluster, so a config
file here applies the same steps (tests/z2jh_emulation.py: the chart's own settings,
``hub.config`` from chart-values/jupyterhub.yaml, ``jupyterhub_config.d/*.py`` sorted,
``hub.extraConfig``) and starts a real ``jupyterhub`` with configurable-http-proxy,
a kubeconfig for a cluster that does not exist (https://127.0.0.1:1) and the real
PostgreSQL/MinIO of the integration suite behind the hub's ENERTEF_* variables.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(TESTS))
import z2jh_emulation  # noqa: E402

REPO = z2jh_emulation.REPO
# This suite's ports (18000-18099).
PUBLIC_PORT, HUB_PORT, PROXY_API_PORT = 18060, 18061, 18062
BASE = f"http://127.0.0.1:{PUBLIC_PORT}"

KUBECONFIG = """\
apiVersion: v1
kind: Config
clusters:
  - name: nowhere
    cluster: {server: "https://127.0.0.1:1", insecure-skip-tls-verify: true}
users:
  - name: nobody
    user: {token: not-a-real-token}
contexts:
  - name: nowhere
    context: {cluster: nowhere, user: nobody, namespace: enertef}
current-context: nowhere
"""

CONFIG = """\
# What z2jh's jupyterhub_config.py does in the hub pod, on this machine.
import sys
sys.path.insert(0, {tests!r})
import z2jh_emulation as z2jh

values = z2jh.load_values()

# The chart's own settings that differ on a test machine (ports, database, proxy):
# z2jh sets these before hub.config too, so hub.config can still override them.
c.JupyterHub.bind_url = "http://127.0.0.1:{public}"
c.JupyterHub.hub_bind_url = "http://127.0.0.1:{hub}"
c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:{proxy_api}"
c.ConfigurableHTTPProxy.pid_file = {tmp!r} + "/proxy.pid"
c.JupyterHub.db_url = "sqlite:///" + {tmp!r} + "/jupyterhub.sqlite"
c.JupyterHub.cookie_secret_file = {tmp!r} + "/cookie_secret"
# As hub.services would declare it, with a role to read the hub's info.
c.JupyterHub.services = [{{"name": "boot-check", "api_token": {token!r}}}]
c.JupyterHub.load_roles = [{{"name": "boot-check", "scopes": ["read:hub", "list:users"],
                             "services": ["boot-check"]}}]

z2jh.apply_chart_defaults(c, values)
z2jh.apply_hub_config(c, values)
for name in z2jh.exec_config_d(c):
    print(f"Loading /usr/local/etc/jupyterhub/jupyterhub_config.d config: {{name}}")
z2jh.exec_extra_config(c, values)
"""


def get(path: str, token: str | None = None) -> tuple[int, str]:
    request = urllib.request.Request(BASE + path)
    if token:
        request.add_header("Authorization", f"token {token}")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


@pytest.fixture(scope="module")
def hub(tmp_path_factory, services):
    """A running hub configured as z2jh would configure it; yields (api token, log path)."""
    jupyterhub = Path(sys.executable).with_name("jupyterhub")
    assert jupyterhub.exists(), f"jupyterhub is not installed next to {sys.executable}"
    assert shutil.which("configurable-http-proxy"), \
        "configurable-http-proxy is missing: npm install -g configurable-http-proxy"
    tmp = tmp_path_factory.mktemp("z2jh-hub")
    token = secrets.token_hex(16)
    (tmp / "kubeconfig").write_text(KUBECONFIG)
    config = tmp / "jupyterhub_config.py"
    config.write_text(CONFIG.format(tests=str(TESTS), tmp=str(tmp), token=token, public=PUBLIC_PORT,
                                    hub=HUB_PORT, proxy_api=PROXY_API_PORT))
    env = {**os.environ, **services, "KUBECONFIG": str(tmp / "kubeconfig"),
           "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '/usr/bin:/bin')}",
           "CONFIGPROXY_AUTH_TOKEN": secrets.token_hex(16)}
    log_path = tmp / "hub.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen([str(jupyterhub), "-f", str(config)], cwd=tmp, env=env,
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 90
        while True:
            if proc.poll() is not None:
                pytest.fail(f"the hub exited with {proc.returncode}:\n{log_path.read_text()[-4000:]}")
            try:
                if get("/hub/api")[0] == 200:
                    break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"the hub did not answer /hub/api within 90 s:\n{log_path.read_text()[-4000:]}")
            time.sleep(0.5)
        yield token, log_path
    finally:
        # Our own hub (and the proxy it started) only: its process group.
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        except ProcessLookupError:
            pass


def test_hub_api_answers(hub):
    status, body = get("/hub/api")
    assert status == 200
    assert "version" in json.loads(body)


def test_our_authenticator_and_spawner_are_in_effect(hub):
    token, _log = hub
    status, body = get("/hub/api/info", token)
    assert status == 200, body
    info = json.loads(body)
    assert info["authenticator"]["class"] == "enertef_hub.authenticator.EnerTEFAuthenticator"
    assert info["spawner"]["class"] == "enertef_hub.kubespawner.EnerTEFKubeSpawner"


def test_config_snippets_were_loaded_as_z2jh_loads_them(hub):
    _token, log = hub
    assert "Loading /usr/local/etc/jupyterhub/jupyterhub_config.d config: 10-enertef.py" in log.read_text()


def test_admin_from_the_values_is_known_to_the_hub(hub):
    token, _log = hub
    status, body = get("/hub/api/users", token)
    assert status == 200, body
    admins = {u["name"] for u in json.loads(body) if u["admin"]}
    assert admins == set(z2jh_emulation.load_values()["hub"]["config"]["Authenticator"]["admin_users"])


def test_sign_up_and_login_pages_are_served(hub):
    """NativeAuthenticator's pages, wired by our authenticator (admins approve sign-ups)."""
    status, body = get("/hub/login")
    assert status == 200
    assert "signup" in body.lower()
    status, body = get("/hub/signup")
    assert status == 200
    assert "password" in body.lower()


def test_hub_log_has_no_errors(hub):
    _token, log = hub
    text = log.read_text()
    assert "Traceback" not in text, text[-4000:]
    # The hub never printed an admin secret it was given.
    for name in ("ENERTEF_MINIO_SECRET_KEY", "ENERTEF_SECRET_KEY"):
        value = os.environ.get(name)
        if value:
            assert value not in text
