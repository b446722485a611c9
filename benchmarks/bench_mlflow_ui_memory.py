"""Memory and start-up time of one user's MLflow UI: ``mlflow server`` vs the light UI.

Provisions a throw-away user (``nbbench``) with the real Workbench, logs one run, then
starts, in turn, on loopback:

- ``mlflow server`` with its defaults (what a user would type);
- ``mlflow server --workers 1`` with ``MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false``;
- ``python -m enertef_hub.notebook.mlflow_ui`` (what the JupyterLab launcher starts);

and for each waits until it answers, loads the UI page and searches experiments and
runs (so lazily imported code is counted), then sums RSS over the whole process tree.
Figures are printed, never asserted. Run with the services up:

    source .local/services.env && .venv/bin/python benchmarks/bench_mlflow_ui_memory.py
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request

import psutil

USER = "nbbench"
PREFIX = "/user/nbbench/mlflow"


def provision() -> dict[str, str]:
    from traitlets.config import Config

    from enertef_hub.workbench import Workbench

    async def run():
        wb = Workbench.instance(config=Config())
        try:
            result = await wb.provision(USER)
            await wb.ensure_mlflow_tables(result)
            return result.environment
        finally:
            await wb.close()

    return asyncio.run(run())


def deprovision() -> None:
    from traitlets.config import Config

    from enertef_hub.workbench import Workbench

    async def run():
        Workbench.clear_instance()
        wb = Workbench.instance(config=Config())
        try:
            await wb.deprovision(USER, purge=True)
        finally:
            await wb.close()

    asyncio.run(run())


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
        return {"variant": name, "ready_s": round(ready, 1), "processes": count, "rss_mb": round(rss / 2**20)}
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


def main() -> int:
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
        rows = [
            measure("mlflow server (defaults)", [*mlflow_cli, "--port", "18110"], env, "http://127.0.0.1:18110"),
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
    finally:
        deprovision()
    print(f"{'variant':40} {'ready s':>8} {'procs':>6} {'RSS MB':>8}")
    for row in rows:
        print(f"{row['variant']:40} {row['ready_s']:>8} {row['processes']:>6} {row['rss_mb']:>8}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
