"""A new store gets MLflow's tables after the user's server is up, and the user's MLflow never races it.

The spawn no longer waits for a new store's tables: the hub replays them once the
server answers. Two things must then hold, with real PostgreSQL and real MLflow:

- an MLflow call the user makes while the hub is replaying waits for the replay
  (the store's MLflow lock, taken by our store plugin in the user's server), then
  logs into the replayed tables, instead of creating them at the same time;
- the user can hold that lock (it is keyed on their own role) for as long as they
  like, and the hub's replay gives up after ``MlflowStores.mlflow_lock_wait`` instead
  of keeping a pool connection waiting.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time

import psycopg
import pytest
from psycopg import sql

from enertef_hub import mlflow_snapshot
from tests.harness.names import unique_name
from tests.harness.postgres import acting_as
from tests.harness.services import run_as_user

LOG_A_RUN = """
    import json, mlflow
    with mlflow.start_run() as run:
        mlflow.log_metric("rmse", 0.25)
    print(json.dumps(mlflow.get_run(run.info.run_id).data.metrics))
"""

#: A first MLflow call that opens the model registry's store and not the tracking store,
#: as the MLflow UI server does for a first request to its model registry pages
#: (``mlflow.server.handlers._get_model_registry_store``; ``MlflowClient()`` would open
#: the tracking store first).
REGISTER_A_MODEL = """
    import json
    from mlflow.tracking._model_registry.utils import _get_store_registry
    store = _get_store_registry().get_store()
    store.create_registered_model("churn")
    print(json.dumps([m.name for m in store.search_registered_models()]))
"""

#: Sessions of one role that wait for an advisory lock.
WAITING = """
SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
 WHERE l.locktype = 'advisory' AND NOT l.granted AND a.usename = %s
"""


def plain_uri(tracking_uri: str) -> str:
    """A psycopg URI from the user's SQLAlchemy tracking URI."""
    return tracking_uri.replace("postgresql+psycopg://", "postgresql://", 1)


def alembic_versions(admin_conn, result) -> list[str]:
    with acting_as(admin_conn, result.resources.role):
        return [row[0] for row in admin_conn.execute(sql.SQL("SELECT version_num FROM {}").format(
            sql.Identifier(result.resources.schema, "alembic_version"))).fetchall()]


@pytest.fixture
async def snapshot(workbench):
    """The recording the hub replays (the first ask of a test session starts making it)."""
    deadline = time.monotonic() + 300
    while (recording := await workbench.mlflow.snapshot()) is None:
        assert time.monotonic() < deadline, "MLflow's table creation was never recorded"
        await asyncio.sleep(0.5)
    return recording


@pytest.mark.parametrize("first_call, answer", [(LOG_A_RUN, {"rmse": 0.25}), (REGISTER_A_MODEL, ["churn"])],
                         ids=["tracking", "model registry"])
async def test_an_mlflow_call_during_the_hub_s_replay_waits_and_logs_into_its_tables(
        workbench, snapshot, admin_conn, first_call, answer):
    result = await workbench.provision(unique_name("racer"))
    role = result.resources.role
    try:
        async with workbench.postgres.store_connection(result.environment["MLFLOW_TRACKING_URI"]) as conn, \
                conn.transaction():
            # The hub's replay has begun: it holds the store's lock, the tables are not there yet.
            await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended('enertef:mlflow:' || %s, 0))",
                               (role,))
            user = asyncio.ensure_future(asyncio.to_thread(
                run_as_user, dict(result.environment, JUPYTERHUB_USER=result.resources.username), first_call))
            deadline = time.monotonic() + 90
            while admin_conn.execute(WAITING, (role,)).fetchone()[0] == 0:
                assert not user.done(), f"MLflow did not wait for the replay: {user.result().stderr[-2000:]}"
                assert time.monotonic() < deadline, "the user's MLflow never asked for the store's lock"
                await asyncio.sleep(0.2)
            await mlflow_snapshot.replay(conn, snapshot, role, result.resources.schema)
        proc = await asyncio.wait_for(user, 120)
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert json.loads(proc.stdout.strip().splitlines()[-1]) == answer
        assert alembic_versions(admin_conn, result) == [snapshot["head"]]
    finally:
        await workbench.deprovision(result.resources.username, purge=True)


async def test_a_user_holding_their_store_lock_does_not_hold_the_hub(workbench, snapshot, admin_conn, caplog):
    result = await workbench.provision(unique_name("holder"))
    workbench.mlflow.mlflow_lock_wait = 1.0
    try:
        async with await psycopg.AsyncConnection.connect(plain_uri(result.environment["MLFLOW_TRACKING_URI"]),
                                                         autocommit=True) as hostile:
            # Any session of the user's role can take its store's lock, and keep it.
            await hostile.execute(
                "SELECT pg_advisory_lock(hashtextextended('enertef:mlflow:' || current_user, 0))")
            started = time.monotonic()
            with caplog.at_level(logging.WARNING):
                await asyncio.wait_for(workbench.mlflow.ensure(result), 30)
            assert time.monotonic() - started < 10
            assert "lock was held" in caplog.text
            tables = admin_conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = %s",
                                        (result.resources.schema,)).fetchone()[0]
            assert tables == 0  # left for MLflow's first use (or the next spawn)
        # Once the lock is let go, the next try gives the store its tables.
        await workbench.mlflow.ensure(result)
        assert len(alembic_versions(admin_conn, result)) == 1
    finally:
        workbench.mlflow.mlflow_lock_wait = 10.0
        await workbench.deprovision(result.resources.username, purge=True)
