"""Memory and start-up time of one user's MLflow UI: ``mlflow server`` vs the light UI.

Provisions a throw-away user (``nbbench``) with the real Workbench, logs one run, then
starts, in turn, on loopback:

- ``mlflow server`` with its defaults (what a user would type);
- ``mlflow server --workers 1`` with ``MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false``;
- ``python -m enertef_hub.notebook.mlflow_ui`` (what the JupyterLab launcher starts);
- TensorBoard as the launcher starts it (``enertef_hub.notebook.tensorboard_ui``);

and for each waits until it answers, loads the UI page and searches experiments and
runs (so lazily imported code is counted), then sums RSS over the whole process tree.

Then the tile click as a user meets it: a real ``jupyter server`` with
jupyter-server-proxy and the user's environment, the light UI as the launcher's
``mlflow`` entry and ``mlflow server --workers 1`` (no jobs) as a second entry
(``mlflow-baseline``, under its own prefix). For each round a fresh server, and:

- baseline, click: ``GET mlflow-baseline/`` until it answers;
- light UI, click with no warm-up (``ENERTEF_MLFLOW_UI_WARMUP=0``): the first page is
  the "starting" page; the user's tab then polls and shows MLflow's page;
- light UI, JupyterLab opened ``--think`` seconds before the click (its page and its
  launcher tiles start the UI): what a person who looks for the tile gets.

"first page" is the first HTML answer to the click (the starting page counts: it is
what the user sees), "MLflow page" MLflow's own page, "experiments" the answer to the
page's first API call (``experiments/search``) issued then. Times are from the click,
over ``--rounds`` rounds (median). RSS is the UI's process tree after the page and a
run search, and again after a run's page (GraphQL and the artifact list, which loads
the S3 client) (and USS: its private memory, what it adds beyond shared libraries).
Figures are printed, never asserted. Run with the services up:

    source .local/services.env && .venv/bin/python -m benchmarks.bench_mlflow_ui_memory [--rounds 3] [--think 3] [--no-defaults]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import psutil
import requests

from tests.harness.notebooks import NotebookServer, unix_request
from tests.harness.workbench import provision_with_tables, purge

USER = "nbbench"
PREFIX = "/user/nbbench/mlflow"


def provision() -> dict[str, str]:
    return asyncio.run(provision_with_tables(USER)).environment


def deprovision() -> None:
    asyncio.run(purge(USER))


def user_env(environment: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ENERTEF_", "AWS_", "MLFLOW_"))}
    env.update(environment)
    return env


def tree_rss(proc: psutil.Process) -> tuple[int, int]:
    procs = [proc, *proc.children(recursive=True)]
    total = 0
    for p in procs:
        try:
            total += p.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total, len(procs)


def tree_uss(proc: psutil.Process) -> int:
    """Private memory (USS) of a process tree: what it adds to the machine beyond shared libraries' pages."""
    total = 0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            total += p.memory_full_info().uss
        except psutil.NoSuchProcess:
            pass
    return total


def get(url: str, data: bytes | None = None) -> bytes:
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"} if data else {})
    with urllib.request.urlopen(req, timeout=30) as resp:
        return resp.read()


def measure(name: str, cmd: list[str], env: dict[str, str], base: str) -> dict:
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    ps = psutil.Process(proc.pid)
    try:
        deadline = time.time() + 120
        while True:
            try:
                get(base + "/health")
                break
            except OSError:
                if proc.poll() is not None or time.time() > deadline:
                    raise RuntimeError(f"{name} did not start")
                time.sleep(0.2)
        ready = time.perf_counter() - started
        get(base + "/")
        get(base + "/ajax-api/2.0/mlflow/experiments/search", json.dumps({"max_results": 10}).encode())
        get(base + "/ajax-api/2.0/mlflow/runs/search", json.dumps({"experiment_ids": ["0", "1"]}).encode())
        time.sleep(3)  # let worker processes finish importing
        rss, count = tree_rss(ps)
        return {"variant": name, "ready_s": round(ready, 1), "processes": count, "rss_mb": round(rss / 2**20),
                "uss_mb": round(tree_uss(ps) / 2**20)}  # fmt: skip
    finally:
        try:
            procs = [ps, *ps.children(recursive=True)]
        except psutil.NoSuchProcess:
            procs = []
        for p in procs:
            try:
                p.terminate()
            except psutil.NoSuchProcess:
                pass
        _, alive = psutil.wait_procs(procs, timeout=15)
        for p in alive:
            try:
                p.kill()
            except psutil.NoSuchProcess:
                pass
        proc.wait()


