"""Stores made by an older MLflow release are upgraded by the pinned one: at spawn and by ``upgrade-stores``.

The older release is real: ``mlflow-skinny`` ``OLD_MLFLOW`` (tests.harness.workbench) installed in a throwaway
virtual environment cached outside the clone (``$ENERTEF_CACHE_DIR``, default
``/var/cache/enertef-hub``), so reruns do not reinstall it.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from psycopg import sql

from enertef_hub.naming import make_team_resources
from enertef_hub.store_upgrades import StoreUpgradeError
from tests.harness import REPO
from tests.harness.names import unique_name
from tests.harness.postgres import acting_as
from tests.harness.services import run_as_user
from tests.harness.workbench import make_old_store

#: Run by the pinned MLflow as the user: the old run is there, and a new run works.
USE_UPGRADED_STORE = """
    import json, mlflow
    old = mlflow.get_run({run_id!r})
    mlflow.set_experiment("made-by-old-mlflow")
    with mlflow.start_run() as run:
        mlflow.log_metric("loss", 0.1)
    print(json.dumps({{"alpha": old.data.params["alpha"], "loss": old.data.metrics["loss"],
                      "new": run.info.run_id}}))
"""


def revision(admin_conn, schema: str) -> str:
    with acting_as(admin_conn, schema):  # a store's role has its schema's name
        return admin_conn.execute(sql.SQL("SELECT version_num FROM {}").format(
            sql.Identifier(schema, "alembic_version"))).fetchone()[0]


def table_owners(admin_conn, schema: str) -> set[str]:
    return {row[0] for row in admin_conn.execute(
        "SELECT DISTINCT tableowner FROM pg_tables WHERE schemaname = %s", (schema,))}


def has_table(admin_conn, schema: str, table: str) -> bool:
    return admin_conn.execute("SELECT 1 FROM pg_tables WHERE schemaname = %s AND tablename = %s",
                              (schema, table)).fetchone() is not None


async def test_spawn_upgrades_a_store_made_by_an_older_mlflow(workbench, old_mlflow_python, admin_conn):
    result = await workbench.provision(unique_name("olduser"), teams=[])
    schema = result.resources.schema
    run_id = make_old_store(old_mlflow_python, result.environment)
    head = (await workbench.mlflow.upgrader.head())["head"]
    assert revision(admin_conn, schema) != head

    messages = []
    upgraded = await workbench.mlflow.ensure(result, tables=False, progress=messages.append)

    assert [s.schema for s in upgraded] == [schema]
    assert revision(admin_conn, schema) == head
    assert len(messages) == 1 and schema in messages[0] and "own role" in messages[0], messages
    assert table_owners(admin_conn, schema) == {result.resources.role}  # migrated as the user's role
    proc = run_as_user(result.environment, USE_UPGRADED_STORE.format(run_id=run_id))
    assert proc.returncode == 0, proc.stderr[-3000:]
    used = json.loads(proc.stdout.strip().splitlines()[-1])
    assert used["alpha"] == "0.5" and used["loss"] == 0.25
    # A store at the head is left alone: the next spawn has nothing to upgrade.
    assert await workbench.mlflow.ensure(result, tables=False, progress=messages.append) == []
    assert len(messages) == 1


async def test_a_failed_upgrade_leaves_the_store_untouched_and_says_so(workbench, old_mlflow_python, admin_conn):
    result = await workbench.provision(unique_name("stuckuser"), teams=[])
    schema, role = result.resources.schema, result.resources.role
    run_id = make_old_store(old_mlflow_python, result.environment)
    before = revision(admin_conn, schema)
    # A table in the way of a later migration step (as the user could have made it):
    # the upgrade fails part-way, after earlier steps already created tables.
    with acting_as(admin_conn, role):
        admin_conn.execute(sql.SQL("CREATE TABLE {} (x int)").format(sql.Identifier(schema, "jobs")))

    with pytest.raises(StoreUpgradeError) as failure:
        await workbench.mlflow.ensure(result, tables=False)

    assert "untouched" in str(failure.value) and schema in str(failure.value)
    assert revision(admin_conn, schema) == before
    assert not has_table(admin_conn, schema, "logged_models")  # earlier steps rolled back too
    with acting_as(admin_conn, role):
        rows = admin_conn.execute(sql.SQL("SELECT key, value FROM {} WHERE run_uuid = %s").format(
            sql.Identifier(schema, "params")), (run_id,)).fetchall()
    assert rows == [("alpha", "0.5")]


async def test_a_store_made_by_a_later_mlflow_is_refused_unchanged(workbench, admin_conn):
    result = await workbench.provision(unique_name("futureuser"), teams=[])
    schema = result.resources.schema
    await workbench.mlflow.ensure(result)
    with acting_as(admin_conn, schema):
        admin_conn.execute(sql.SQL("UPDATE {} SET version_num = 'ffffffffffff'").format(
            sql.Identifier(schema, "alembic_version")))

    with pytest.raises(StoreUpgradeError) as failure:
        await workbench.mlflow.ensure(result, tables=False)

    assert "later MLflow release" in str(failure.value) and "Nothing was changed" in str(failure.value)
    assert revision(admin_conn, schema) == "ffffffffffff"


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "enertef_hub.cli", *args], capture_output=True, text=True,
                          timeout=900, cwd=REPO)


async def test_upgrade_stores_upgrades_users_and_teams_reports_failures_and_resumes(
        workbench, old_mlflow_python, admin_conn):
    team = unique_name("oldteam")
    alice = await workbench.provision(unique_name("oldalice"), teams=[team])
    bob = await workbench.provision(unique_name("oldbob"), teams=[])
    team_store = workbench.mlflow.of(alice)[1]
    assert team_store.schema == make_team_resources(team).schema
    runs = {s.schema: make_old_store(old_mlflow_python, s.environment)
            for s in (workbench.mlflow.of(alice)[0], team_store, workbench.mlflow.of(bob)[0])}
    # bob's store cannot be upgraded (a table in a migration's way) until that is fixed.
    bob_schema = bob.resources.schema
    with acting_as(admin_conn, bob_schema):
        admin_conn.execute(sql.SQL("CREATE TABLE {} (x int)").format(sql.Identifier(bob_schema, "jobs")))
    old = revision(admin_conn, bob_schema)

    first = run_cli("upgrade-stores", "--jobs", "2", "--json")

    assert first.returncode == 1, first.stderr[-3000:]
    report = json.loads(first.stdout)
    head = report["head"]["head"]
    upgraded = {u["store"] for u in report["upgraded"]}
    failed = {f["store"]: f["error"] for f in report["failed"]}
    assert {alice.resources.schema, team_store.schema} <= upgraded
    assert bob_schema in failed and "untouched" in failed[bob_schema]
    assert "]" in first.stderr and "failed" in first.stderr  # the progress bar
    for schema in (alice.resources.schema, team_store.schema):
        assert revision(admin_conn, schema) == head
    assert table_owners(admin_conn, team_store.schema) == {f"t_{team}"}  # the team role, not the admin
    assert revision(admin_conn, bob_schema) == old
    # Each run logged in as the store's own role (a team member's team login for the
    # team): the admin was never made a member of a store role to act as it (issue 19).
    assert admin_conn.execute(
        "SELECT count(*) FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.roleid"
        " WHERE m.member = (SELECT oid FROM pg_roles WHERE rolname = current_user) AND r.rolname = ANY(%s)"
        " AND (m.inherit_option OR m.set_option)", (sorted(runs),)).fetchone()[0] == 0

    with acting_as(admin_conn, bob_schema):
        admin_conn.execute(sql.SQL("DROP TABLE {}").format(sql.Identifier(bob_schema, "jobs")))
    second = run_cli("upgrade-stores", "--json")

    report = json.loads(second.stdout)
    assert second.returncode == (1 if report["failed"] else 0)
    assert [u["store"] for u in report["upgraded"] if u["store"] in runs] == [bob_schema]  # only what was left
    assert revision(admin_conn, bob_schema) == head
    proc = run_as_user(bob.environment, USE_UPGRADED_STORE.format(run_id=runs[bob_schema]))
    assert proc.returncode == 0, proc.stderr[-3000:]
