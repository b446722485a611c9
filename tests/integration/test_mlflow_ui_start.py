"""The MLflow UI's first visit through a real notebook server and jupyter-server-proxy.

A real ``jupyter server`` (with jupyter-server-proxy and our ``mlflow`` entry point)
runs with the environment of a provisioned user. Checked as JupyterLab and the
browser meet it:

- opening JupyterLab (its page, or the launcher tiles it asks for) starts the MLflow
  UI, once, before anyone clicks the tile; the click then reaches that process;
- without that warm-up, the first visit gets the "starting" page at once, and the UI
  once MLflow is loaded;
- the endpoints MLflow's page calls for features this server leaves out answer 200
  through the proxy (no 404 in the browser console).

Times are not asserted (benchmarks/bench_mlflow_ui_memory.py prints them).
"""

from __future__ import annotations

import asyncio
import json
import os
import time

import pytest
import requests

from enertef_hub.notebook.mlflow_ui import ABSENT_FEATURE_ANSWERS
from tests.harness.names import unique_name
from tests.harness.notebooks import NotebookServer
from tests.harness.workbench import provision_with_tables, purge


@pytest.fixture(scope="module")
def user_env(tmp_path_factory, services):
    """The environment of a provisioned user's server (hub-side secrets removed)."""
    name = unique_name("uistart")
    environment = asyncio.run(provision_with_tables(name)).environment
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ENERTEF_", "AWS_", "MLFLOW_", "PG", "JUPYTER"))}
    env.update(environment)
    env["HOME"] = str(tmp_path_factory.mktemp("home"))
    env["JUPYTERHUB_USER"] = name
    yield name, env
    asyncio.run(purge(name))


@pytest.fixture
def notebook_server(user_env, tmp_path):
    servers = []

    def start(**extra_env):
        name, env = user_env
        servers.append(NotebookServer(name, env, tmp_path, extra_env))
        return servers[-1]

    yield start
    for server in servers:
        server.stop()


@pytest.mark.parametrize("opening", ["server-proxy/servers-info", "lab"])
def test_opening_jupyterlab_starts_the_ui_before_the_click(notebook_server, opening) -> None:
    server = notebook_server()
    assert not server.ui_processes()  # nothing runs before JupyterLab opens
    assert server.get("api/contents").status_code == 200  # other calls start nothing
    time.sleep(0.5)
    assert not server.ui_processes()
    # JupyterLab's page, or the launcher tiles it asks for next.
    assert server.get(opening).status_code == 200
    deadline = time.monotonic() + 60
    while not server.ui_processes():
        assert time.monotonic() < deadline, "JupyterLab's launcher did not start the MLflow UI"
        time.sleep(0.2)
    started = server.ui_processes()
    tiles = server.get("server-proxy/servers-info")  # JupyterLab opened again: nothing new
    assert "mlflow" in [s["name"] for s in tiles.json()["server_processes"]]
    assert server.wait_until_ready() == {"state": "ready", "message": ""}
    page = server.get("mlflow/")
    assert page.status_code == 200 and b'id="root"' in page.content  # MLflow's own page, at once
    assert [p.pid for p in server.ui_processes()] == [p.pid for p in started]  # the click reused it
    assert "MLflow UI started as JupyterLab opened" in server.log.read_text()


def test_first_visit_without_warmup_shows_the_starting_page_then_the_ui(notebook_server) -> None:
    server = notebook_server(ENERTEF_MLFLOW_UI_WARMUP="0")
    server.get("server-proxy/servers-info")
    time.sleep(1)
    assert not server.ui_processes()  # warm-up off: started by the visit only
    first = server.get("mlflow/")
    # MLflow takes seconds to load: the visit gets the starting page meanwhile.
    assert first.status_code == 200 and "Starting your MLflow UI" in first.text, first.text[:300]
    assert first.headers["Cache-Control"] == "no-store"
    assert server.wait_until_ready() == {"state": "ready", "message": ""}
    page = server.get("mlflow/")
    assert page.status_code == 200 and b'id="root"' in page.content
    # What MLflow's page asks on every visit, for features this server leaves out.
    for path, expected in ABSENT_FEATURE_ANSWERS.items():
        answer = server.get("mlflow" + path)
        assert answer.status_code == 200 and answer.json() == expected, (path, answer.status_code)
    # And the store answers through the proxy.
    search = requests.post(server.url + "mlflow/ajax-api/2.0/mlflow/experiments/search", json={"max_results": 10},
                           headers={"Authorization": f"token {server.token}"}, timeout=60)  # fmt: skip
    assert search.status_code == 200 and "Default" in json.dumps(search.json())