def measure_tensorboard(env: dict[str, str]) -> dict:
    """TensorBoard as the launcher starts it (unix socket, one process): ready time and memory."""
    from enertef_hub.notebook.proxies import make_tensorboard_command

    folder = Path(tempfile.mkdtemp(prefix="nbbench-tb-"))
    sock = str(folder / "tb.sock")
    env = dict(env, ENERTEF_TENSORBOARD_LOGDIR=str(folder / "logs"))
    prefix = f"/user/{USER}/tensorboard"
    started = time.perf_counter()
    old = os.environ.get("ENERTEF_TENSORBOARD_LOGDIR")
    os.environ["ENERTEF_TENSORBOARD_LOGDIR"] = env["ENERTEF_TENSORBOARD_LOGDIR"]
    try:
        cmd = make_tensorboard_command(f"/user/{USER}/", sock)
    finally:
        if old is None:
            del os.environ["ENERTEF_TENSORBOARD_LOGDIR"]
        else:
            os.environ["ENERTEF_TENSORBOARD_LOGDIR"] = old
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    ps = psutil.Process(proc.pid)
    try:
        deadline = time.time() + 120
        while True:
            try:
                if unix_request(sock, "GET", prefix + "/")[0] == 200:
                    break
            except OSError:
                pass
            if proc.poll() is not None or time.time() > deadline:
                raise RuntimeError("TensorBoard did not start")
            time.sleep(0.05)
        ready = time.perf_counter() - started
        for path in ("/data/plugins_listing", "/data/runs", "/data/plugin/scalars/tags"):
            unix_request(sock, "GET", prefix + path)
        time.sleep(3)
        rss, count = tree_rss(ps)
        return {"variant": "TensorBoard (launcher's, unix socket)", "ready_s": round(ready, 1), "processes": count,
                "rss_mb": round(rss / 2**20), "uss_mb": round(tree_uss(ps) / 2**20)}  # fmt: skip
    finally:
        proc.terminate()
        proc.wait(30)


BASELINE_CONFIG = """
c = get_config()  # noqa
import sys
c.ServerProxy.servers = {
    "mlflow-baseline": {
        "command": [sys.executable, "-m", "mlflow", "server", "--workers", "1", "--host", "127.0.0.1",
                    "--port", "{port}", "--static-prefix", "{base_url}mlflow-baseline",
                    "--backend-store-uri", %(backend)r, "--default-artifact-root", %(root)r],
        "environment": {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
        "absolute_url": True,
        "timeout": 120,
    }
}
"""


def process_tree_rss(server: NotebookServer, marker: str) -> int:
    """RSS (bytes) of the server's child processes started for *marker*, with their descendants."""
    total = 0
    for proc in server.ui_processes(marker):
        if proc.ppid() != server.proc.pid:
            continue  # counted with its parent
        total += tree_rss(proc)[0]
    return total


def process_tree_uss(server: NotebookServer, marker: str) -> int:
    """USS (bytes) of the same processes as :func:`process_tree_rss`."""
    return sum(tree_uss(p) for p in server.ui_processes(marker) if p.ppid() == server.proc.pid)


def click(server: NotebookServer, name: str, marker: str, think: float | None) -> dict:
    """Time a tile click on entry *name*: first page, MLflow page, experiments listed; RSS after."""
    if think is not None:
        opened = time.perf_counter()
        server.get("lab")  # JupyterLab's page: the browser opens JupyterLab ...
        server.get("server-proxy/servers-info")  # ... which asks for its launcher tiles
        time.sleep(max(0.0, think - (time.perf_counter() - opened)))  # ... and a person finds the tile
    started = time.perf_counter()
    first = server.get(f"{name}/", timeout=180)
    first_page = time.perf_counter() - started
    if "Starting your MLflow UI" in first.text:  # the tab polls, then reloads
        while server.get(f"{name}/enertef-ui-status").json()["state"] == "starting":
            time.sleep(0.3)
        first = server.get(f"{name}/")
    mlflow_page = time.perf_counter() - started
    assert first.status_code == 200 and 'id="root"' in first.text, first.text[:300]
    headers = {"Authorization": f"token {server.token}"}
    api = f"{server.url}{name}/ajax-api/2.0/mlflow"
    requests.post(f"{api}/experiments/search", json={"max_results": 25}, headers=headers, timeout=120).raise_for_status()
    experiments = time.perf_counter() - started
    runs = requests.post(f"{api}/runs/search", json={"experiment_ids": ["0"]}, headers=headers, timeout=120)
    runs.raise_for_status()
    time.sleep(2)
    memory = {"rss": process_tree_rss(server, marker), "uss": process_tree_uss(server, marker)}
    # A run's page: MLflow's page asks GraphQL for the run and lists its artifacts
    # (which loads the S3 client, boto3): what a user who opens a run adds.
    run_id = runs.json()["runs"][0]["info"]["run_id"]
    query = {"operationName": "MlflowGetRun", "variables": {"data": {"runId": run_id}},
             "query": "query MlflowGetRun($data: MlflowGetRunInput!) { mlflowGetRun(input: $data) { run { info { runUuid } } } }"}  # fmt: skip
    requests.post(f"{server.url}{name}/graphql", json=query, headers=headers, timeout=120).raise_for_status()
    requests.get(f"{api}/artifacts/list", params={"run_id": run_id}, headers=headers, timeout=120).raise_for_status()
    time.sleep(1)
    return {"first": first_page, "page": mlflow_page, "experiments": experiments, **memory,
            "run_rss": process_tree_rss(server, marker)}  # fmt: skip


