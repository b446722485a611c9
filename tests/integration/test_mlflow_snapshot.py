"""A store made by replaying MLflow's recorded table creation is the store MLflow makes.

Real PostgreSQL and real MLflow (3.17.2, this venv's): one user's store gets its tables
from MLflow itself (``python -m enertef_hub.mlflow_tables``, as the user's role), another's
from the replay, and their catalogs (tables, columns, defaults, constraints, indexes,
sequences, owners) must be equal; then MLflow logs a run into the replayed store.
"""

from __future__ import annotations

import sys

import pytest
from psycopg import sql

from enertef_hub import mlflow_snapshot
from enertef_hub.mlflow_stores import MlflowStores
from tests.harness.names import unique_name
from tests.harness.postgres import acting_as
from tests.harness.services import run_as_user

CATALOG = """
SELECT 'column', c.relname || '.' || a.attname,
       format_type(a.atttypid, a.atttypmod) || ' null=' || (NOT a.attnotnull)::text
         || ' default=' || coalesce(pg_get_expr(d.adbin, d.adrelid), '')
  FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
  LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
 WHERE n.nspname = %(schema)s AND a.attnum > 0 AND NOT a.attisdropped AND c.relkind IN ('r', 'v')
UNION ALL
SELECT 'constraint', c.relname || '.' || k.conname, pg_get_constraintdef(k.oid)
  FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = %(schema)s
UNION ALL
SELECT 'index', i.indexname, i.indexdef FROM pg_indexes i WHERE i.schemaname = %(schema)s
UNION ALL
SELECT 'relation', c.relname, c.relkind::text || ' owner=' || pg_get_userbyid(c.relowner)
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = %(schema)s
UNION ALL
SELECT 'alembic', version_num, '' FROM {alembic}
"""


def catalog(conn, schema: str, role: str) -> set[tuple[str, str, str]]:
    """Everything about a store's schema that MLflow depends on, with its own names taken out."""
    query = sql.SQL(CATALOG).format(alembic=sql.Identifier(schema, "alembic_version"))
    with acting_as(conn, role):  # alembic_version is readable by the store's role only
        rows = conn.execute(query, {"schema": schema}).fetchall()
    return {tuple(str(v).replace(f"{schema}.", "S.").replace(role, "OWNER") for v in row) for row in rows}


@pytest.fixture(scope="module")
async def snapshot(services, workbench):
    return await mlflow_snapshot.record_snapshot(
        workbench.postgres.admin_url, workbench.postgres.registry_schema, sys.executable, 300)


async def test_replayed_store_equals_the_store_mlflow_makes(workbench, snapshot, admin_conn):
    by_mlflow = await workbench.provision(unique_name("snapm"))
    by_replay = await workbench.provision(unique_name("snapr"))
    try:
        await workbench.mlflow.ensure(by_mlflow)  # MLflow itself, as the user's role
        async with workbench.postgres.store_connection(by_replay.environment["MLFLOW_TRACKING_URI"]) as conn:
            async with conn.transaction():
                await mlflow_snapshot.replay(conn, snapshot, by_replay.resources.role, by_replay.resources.schema)
        made = catalog(admin_conn, by_mlflow.resources.schema, by_mlflow.resources.role)
        replayed = catalog(admin_conn, by_replay.resources.schema, by_replay.resources.role)
        assert len(made) > 300  # ~40 tables with their columns, keys and indexes
        assert replayed == made
    finally:
        for result in (by_mlflow, by_replay):
            await workbench.deprovision(result.resources.username, purge=True)


async def test_mlflow_logs_into_a_replayed_store(workbench, snapshot):
    result = await workbench.provision(unique_name("snapu"))
    try:
        async with workbench.postgres.store_connection(result.environment["MLFLOW_TRACKING_URI"]) as conn:
            async with conn.transaction():
                await mlflow_snapshot.replay(conn, snapshot, result.resources.role, result.resources.schema)
        proc = run_as_user(result.environment, """
            import mlflow
            with mlflow.start_run() as run:
                mlflow.log_param("alpha", 0.5)
                mlflow.log_metric("rmse", 0.25)
            print("RUN", run.info.run_id, mlflow.get_run(run.info.run_id).data.metrics["rmse"])
        """)
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert "RUN" in proc.stdout and "0.25" in proc.stdout
    finally:
        await workbench.deprovision(result.resources.username, purge=True)


async def test_a_replay_that_misses_the_head_leaves_nothing(workbench, snapshot, admin_conn):
    """A recording for another head fails its own check, and the transaction leaves no table."""
    result = await workbench.provision(unique_name("snapx"))
    wrong = {**snapshot, "head": "not-a-revision"}
    try:
        with pytest.raises(mlflow_snapshot.SnapshotError, match="not-a-revision"):
            async with workbench.postgres.store_connection(result.environment["MLFLOW_TRACKING_URI"]) as conn:
                async with conn.transaction():
                    await mlflow_snapshot.replay(conn, wrong, result.resources.role, result.resources.schema)
        tables = admin_conn.execute(
            "SELECT count(*) FROM pg_tables WHERE schemaname = %s", (result.resources.schema,)).fetchone()[0]
        assert tables == 0
    finally:
        await workbench.deprovision(result.resources.username, purge=True)


async def test_spawns_give_new_stores_their_tables_by_replay(workbench, snapshot, admin_conn, monkeypatch):
    """What the spawner calls: new stores get the replay, and no MLflow subprocess runs."""
    # As a freshly started hub: the recording is read from the registry.
    workbench.mlflow = MlflowStores(workbench.postgres, parent=workbench, log=workbench.log)
    ran_mlflow = []
    real_ensure_all = workbench.mlflow.upgrader.ensure_all

    async def ensure_all(stores, *args, **kwargs):
        ran_mlflow.extend(stores)
        return await real_ensure_all(stores, *args, **kwargs)

    monkeypatch.setattr(workbench.mlflow.upgrader, "ensure_all", ensure_all)
    result = await workbench.provision(unique_name("snaps"))
    try:
        await workbench.mlflow.ensure(result)
        assert ran_mlflow == []
        with acting_as(admin_conn, result.resources.role):
            version = admin_conn.execute(sql.SQL("SELECT version_num FROM {}").format(
                sql.Identifier(result.resources.schema, "alembic_version"))).fetchone()[0]
        assert version == snapshot["head"]
        owners = admin_conn.execute("SELECT DISTINCT tableowner FROM pg_tables WHERE schemaname = %s",
                                    (result.resources.schema,)).fetchall()
        assert owners == [(result.resources.role,)]
    finally:
        await workbench.deprovision(result.resources.username, purge=True)
