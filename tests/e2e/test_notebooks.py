"""The example notebooks, MLflow UI and TensorBoard of a spawned server, through a real hub.

A fresh user signs up, is approved and gets a server (local spawner, seeded
``~/notebook-scripts``). Each example notebook then runs top to bottom in a kernel
of that server (Jupyter REST API + kernel websocket, as JupyterLab does), with no
edits; the runs are checked in the user's own schema and bucket. Finally Chromium,
logged in as the user, opens ``/user/<name>/mlflow/`` and ``/user/<name>/tensorboard/``
through the hub's proxy and sees the run and the curves.
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
import pytest
import requests
from playwright.sync_api import expect
from psycopg import sql

from tests.harness.browser import log_in
from tests.harness.forms import signup_and_approve
from tests.harness.hub import run_coroutine, server_environment, start_server
from tests.harness.names import unique_name
from tests.harness.notebooks import execute_notebook
from tests.harness.postgres import libpq_uri
from tests.harness.s3 import s3_client

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = sorted(p.name for p in (ROOT / "notebook-scripts").glob("*.ipynb"))
PASSWORD = "Notebook-e2e-passw0rd!"


@pytest.fixture(scope="module")
def user(hub):
    """A signed-up, approved user with a running server: name, server URL, a token for it, environment."""
    name = signup_and_approve(hub, unique_name("nbcarol"), PASSWORD)
    server_url = start_server(hub, name).rstrip("/") + "/"
    return {
        "name": name,
        "url": server_url,
        # The tests' service token carries access:servers, which is what a server's
        # REST API and kernels require (as for the user's own browser session).
        "token": hub.token,
        "env": server_environment(hub, name),
    }


def test_seeded_scripts_and_launcher_entries(user) -> None:
    headers = {"Authorization": f"token {user['token']}"}
    listing = requests.get(f"{user['url']}api/contents/notebook-scripts", headers=headers, timeout=30).json()
    names = {item["name"] for item in listing["content"]}
    assert set(NOTEBOOKS) | {"mlflow_group_utils.py", "tensorboard_logger.py", "requirements.txt"} <= names
    servers = requests.get(f"{user['url']}server-proxy/servers-info", headers=headers, timeout=30).json()["server_processes"]
    entries = {s["name"]: s["launcher_entry"] for s in servers}
    assert entries["mlflow"]["enabled"] and entries["mlflow"]["title"] == "MLflow"
    assert entries["tensorboard"]["enabled"] and entries["tensorboard"]["title"] == "TensorBoard"
    assert entries["mlflow"]["icon_url"] and entries["tensorboard"]["icon_url"]


@pytest.mark.parametrize("notebook", NOTEBOOKS)
def test_example_notebook_runs_in_the_server(user, notebook) -> None:
    errors = run_coroutine(execute_notebook(user["url"], user["token"], f"notebook-scripts/{notebook}"))
    assert not errors, "\n\n".join(errors)


def test_notebook_runs_are_in_the_user_store_and_bucket(user) -> None:
    env = user["env"]
    schema = urlsplit(env["MLFLOW_TRACKING_URI"]).username
    with psycopg.connect(libpq_uri(env["MLFLOW_TRACKING_URI"])) as conn:
        rows = conn.execute(
            sql.SQL("SELECT e.name, r.artifact_uri FROM {schema}.runs r JOIN {schema}.experiments e"
                    " USING (experiment_id) WHERE e.name IN ('01-getting-started', '02-digits')"
                    " AND r.status = 'FINISHED'").format(schema=sql.Identifier(schema))
        ).fetchall()
    assert {name for name, _ in rows} == {"01-getting-started", "02-digits"}
    bucket = env["ENERTEF_BUCKET"]
    first = next(uri for name, uri in rows if name == "01-getting-started")
    assert first.startswith(f"s3://{bucket}/mlflow/")
    s3 = s3_client(env)
    key = first.split(f"s3://{bucket}/", 1)[1] + "/notes/hello.txt"
    assert s3.get_object(Bucket=bucket, Key=key)["Body"].read().startswith(b"Hello from my first MLflow run")
    assert s3.get_object(Bucket=bucket, Key="datasets/cities.csv")["Body"].read().startswith(b"city,temperature")


def test_browser_sees_the_run_in_mlflow_and_the_curves_in_tensorboard(hub, user, page) -> None:
    name = user["name"]
    # Console errors while on the MLflow UI (404s of calls MLflow's page makes, ...).
    mlflow_errors = []
    page.on("console", lambda m: mlflow_errors.append(m.text) if m.type == "error" and "/mlflow/" in page.url else None)
    log_in(page, hub, name, PASSWORD, f"/user/{name}/mlflow/")
    page.wait_for_url(re.compile(rf".*/user/{name}/mlflow/.*"), timeout=120_000)
    expect(page.get_by_text("01-getting-started", exact=True).first).to_be_visible(timeout=90_000)
    env = user["env"]
    schema = urlsplit(env["MLFLOW_TRACKING_URI"]).username
    with psycopg.connect(libpq_uri(env["MLFLOW_TRACKING_URI"])) as conn:
        (experiment_id,) = conn.execute(
            sql.SQL("SELECT experiment_id FROM {}.experiments WHERE name = '01-getting-started'")
            .format(sql.Identifier(schema))
        ).fetchone()
    # The user's own origin (http://<name>.localhost:PORT/user/<name>/...).
    page.goto(f"{user['url']}mlflow/#/experiments/{experiment_id}/runs")
    expect(page.get_by_text("first-run").first).to_be_visible(timeout=60_000)
    assert not mlflow_errors, mlflow_errors

    page.goto(f"{user['url']}tensorboard/#timeseries")
    expect(page.get_by_text("accuracy/val").first).to_be_visible(timeout=90_000)
    # The same data the dashboard draws, fetched through the hub with the user's cookies:
    # one run (the notebook's TensorBoardLogger()) with both curves and the weights histogram.
    # (fetched by the page itself: Playwright's own request client cannot resolve *.localhost)
    fetch_json = "url => fetch(url, {credentials: 'same-origin'}).then(r => r.json())"
    tags = page.evaluate(fetch_json, f"{user['url']}tensorboard/data/plugin/scalars/tags")
    assert any({"loss/train", "accuracy/val"} <= set(run_tags) for run_tags in tags.values()), tags
    histograms = page.evaluate(fetch_json, f"{user['url']}tensorboard/data/plugin/histograms/tags")
    assert any("weights" in run_tags for run_tags in histograms.values()), histograms
