"""Inside a user's server, for real: MLflow store and bucket, MLflow UI and TensorBoard under the proxy prefix.

A user ``nbalice`` is provisioned with the real Workbench (PostgreSQL + MinIO from
``scripts/services.sh start``); everything else runs in subprocesses that get exactly
the environment a spawned server gets, as the notebook kernel would.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import re
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import psycopg
from psycopg import sql
import pytest

from enertef_hub.notebook.proxies import setup_mlflow_ui, setup_tensorboard
from enertef_hub.provisioners.seeding import seed_home
from tests.harness.notebooks import unix_request
from tests.harness.s3 import s3_client
from tests.harness.workbench import provision_with_tables, purge

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = ROOT / "notebook-scripts"
USER = "nbalice"
HUB_HOST = "hub.example.org"  # what jupyter-server-proxy forwards as Host
RESOURCES: dict[str, str] = {}


@pytest.fixture(scope="module")
def server_env(tmp_path_factory) -> dict[str, str]:
    """The environment of nbalice's server: hub-side secrets removed, the user's added."""
    result = asyncio.run(provision_with_tables(USER))
    environment = result.environment
    # A purged name comes back as a new incarnation (user-nbalice-2...): use the real names.
    RESOURCES["bucket"], RESOURCES["schema"] = result.resources.bucket, result.resources.schema
    home = tmp_path_factory.mktemp("home-nbalice")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ENERTEF_", "AWS_", "MLFLOW_", "PG"))}
    env.update(environment)
    env["HOME"] = str(home)
    env["ENERTEF_TENSORBOARD_LOGDIR"] = str(home / "tensorboard-logs")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SCRIPTS), os.environ.get("PYTHONPATH")]))
    yield env
    asyncio.run(purge(USER))


def run_python(code: str, env: dict[str, str], cwd: Path) -> str:
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], env=env, cwd=cwd, capture_output=True, text=True, timeout=180
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


@pytest.fixture(scope="module")
def logged_run(server_env, tmp_path_factory) -> dict:
    """One run in a brand-new experiment, logged by a plain mlflow.start_run()."""
    cwd = tmp_path_factory.mktemp("kernel-cwd")
    experiment = f"nb-exp-{uuid.uuid4().hex[:8]}"
    out = run_python(
        f"""
        import json, mlflow
        mlflow.set_experiment({experiment!r})
        with mlflow.start_run() as run:
            mlflow.log_param("alpha", 0.5)
            mlflow.log_metric("loss", 0.25)
            mlflow.log_text("hello from nbalice", "notes/hello.txt")
        print(json.dumps({{"run_id": run.info.run_id, "artifact_uri": run.info.artifact_uri,
                           "experiment_id": run.info.experiment_id}}))
        """,
        server_env,
        cwd,
    )
    info = json.loads(out.strip().splitlines()[-1])
    info.update(experiment=experiment, cwd=cwd)
    return info


def test_mlflow_uses_the_workbench_store_for_postgresql_uris(server_env, tmp_path) -> None:
    out = run_python(
        """
        import os
        from mlflow.tracking._tracking_service.utils import _tracking_store_registry
        print(_tracking_store_registry.get_store_builder(os.environ["MLFLOW_TRACKING_URI"]).__module__)
        """,
        server_env,
        tmp_path,
    )
    assert out.strip() == "enertef_hub.notebook.mlflow_store", (
        "MLflow looks tracking stores up by database type ('postgresql'), so the"
        " mlflow.tracking_store entry point must be named 'postgresql'"
    )


def test_start_run_lands_in_user_schema_and_bucket(server_env, logged_run) -> None:
    bucket, schema = RESOURCES["bucket"], RESOURCES["schema"]
    assert logged_run["artifact_uri"].startswith(f"s3://{bucket}/mlflow/{logged_run['experiment_id']}/")
    assert not (logged_run["cwd"] / "mlruns").exists(), "artifacts went to local ./mlruns"

    uri = server_env["MLFLOW_TRACKING_URI"].replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(uri) as conn:
        row = conn.execute(
            sql.SQL("SELECT r.status, e.name FROM {schema}.runs r JOIN {schema}.experiments e"
                    " USING (experiment_id) WHERE r.run_uuid = %s").format(schema=sql.Identifier(schema)),
            (logged_run["run_id"],),
        ).fetchone()
    assert row == ("FINISHED", logged_run["experiment"])

    s3 = s3_client(server_env)
    key = logged_run["artifact_uri"].split(f"s3://{bucket}/", 1)[1] + "/notes/hello.txt"
    assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == b"hello from nbalice"


# -- MLflow UI -------------------------------------------------------------------


def request(sock: str, method: str, path: str, body: dict | None = None, origin: str | None = None):
    return unix_request(sock, method, path, body, host=HUB_HOST, headers={"Origin": origin} if origin else None)


@pytest.fixture(scope="module")
def mlflow_ui(server_env, tmp_path_factory):
    sock_dir = tmp_path_factory.mktemp("ui-sock")
    sock = str(sock_dir / "mlflow.sock")
    config = setup_mlflow_ui()
    assert config["unix_socket"] is True and config["absolute_url"] is True
    cmd = config["command"](base_url=f"/user/{USER}/", unix_socket=sock)
    proc = subprocess.Popen(cmd, env=server_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    prefix = f"/user/{USER}/mlflow"
    deadline = time.monotonic() + 90
    while True:
        try:
            if request(sock, "GET", prefix + "/health")[0] == 200:
                break
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"MLflow UI did not start:\n{proc.stdout.read()[-3000:]}")
        time.sleep(0.3)
    yield sock, prefix
    proc.terminate()
    proc.wait(timeout=20)


def test_mlflow_ui_page_is_served_under_the_prefix(mlflow_ui) -> None:
    sock, prefix = mlflow_ui
    status, page = request(sock, "GET", prefix + "/")
    assert status == 200 and b'id="root"' in page
    # The page loads its bundle with relative URLs, which resolve under the prefix.
    script = page.split(b'src="', 1)[1].split(b'"', 1)[0].decode()
    assert not script.startswith("/")
    assert request(sock, "GET", f"{prefix}/{script}")[0] == 200
    assert request(sock, "GET", "/health")[0] == 404
    # The model-training view is the default (not GenAI's empty Traces page): the page
    # loads the workbench's defaults before MLflow's bundle.
    assert page.index(b'<script src="enertef-ui-defaults.js">') > page.index(b'src="' + script.encode())
    status, defaults = request(sock, "GET", f"{prefix}/enertef-ui-defaults.js")
    assert status == 200 and b'"mlflow.workflowType_v1", JSON.stringify("machine_learning")' in defaults


def test_mlflow_ui_api_shows_the_run_and_its_artifact(mlflow_ui, logged_run) -> None:
    sock, prefix = mlflow_ui
    same_origin = f"https://{HUB_HOST}"
    status, body = request(sock, "POST", prefix + "/ajax-api/2.0/mlflow/experiments/search", {"max_results": 100}, same_origin)
    assert status == 200, body
    assert logged_run["experiment"] in [e["name"] for e in json.loads(body)["experiments"]]

    status, body = request(
        sock, "POST", prefix + "/ajax-api/2.0/mlflow/runs/search", {"experiment_ids": [logged_run["experiment_id"]]}, same_origin
    )
    assert status == 200, body
    assert [r["info"]["run_id"] for r in json.loads(body)["runs"]] == [logged_run["run_id"]]

    status, body = request(sock, "GET", f"{prefix}/get-artifact?path=notes/hello.txt&run_uuid={logged_run['run_id']}")
    assert (status, body) == (200, b"hello from nbalice")


def test_mlflow_ui_refuses_cross_site_changes(mlflow_ui) -> None:
    sock, prefix = mlflow_ui
    status, _ = request(
        sock, "POST", prefix + "/ajax-api/2.0/mlflow/experiments/create", {"name": "csrf"}, "https://evil.example"
    )
    assert status == 403


# -- TensorBoard -----------------------------------------------------------------


def test_tensorboard_under_prefix_sees_logger_curves(server_env, tmp_path, tmp_path_factory, monkeypatch) -> None:
    run_python(
        """
        from tensorboard_logger import TensorBoardLogger
        with TensorBoardLogger("trial1") as tb:
            for step in range(5):
                tb.scalar("loss", 1.0 / (step + 1), step)
            tb.histogram("weights", [0.1, 0.2, 0.2, 0.9], 4)
            tb.hparams({"lr": 0.1, "optimizer": "sgd"}, {"final/loss": 0.2})
        """,
        server_env,
        tmp_path,
    )
    sock = str(tmp_path_factory.mktemp("tb-sock") / "tb.sock")
    config = setup_tensorboard()
    assert config["unix_socket"] is True and config["absolute_url"] is True
    # jupyter-server-proxy calls the command builder inside the user's server process.
    monkeypatch.setenv("ENERTEF_TENSORBOARD_LOGDIR", server_env["ENERTEF_TENSORBOARD_LOGDIR"])
    cmd = config["command"](base_url=f"/user/{USER}/", unix_socket=sock)
    proc = subprocess.Popen(cmd, env=server_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    base = f"/user/{USER}/tensorboard"

    def get(path: str) -> bytes:
        status, body = request(sock, "GET", base + path)
        if status != 200:
            raise http.client.HTTPException(f"{path}: {status}")
        return body

    try:
        deadline = time.monotonic() + 90
        tags = {}
        while "trial1" not in tags:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"TensorBoard did not show the run:\n{proc.stdout.read()[-3000:]}")
            time.sleep(0.5)
            try:
                tags = json.loads(get("/data/plugin/scalars/tags"))
            except (OSError, http.client.HTTPException, ValueError):
                continue
        assert "loss" in tags["trial1"]
        points = json.loads(get("/data/plugin/scalars/scalars?run=trial1&tag=loss"))
        assert [(step, round(value, 3)) for _, step, value in points] == [(s, round(1 / (s + 1), 3)) for s in range(5)]
        assert "weights" in json.loads(get("/data/plugin/histograms/tags"))["trial1"]
        index = get("/")
        assert b"<tb-webapp>" in index
        # Every font the page asks for is under the prefix, and is served there.
        fonts = re.findall(rb"url\((/[^)]*\.woff2)\)", index)
        assert fonts and all(f.startswith(base.encode() + b"/font-roboto/") for f in fonts)
        assert get(fonts[0].decode()[len(base):])
    finally:
        proc.terminate()
        proc.wait(timeout=20)


# -- example notebooks -----------------------------------------------------------


@pytest.mark.parametrize(
    "notebook", sorted(p.name for p in SCRIPTS.glob("*.ipynb")), ids=lambda name: name.split("-")[0]
)
def test_example_notebook_runs_top_to_bottom_in_a_fresh_home(server_env, notebook, tmp_path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    seed_home(SCRIPTS, home)
    env = dict(server_env, HOME=str(home), ENERTEF_TENSORBOARD_LOGDIR=str(home / "tensorboard-logs"))
    # The notebook must find the helpers next to itself, as in JupyterLab.
    env["PYTHONPATH"] = os.environ.get("PYTHONPATH", "")
    out = run_python(
        f"""
        import json, nbformat
        from nbclient import NotebookClient
        nb = nbformat.read({notebook!r}, as_version=4)
        NotebookClient(nb, timeout=120, kernel_name="python3", resources={{"metadata": {{"path": "."}}}}).execute()
        print(json.dumps([o.get("text", "") for c in nb.cells for o in c.get("outputs", []) if o.get("name") == "stderr"]))
        """,
        env,
        home / "notebook-scripts",
    )
    assert not (home / "notebook-scripts" / "mlruns").exists()
    # Jupyter shows stderr in red: MLflow's informational lines must not land there.
    stderr = json.loads(out.strip().splitlines()[-1])
    assert not [text for text in stderr if " INFO " in text], stderr


# -- teams -----------------------------------------------------------------------

TEAM_USER, TEAM = "nbbob", "nbteam"


def test_use_team_logs_to_the_team_store_and_bucket_then_back(tmp_path) -> None:
    result = asyncio.run(provision_with_tables(TEAM_USER, teams=[TEAM]))
    try:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("ENERTEF_", "AWS_", "MLFLOW_", "PG"))}
        env.update(result.environment, HOME=str(tmp_path), PYTHONPATH=str(SCRIPTS))
        assert env["ENERTEF_TEAMS"] == TEAM
        out = run_python(
            f"""
            import json, mlflow
            from mlflow_group_utils import use_team, use_personal, whoami
            use_team({TEAM!r})
            me = whoami()
            mlflow.set_experiment("shared-exp")
            with mlflow.start_run() as team_run:
                mlflow.log_text("team file", "t.txt")
            use_personal()
            mlflow.set_experiment("own-exp")
            with mlflow.start_run() as own_run:
                mlflow.log_text("own file", "o.txt")
            print(json.dumps({{"me": me, "team": [team_run.info.run_id, team_run.info.artifact_uri],
                               "own": [own_run.info.run_id, own_run.info.artifact_uri]}}))
            """,
            env,
            tmp_path,
        )
        info = json.loads(out.strip().splitlines()[-1])
        assert info["me"]["store"] == f"team {TEAM}" and info["me"]["schema"] == f"t_{TEAM}"
        assert info["team"][1].startswith(f"s3://team-{TEAM}/mlflow/")
        assert info["own"][1].startswith(f"s3://{result.resources.bucket}/mlflow/")
        uri = env["MLFLOW_TRACKING_URI"].replace("postgresql+psycopg://", "postgresql://")
        with psycopg.connect(uri) as conn:
            # Team runs belong to the team role, so other members can keep writing them.
            owner = conn.execute(
                "SELECT pg_get_userbyid(c.relowner) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
                " WHERE n.nspname = %s AND c.relname = 'runs'", (f"t_{TEAM}",)
            ).fetchone()
            assert owner == (f"t_{TEAM}",)
            schema = result.resources.schema
            assert conn.execute(sql.SQL("SELECT count(*) FROM {}.runs WHERE run_uuid = %s").format(sql.Identifier(schema)),
                                (info["own"][0],)).fetchone() == (1,)
        # The team's runs are read through her team login (her own role is no member of the team's).
        team_uri = uri.replace(f"//{result.resources.role}:", f"//m_{TEAM}_{result.resources.role[2:]}:", 1)
        with psycopg.connect(team_uri, options=f"-c role=t_{TEAM}") as conn:
            team = sql.Identifier(f"t_{TEAM}")
            assert conn.execute(sql.SQL("SELECT count(*) FROM {}.runs WHERE run_uuid = %s").format(team),
                                (info["team"][0],)).fetchone() == (1,)
    finally:
        asyncio.run(purge(TEAM_USER))
