"""A store made by an older MLflow release is upgraded when its owner's server spawns, and the spawn page says so."""

from __future__ import annotations

import psycopg
from psycopg import sql

from tests.harness.hub import run_coroutine, spawn_and_follow
from tests.harness.names import unique_name
from tests.harness.postgres import acting_as
from tests.harness.workbench import make_old_store, open_workbench


async def _provision(name: str):
    async with open_workbench() as wb:
        return await wb.provision(name, teams=[]), (await wb.mlflow.upgrader.head())["head"]


def test_spawn_upgrades_an_old_store_before_the_server_starts(hub, services_env, old_mlflow_python):
    # Made by an admin without a sign-up, so no approval prepares it with this MLflow's tables.
    name = unique_name("oldspawn")
    hub.api("POST", f"/users/{name}").raise_for_status()
    # The account as an older workbench left it: a store with an older MLflow's tables and a run.
    result, head = run_coroutine(_provision(name))
    make_old_store(old_mlflow_python, result.environment)

    events = spawn_and_follow(hub, name)

    messages = [e.get("message", "") for e in events]
    assert events[-1].get("ready"), messages
    upgrading = [m for m in messages if m.startswith("Upgrading MLflow store")]
    assert upgrading and result.resources.schema in upgrading[0] and "own role" in upgrading[0], messages
    assert messages.index(upgrading[0]) < next(i for i, m in enumerate(messages) if "Starting your server" in m)
    with psycopg.connect(services_env["ENERTEF_POSTGRES_ADMIN_URL"]) as conn, acting_as(conn, result.resources.role):
        revision = conn.execute(sql.SQL("SELECT version_num FROM {}").format(
            sql.Identifier(result.resources.schema, "alembic_version"))).fetchone()[0]
    assert revision == head
