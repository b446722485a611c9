"""The example notebooks, MLflow UI and TensorBoard of a spawned server, through a real hub.

A fresh user signs up, is approved and gets a server (local spawner, seeded
``~/notebook-scripts``). Each example notebook then runs top to bottom in a kernel
of that server (Jupyter REST API + kernel websocket, as JupyterLab does), with no
edits; the runs are checked in the user's own schema and bucket. Finally Chromium,
logged in as the user, opens ``/user/<name>/mlflow/`` and ``/user/<name>/tensorboard/``
through the hub's proxy and sees the run and the curves.
"""

from __future__ import annotations

import asyncio
import json
import re
import secrets
import uuid
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import boto3
import nbformat
import psycopg
from psycopg import sql
import pytest
import requests
from hubharness import run_coroutine, server_environment, signup_and_approve, start_server
from playwright.sync_api import expect

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = sorted(p.name for p in (ROOT / "notebook-scripts").glob("*.ipynb"))
PASSWORD = "Notebook-e2e-passw0rd!"


@pytest.fixture(scope="module")
def user(hub):
    """A signed-up, approved user with a running server: name, server URL, a token for it, environment."""
    name = signup_and_approve(hub, "nbcarol" + secrets.token_hex(3), PASSWORD)
    server_url = start_server(hub, name).rstrip("/") + "/"
    return {
        "name": name,
        "url": server_url,
        # The tests' service token carries access:servers, which is what a server's
        # REST API and kernels require (as for the user's own browser session).
        "token": hub.token,
        "env": server_environment(hub, name),
    }


async def execute_notebook(server_url: str, token: str, path: str) -> list[str]:
    """Run every code cell of the server-side notebook *path* in a new kernel; return error texts."""
    from tornado.httpclient import HTTPRequest
    from tornado.websocket import websocket_connect

    headers = {"Authorization": f"token {token}"}
    model = requests.get(f"{server_url}api/contents/{path}", headers=headers, timeout=30)
    model.raise_for_status()
    notebook = nbformat.from_dict(model.json()["content"])
    session = requests.post(
        f"{server_url}api/sessions",
        headers=headers,
        json={"path": path, "name": Path(path).name, "type": "notebook", "kernel": {"name": "python3"}},
        timeout=60,
    )
    session.raise_for_status()
    session_id, kernel_id = session.json()["id"], session.json()["kernel"]["id"]
    ws_url = "ws" + server_url[len("http"):] + f"api/kernels/{kernel_id}/channels"
    errors: list[str] = []
    conn = await websocket_connect(HTTPRequest(ws_url, headers=headers), max_message_size=64 << 20)
    try:
        client_session = uuid.uuid4().hex
        for cell in notebook.cells:
            if cell.cell_type != "code" or not cell.source.strip():
                continue
            msg_id = uuid.uuid4().hex
            await conn.write_message(json.dumps({
                "header": {"msg_id": msg_id, "username": "e2e", "session": client_session,
                           "msg_type": "execute_request", "version": "5.3",
                           "date": datetime.now(timezone.utc).isoformat()},
                "parent_header": {}, "metadata": {}, "channel": "shell", "buffers": [],
                "content": {"code": cell.source, "silent": False, "store_history": True,
                            "user_expressions": {}, "allow_stdin": False, "stop_on_error": True},
            }))  # fmt: skip
            replied = idle = False
            while not (replied and idle):
                raw = await asyncio.wait_for(conn.read_message(), timeout=180)
                assert raw is not None, "kernel websocket closed"
                msg = json.loads(raw)
                if msg.get("parent_header", {}).get("msg_id") != msg_id:
                    continue
                kind = msg["msg_type"]
                if kind == "error":
                    errors.append(f"{path}: {msg['content']['ename']}: {msg['content']['evalue']}\n{cell.source}")
                elif kind == "execute_reply":
                    replied = True
                elif kind == "status" and msg["content"]["execution_state"] == "idle":
                    idle = True
            if errors:
                break
    finally:
        conn.close()
        requests.delete(f"{server_url}api/sessions/{session_id}", headers=headers, timeout=30)
    return errors


def libpq_uri(sqlalchemy_uri: str) -> str:
    return urlunsplit(urlsplit(sqlalchemy_uri)._replace(scheme="postgresql"))


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
    s3 = boto3.client(
        "s3", endpoint_url=env["AWS_ENDPOINT_URL"], aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"], region_name=env["AWS_DEFAULT_REGION"],
    )  # fmt: skip
    key = first.split(f"s3://{bucket}/", 1)[1] + "/notes/hello.txt"
    assert s3.get_object(Bucket=bucket, Key=key)["Body"].read().startswith(b"Hello from my first MLflow run")
    assert s3.get_object(Bucket=bucket, Key="datasets/cities.csv")["Body"].read().startswith(b"city,temperature")


def test_browser_sees_the_run_in_mlflow_and_the_curves_in_tensorboard(hub, user, page) -> None:
    name = user["name"]
    # Console errors while on the MLflow UI (404s of calls MLflow's page makes, ...).
    mlflow_errors = []
    page.on("console", lambda m: mlflow_errors.append(m.text) if m.type == "error" and "/mlflow/" in page.url else None)
    page.goto(f"{hub.url}/hub/login?next=/user/{name}/mlflow/")
    page.fill("#username_input", name)
    page.fill("#password_input", PASSWORD)
    page.click("#login_submit")
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
