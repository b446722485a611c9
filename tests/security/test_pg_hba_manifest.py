"""The Kubernetes PostgreSQL manifest's pg_hba.conf, run by a real PostgreSQL 16.

A private cluster (own data directory and port; the shared one is never touched)
starts with the manifest's ``hba_file``, as the StatefulSet does. A user's role,
member of the users' group as the hub makes it, reaches the MLflow database and
nothing else; the superuser and the hub's admin role reach every database.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import tempfile
from pathlib import Path

import psycopg
import pytest
import yaml

from tests.harness.services import free_port

MANIFEST = Path(__file__).resolve().parents[2] / "chart-values" / "manifests" / "postgresql.yaml"
PG_BIN = Path(os.environ.get("ENERTEF_PG_BIN") or subprocess.run(
    [str(MANIFEST.parents[2] / "scripts" / "install-postgres.sh")], capture_output=True, text=True,
    check=True).stdout.strip())


def manifest_hba() -> tuple[str, str]:
    """The ``pg_hba.conf`` of the manifest's ConfigMap and the ``hba_file`` path the server is given."""
    docs = [d for d in yaml.safe_load_all(MANIFEST.read_text()) if d]
    (config_map,) = [d for d in docs if d["kind"] == "ConfigMap"]
    (statefulset,) = [d for d in docs if d["kind"] == "StatefulSet"]
    args = statefulset["spec"]["template"]["spec"]["containers"][0]["args"]
    (hba_file,) = [a.split("=", 1)[1] for a in args if a.startswith("hba_file=")]
    return config_map["data"]["pg_hba.conf"], hba_file


@pytest.fixture
def cluster():
    if not (PG_BIN / "initdb").exists():
        pytest.fail(f"PostgreSQL 16 is not installed ({PG_BIN}/initdb): run scripts/bootstrap.sh")
    hba, hba_path = manifest_hba()
    assert hba_path.endswith("/pg_hba.conf")
    root = Path(tempfile.mkdtemp(prefix="enertef-hba-", dir="/var/tmp"))
    data, hba_file = root / "data", root / "pg_hba.conf"
    password = secrets.token_hex(12)
    (root / "pw").write_text(password + "\n")
    hba_file.write_text(hba)
    run_as = []
    if os.geteuid() == 0:  # initdb refuses root
        shutil.chown(root, "postgres")
        for path in (root / "pw", hba_file):
            shutil.chown(path, "postgres")
        run_as = ["runuser", "-u", "postgres", "--"]
    port = free_port()
    subprocess.run([*run_as, str(PG_BIN / "initdb"), "-D", str(data), "-U", "postgres", f"--pwfile={root / 'pw'}",
                    "--auth=scram-sha-256", "-E", "UTF8"], check=True, capture_output=True, cwd="/")
    subprocess.run([*run_as, str(PG_BIN / "pg_ctl"), "-D", str(data), "-l", str(root / "log"), "-w", "start", "-o",
                    f"-c hba_file={hba_file} -p {port} -c listen_addresses=127.0.0.1 -k {root}"],
                   check=True, capture_output=True, cwd="/")
    try:
        yield port, password
    finally:
        subprocess.run([*run_as, str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
                       capture_output=True, cwd="/")
        shutil.rmtree(root, ignore_errors=True)


def url(user: str, password: str, port: int, db: str) -> str:
    return f"postgresql://{user}:{password}@127.0.0.1:{port}/{db}"


def test_users_reach_only_the_mlflow_database(cluster):
    port, password = cluster
    with psycopg.connect(url("postgres", password, port, "postgres"), autocommit=True) as su:
        # What the manifest's init script and the hub make.
        su.execute(f"CREATE ROLE enertef_admin LOGIN CREATEROLE PASSWORD '{password}'")
        su.execute("CREATE DATABASE mlflow OWNER enertef_admin")
        su.execute("CREATE ROLE enertef_users NOLOGIN")
        su.execute(f"CREATE ROLE u_mallory LOGIN PASSWORD '{password}' IN ROLE enertef_users")
    psycopg.connect(url("u_mallory", password, port, "mlflow")).close()
    for db in ("postgres", "template1"):
        with pytest.raises(psycopg.OperationalError, match="pg_hba.conf rejects"):
            psycopg.connect(url("u_mallory", password, port, db))
    for admin in ("postgres", "enertef_admin"):
        for db in ("postgres", "mlflow"):
            psycopg.connect(url(admin, password, port, db)).close()
