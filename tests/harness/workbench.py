"""The hub's ``Workbench`` from outside a hub: configured for a pair of services, provisioning
a user as a first spawn does, and a store as an older MLflow release left it.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from traitlets.config import Config

from enertef_hub.workbench import Workbench

if TYPE_CHECKING:
    from enertef_hub.workbench import ProvisionResult


def services_config(services: Mapping[str, str] | None = None, timeout: float | None = None) -> Config:
    """Config that points a Workbench at the services in ``services`` (``ENERTEF_*`` of scripts/services.sh).

    Without ``services`` the config is empty and every setting comes from the
    environment, as in the hub. ``timeout`` (seconds) bounds each connection to
    PostgreSQL and each call to MinIO, for tests that stop them.
    """
    config = Config()
    if services is not None:
        config.PostgresProvisioner.admin_url = services["ENERTEF_POSTGRES_ADMIN_URL"]
        config.MinioProvisioner.endpoint = services["ENERTEF_MINIO_ENDPOINT"]
        config.MinioProvisioner.access_key = services["ENERTEF_MINIO_ACCESS_KEY"]
        config.MinioProvisioner.secret_key = services["ENERTEF_MINIO_SECRET_KEY"]
        config.Workbench.secret_key = services["ENERTEF_SECRET_KEY"]
    if timeout is not None:
        config.PostgresProvisioner.connect_timeout = timeout
        config.MinioProvisioner.timeout = timeout
    return config


@contextlib.asynccontextmanager
async def open_workbench(services: Mapping[str, str] | None = None, timeout: float | None = None
                         ) -> AsyncIterator[Workbench]:
    """A Workbench of its own (a new hub process: nothing remembered), closed after the block."""
    workbench = Workbench(config=services_config(services, timeout))
    try:
        yield workbench
    finally:
        await workbench.close()


async def provision_with_tables(username: str, teams: list[str] | None = None) -> ProvisionResult:
    """Provision ``username`` as a first spawn does, MLflow's tables included (services from the environment)."""
    async with open_workbench() as workbench:
        result = await workbench.provision(username, teams=teams)
        await workbench.mlflow.ensure(result)
        return result


async def purge(username: str) -> None:
    """Delete ``username`` and all their data (services from the environment)."""
    async with open_workbench() as workbench:
        await workbench.deprovision(username, purge=True)


# ------------------------------------------------------------ an older MLflow's store

#: An MLflow release well behind the pinned one (its schema head is 0584bdc529eb).
OLD_MLFLOW = "2.22.0"
CACHE = Path(os.environ.get("ENERTEF_CACHE_DIR", "/var/cache/enertef-hub"))

#: Run by the older MLflow: its tables, an experiment and a run with a param and a metric.
MAKE_OLD_STORE = """
    import os, json, mlflow
    from mlflow.entities import Metric, Param
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore
    # psycopg2, the driver of that era: MLflow 2.x's string ids do not compare with
    # integer columns under psycopg 3's typed parameters.
    uri = os.environ["MLFLOW_TRACKING_URI"].replace("postgresql+psycopg://", "postgresql+psycopg2://")
    store = SqlAlchemyStore(uri, os.environ["ENERTEF_MLFLOW_ARTIFACT_ROOT"])
    exp = store.create_experiment("made-by-old-mlflow")
    run = store.create_run(exp, user_id="old", start_time=0, tags=[], run_name="old-run")
    store.log_param(run.info.run_id, Param("alpha", "0.5"))
    store.log_metric(run.info.run_id, Metric("loss", 0.25, 0, 0))
    print(json.dumps({"run_id": run.info.run_id, "mlflow": mlflow.__version__}))
"""


def old_mlflow_python() -> str:
    """Python of a virtual environment with the older MLflow (made once, cached outside the clone
    in ``$ENERTEF_CACHE_DIR``, default ``/var/cache/enertef-hub``, so reruns do not reinstall it)."""
    venv = CACHE / f"mlflow-skinny-{OLD_MLFLOW}"
    python = venv / "bin" / "python"
    if not (venv / ".complete-psycopg2").exists():
        venv.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
        proc = subprocess.run(
            [str(python), "-m", "pip", "install", "-q", f"mlflow-skinny=={OLD_MLFLOW}", "sqlalchemy<2.1",
             "alembic", "psycopg2-binary"], capture_output=True, text=True, timeout=900)
        assert proc.returncode == 0, f"could not install mlflow-skinny {OLD_MLFLOW}:\n{proc.stderr[-3000:]}"
        (venv / ".complete-psycopg2").touch()
    return str(python)


def make_old_store(old_python: str, environment: dict[str, str]) -> str:
    """Create a store with the older MLflow, as the store's role; return its run's id."""
    env = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/tmp"), **environment}
    proc = subprocess.run([old_python, "-c", textwrap.dedent(MAKE_OLD_STORE)], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    made = json.loads(proc.stdout.strip().splitlines()[-1])
    assert made["mlflow"] == OLD_MLFLOW
    return made["run_id"]