def tile_clicks(env: dict[str, str], environment: dict[str, str], rounds: int, think: float) -> dict[str, list[dict]]:
    config = Path(tempfile.mkdtemp(prefix="nbbench-jupyter-")) / "baseline_config.py"
    config.write_text(BASELINE_CONFIG % {"backend": environment["ENERTEF_MLFLOW_BACKEND_STORE_URI"],
                                         "root": environment["ENERTEF_MLFLOW_ARTIFACT_ROOT"]})  # fmt: skip
    env = dict(env, JUPYTERHUB_USER=USER)
    results: dict[str, list[dict]] = {"baseline": [], "cold": [], "warm": []}
    for _ in range(rounds):
        root = Path(tempfile.mkdtemp(prefix="nbbench-root-"))
        server = NotebookServer(USER, env, root, {"ENERTEF_MLFLOW_UI_WARMUP": "0"}, args=(f"--config={config}",))
        try:
            results["baseline"].append(click(server, "mlflow-baseline", "mlflow server", None))
            results["cold"].append(click(server, "mlflow", "enertef_hub.notebook.mlflow_ui", None))
        finally:
            server.stop()
        server = NotebookServer(USER, env, root)
        try:
            results["warm"].append(click(server, "mlflow", "enertef_hub.notebook.mlflow_ui", think))
        finally:
            server.stop()
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="tile-click rounds (fresh notebook server each)")
    parser.add_argument("--think", type=float, default=3.0,
                        help="seconds from opening JupyterLab to the click (page load, launcher drawn, tile found)")
    parser.add_argument("--no-defaults", action="store_true", help="skip `mlflow server` with its defaults (~3 GB)")
    args = parser.parse_args()
    environment = provision()
    env = user_env(environment)
    workdir = tempfile.mkdtemp(prefix="nbbench-")
    try:
        subprocess.run(
            [sys.executable, "-c", "import mlflow\nwith mlflow.start_run(): mlflow.log_metric('m', 1.0)"],
            env=env, cwd=workdir, check=True,
        )  # fmt: skip
        backend, root = environment["ENERTEF_MLFLOW_BACKEND_STORE_URI"], environment["ENERTEF_MLFLOW_ARTIFACT_ROOT"]
        mlflow_cli = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", backend, "--default-artifact-root", root, "--host", "127.0.0.1"]  # fmt: skip
        light_env = dict(env, MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false")
        rows = []
        if not args.no_defaults:
            rows.append(measure("mlflow server (defaults)", [*mlflow_cli, "--port", "18110"], env, "http://127.0.0.1:18110"))
        rows += [
            measure(
                "mlflow server --workers 1, no jobs",
                [*mlflow_cli, "--port", "18111", "--workers", "1"],
                light_env,
                "http://127.0.0.1:18111",
            ),
            measure(
                "enertef light UI (1 process)",
                [sys.executable, "-m", "enertef_hub.notebook.mlflow_ui", "--prefix", PREFIX, "--port", "18112"],
                env,
                "http://127.0.0.1:18112" + PREFIX,
            ),
        ]
        rows.append(measure_tensorboard(env))
        clicks = tile_clicks(env, environment, args.rounds, args.think)
    finally:
        deprovision()
    print(f"{'variant':40} {'ready s':>8} {'procs':>6} {'RSS MB':>8} {'USS MB':>8}")
    for row in rows:
        print(f"{row['variant']:40} {row['ready_s']:>8} {row['processes']:>6} {row['rss_mb']:>8} {row['uss_mb']:>8}")
    print()
    print(f"Tile click through jupyter-server-proxy, median of {args.rounds} (s from the click; RSS of the UI's processes)")
    print(f"{'variant':48} {'first page':>10} {'MLflow page':>11} {'experiments':>11} {'RSS MB':>7} {'USS MB':>7}"
          f" {'RSS MB after a run page':>23}")
    labels = {
        "baseline": "mlflow server --workers 1, no jobs",
        "cold": "enertef light UI, click with no warm-up",
        "warm": f"enertef light UI, JupyterLab opened {args.think:g} s before",
    }
    for key, label in labels.items():
        got = clicks[key]
        med = {k: statistics.median(r[k] for r in got) for k in ("first", "page", "experiments", "rss", "uss", "run_rss")}
        print(f"{label:48} {med['first']:>10.2f} {med['page']:>11.2f} {med['experiments']:>11.2f}"
              f" {med['rss'] / 2**20:>7.0f} {med['uss'] / 2**20:>7.0f} {med['run_rss'] / 2**20:>23.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
