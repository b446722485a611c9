"""What a newcomer sees in her MLflow UI, in Chromium, through a real hub.

A fresh user signs up, is approved and gets a server. A run is logged in a kernel of
that server (as from a notebook), then Chromium, logged in as her, opens
``/user/<name>/mlflow/`` on her own origin. She must land on the model-training view
(the runs table, not GenAI's empty Traces page), the run must say it was created by
her hub username (not the server's operating-system account), and the parts that
cannot work here (the Assistant, "Start Demo", AI Gateway) must not be shown. Her first
visit shows a page saying the UI is starting (nothing started it before), and no call
MLflow's page makes ends in an error in the browser console. Another newcomer who opens
JupyterLab finds the UI already started when she clicks the launcher's MLflow tile.

With ``ENERTEF_E2E_SCREENSHOTS=<dir>`` the run page is saved as ``mlflow-run.png``
(the README's picture, docs/images/).
"""

from __future__ import annotations

import os
import pwd
import re
from urllib.parse import urlsplit

import psycopg
import pytest
import requests
from playwright.sync_api import expect

from tests.harness.browser import log_in, screenshot
from tests.harness.forms import signup_and_approve
from tests.harness.hub import run_coroutine, server_environment, server_pid, start_server
from tests.harness.names import unique_name
from tests.harness.notebooks import execute_notebook
from tests.harness.postgres import libpq_uri

PASSWORD = "Mlflow-view-e2e-passw0rd!"
EXPERIMENT = "ui-view-check"
RUN_NAME = "newcomer-run"

#: A notebook cell as a newcomer writes it: no user tag, no tracking URI (the server has them).
LOG_A_RUN = f"""
import mlflow
mlflow.set_experiment({EXPERIMENT!r})
with mlflow.start_run(run_name={RUN_NAME!r}):
    mlflow.log_param("alpha", 0.5)
    for step, value in enumerate([0.61, 0.74, 0.82]):
        mlflow.log_metric("accuracy", value, step=step)
"""


@pytest.fixture(scope="module")
def user(hub):
    """A signed-up, approved user with a running server and one run logged from a kernel."""
    name = signup_and_approve(hub, unique_name("mlview"), PASSWORD)
    server_url = start_server(hub, name).rstrip("/") + "/"
    headers = {"Authorization": f"token {hub.token}"}
    notebook = {
        "type": "notebook", "format": "json",
        "content": {"nbformat": 4, "nbformat_minor": 5, "metadata": {},
                    "cells": [{"cell_type": "code", "id": "log-a-run", "metadata": {}, "outputs": [],
                               "execution_count": None, "source": LOG_A_RUN}]},
    }  # fmt: skip
    requests.put(f"{server_url}api/contents/log-a-run.ipynb", headers=headers, json=notebook, timeout=30).raise_for_status()
    errors = run_coroutine(execute_notebook(server_url, hub.token, "log-a-run.ipynb"))
    assert not errors, "\n\n".join(errors)
    env = server_environment(hub, name)
    uri = libpq_uri(env["MLFLOW_TRACKING_URI"])
    schema = urlsplit(env["MLFLOW_TRACKING_URI"]).username
    with psycopg.connect(uri) as conn:
        experiment_id, run_id = conn.execute(
            psycopg.sql.SQL("SELECT e.experiment_id, r.run_uuid FROM {s}.runs r JOIN {s}.experiments e"
                            " USING (experiment_id) WHERE e.name = %s AND r.name = %s")
            .format(s=psycopg.sql.Identifier(schema)), (EXPERIMENT, RUN_NAME)
        ).fetchone()  # fmt: skip
    os_account = pwd.getpwuid(os.stat(f"/proc/{server_pid(hub, name)}").st_uid).pw_name
    return {"name": name, "url": server_url, "experiment_id": experiment_id, "run_id": run_id, "os_account": os_account}


def assert_genai_parts_hidden(page):
    """The Assistant (button and panel), Start Demo and AI Gateway are not visible."""
    for text in ("MLflow Assistant", "Start Demo", "AI Gateway"):
        found = page.get_by_text(text)
        assert not any(found.nth(i).is_visible() for i in range(found.count())), f"{text!r} is shown"
    assert not page.locator("[data-assistant-ui]").filter(visible=True).count()


#: Records each page's title in the tab's sessionStorage (kept across the starting
#: page's reload), so the test can tell which pages the user saw.
RECORD_TITLES = """
window.addEventListener("DOMContentLoaded", () => {
  try {
    const seen = JSON.parse(sessionStorage.getItem("e2e-titles") || "[]");
    seen.push(document.title);
    sessionStorage.setItem("e2e-titles", JSON.stringify(seen));
  } catch (e) {}
});
"""


