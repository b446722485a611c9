"""The single-machine mode stops idle servers (jupyterhub-idle-culler as a hub service), as the chart does."""

from __future__ import annotations

import importlib.util
import tempfile
import time
from pathlib import Path

import pytest
import yaml

from tests.harness import REPO
from tests.harness.forms import signup_and_approve
from tests.harness.hub import running_hub, start_server
from tests.harness.names import unique_name


SNIPPET = REPO / "jupyterhub_config.d" / "30-enertef-idle-culler.py"


def snippet_constants() -> dict:
    namespace: dict = {}
    source = SNIPPET.read_text().split("_timeout =", 1)[0]  # the constants, without wiring a hub
    exec(compile(source, str(SNIPPET), "exec"), namespace)
    return namespace


def test_the_timeout_is_the_charts():
    values = yaml.safe_load((REPO / "chart-values" / "jupyterhub.yaml").read_text())
    assert snippet_constants()["CULL_TIMEOUT"] == values["cull"]["timeout"]
    assert snippet_constants()["CULL_EVERY"] == values["cull"].get("every", 600)  # z2jh's default


@pytest.fixture(scope="module")
def culling_hub(services_env):
    """A hub with the culler snippet loaded and a timeout of seconds, not an hour."""
    assert importlib.util.find_spec("jupyterhub_idle_culler"), "jupyterhub-idle-culler is not installed"
    state_dir = Path(tempfile.mkdtemp(prefix="enertef-e2e-cull-", dir="/var/tmp"))
    with running_hub(services_env, state_dir, {"ENERTEF_E2E_EXTRA_CONFIG": str(SNIPPET),
                                               "ENERTEF_CULL_TIMEOUT": "20", "ENERTEF_CULL_EVERY": "5"}) as hub:
        yield hub


def test_the_culler_stops_an_idle_server(culling_hub):
    hub = culling_hub
    name = signup_and_approve(hub, unique_name("idle"), "correct horse battery 6")
    start_server(hub, name)
    assert hub.api("GET", f"/users/{name}").json()["servers"], "the server did not start"

    deadline = time.monotonic() + 120
    while hub.api("GET", f"/users/{name}").json()["servers"]:
        assert time.monotonic() < deadline, hub.log_tail()
        time.sleep(2)

    assert "jupyterhub-idle-culler" in hub.log_text()
    # Stopped, not deleted: the user and their data stay.
    assert hub.api("GET", f"/users/{name}").status_code == 200