def test_first_visit_says_the_ui_is_starting_and_the_console_stays_clean(hub, user, page) -> None:
    """Her first visit: a page says the UI is starting, then MLflow's UI; no errors in the console."""
    name = user["name"]
    page.add_init_script(RECORD_TITLES)
    errors = []  # (page URL, message) of console errors and failed requests while on the MLflow UI
    page.on("console", lambda msg: errors.append((page.url, msg.text)) if msg.type == "error" else None)
    page.on("response", lambda r: errors.append((page.url, f"{r.status} {r.url}")) if r.status >= 400 else None)
    # (a request the test's own navigation cuts short is aborted, not failed)
    page.on("requestfailed", lambda r: errors.append((page.url, f"{r.failure} {r.url}")) if "ABORTED" not in (r.failure or "") else None)
    log_in(page, hub, name, PASSWORD, f"/user/{name}/mlflow/")
    page.wait_for_url(re.compile(rf"^{re.escape(user['url'])}mlflow/.*"), timeout=120_000)
    # The server never opened JupyterLab, so nothing started the UI before this visit:
    # MLflow takes seconds to load, and the tab says so meanwhile, then shows the UI.
    expect(page.get_by_text(EXPERIMENT, exact=True).first).to_be_visible(timeout=120_000)
    titles = page.evaluate("JSON.parse(sessionStorage.getItem('e2e-titles') || '[]')")
    assert titles[0] == "Starting MLflow UI…" and titles[-1] == "MLflow", titles
    # Her experiment's runs and her run's page: every call MLflow's page makes is answered.
    page.goto(f"{user['url']}mlflow/#/experiments/{user['experiment_id']}/runs")
    expect(page.get_by_text(RUN_NAME).first).to_be_visible(timeout=60_000)
    page.goto(f"{user['url']}mlflow/#/experiments/{user['experiment_id']}/runs/{user['run_id']}")
    expect(page.get_by_text("Created by", exact=True).first).to_be_visible(timeout=60_000)
    page.wait_for_timeout(2000)  # late calls (model metrics, artifacts) have their say
    on_mlflow = [(url, text) for url, text in errors if "/mlflow/" in url]
    assert not on_mlflow, on_mlflow


def test_newcomer_lands_on_her_run_created_by_her_hub_name(hub, user, page) -> None:
    name = user["name"]
    page.set_viewport_size({"width": 1400, "height": 860})
    log_in(page, hub, name, PASSWORD, f"/user/{name}/mlflow/")
    # The UI on her own origin (http://<name>.localhost:PORT/user/<name>/mlflow/).
    page.wait_for_url(re.compile(rf"^{re.escape(user['url'])}mlflow/.*"), timeout=120_000)
    expect(page.get_by_text(EXPERIMENT, exact=True).first).to_be_visible(timeout=90_000)
    expect(page.get_by_text("Recent Experiments")).to_be_visible()
    assert_genai_parts_hidden(page)

    # Opening her experiment lands on the runs table (model training), with her run.
    page.get_by_text(EXPERIMENT, exact=True).first.click()
    expect(page.get_by_text(RUN_NAME).first).to_be_visible(timeout=60_000)
    assert "/traces" not in page.url, page.url
    assert page.evaluate("localStorage.getItem('mlflow.workflowType_v1')") == '"machine_learning"'
    assert_genai_parts_hidden(page)

    # The run page says who created it: the hub user, not the OS account of the server.
    page.goto(f"{user['url']}mlflow/#/experiments/{user['experiment_id']}/runs/{user['run_id']}")
    created_by = page.get_by_text("Created by", exact=True).first
    expect(created_by).to_be_visible(timeout=60_000)
    # Label and value share a small key-value block: look only a few levels up.
    block = created_by.locator("xpath=ancestor::*[position() <= 3]").filter(has_text=name)
    expect(block.first).to_be_visible()
    if user["os_account"] != name:
        assert not page.get_by_text(user["os_account"], exact=True).count(), "the OS account is shown"
    expect(page.get_by_text("accuracy").first).to_be_visible()
    assert_genai_parts_hidden(page)
    screenshot(page, "mlflow-run")


def test_jupyterlab_starts_the_ui_before_the_tile_is_clicked(hub, page) -> None:
    """Opening JupyterLab starts the MLflow UI; the launcher's MLflow tile then opens it ready."""
    import time

    import psutil

    name = signup_and_approve(hub, unique_name("mltile"), PASSWORD)
    server_url = start_server(hub, name).rstrip("/") + "/"
    server = psutil.Process(server_pid(hub, name))

    def ui_processes():
        return [p for p in server.children(recursive=True) if "enertef_hub.notebook.mlflow_ui" in " ".join(p.cmdline())]

    assert not ui_processes()  # a running server that never opened JupyterLab has none
    log_in(page, hub, name, PASSWORD, f"/user/{name}/lab")
    tile = page.locator(".jp-LauncherCard").filter(has_text="MLflow")
    expect(tile).to_be_visible(timeout=120_000)
    deadline = time.monotonic() + 30
    while not ui_processes():  # JupyterLab's page and tiles started it, before any click
        assert time.monotonic() < deadline, "opening JupyterLab did not start the MLflow UI"
        time.sleep(0.2)
    page.wait_for_timeout(3000)  # a person finds the tile
    with page.context.expect_page() as opened:
        clicked = time.monotonic()
        tile.click()
    tab = opened.value
    tab.wait_for_url(re.compile(rf"^{re.escape(server_url)}mlflow/.*"), timeout=60_000, wait_until="commit")
    committed = time.monotonic() - clicked
    tab.wait_for_function("document.title === 'MLflow'", timeout=90_000)
    mlflow_page = time.monotonic() - clicked
    expect(tab.get_by_text("Default", exact=True).first).to_be_visible(timeout=90_000)
    # Figures for people (the benchmark prints them too); not asserted.
    print(f"tile click: page {committed:.2f} s, MLflow's page {mlflow_page:.2f} s, "
          f"experiments drawn {time.monotonic() - clicked:.2f} s")
    assert len(ui_processes()) == 1  # the click reused the process JupyterLab started
