"""Issue 19, part 2: the hub's admin role never runs SQL a user made.

A hostile user (mallory) plants a payload in her own store and waits for the hub to
touch it: her store's revision read at every spawn, the usage report, the replay of
MLflow's tables into her new store, ``enertef-hub upgrade-stores``. Each vector makes
the hub's statement reach her payload a different way: a forced row-level-security
policy, a view in place of MLflow's table, an ``=`` operator of her own found on the
search path, a trigger and a rule fired by the migration.

The payload (:data:`PAYLOAD`) notes, in a sequence (non-transactional, so a rolled-back
read still shows it), every time it runs in a session that is not her own login; then
it tries what an attacker would with the admin's rights: ``RESET ROLE`` back to the
admin, ``GRANT`` itself bob's role, ``SET ROLE`` bob and copy his diary, and ``COPY
... TO PROGRAM``. After each hub operation: the payload never ran as anyone but
mallory, she holds nothing of bob's, and no program ran. On the code before issue 19
every vector here ran the payload in the admin's session.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from enertef_hub import reports
from enertef_hub.usage import collect_usage
from tests.harness.names import unique_name
from tests.harness.postgres import connect_as
from tests.harness.workbench import make_old_store

REPO = Path(__file__).resolve().parents[2]

#: Mallory's payload; {schema}, {me}, {bob}, {bob_schema}, {file} are filled in.
PAYLOAD = """
CREATE SEQUENCE {schema}.hijacked;
CREATE TABLE {schema}.loot (v text);
CREATE FUNCTION {schema}.evil() RETURNS boolean LANGUAGE plpgsql AS $evil$
BEGIN
  IF session_user::text <> {me_literal} THEN
    PERFORM nextval('{schema}.hijacked');
    BEGIN EXECUTE 'RESET ROLE'; EXCEPTION WHEN OTHERS THEN NULL; END;
    BEGIN EXECUTE 'GRANT {bob} TO {me}'; EXCEPTION WHEN OTHERS THEN NULL; END;
    BEGIN EXECUTE 'GRANT pg_execute_server_program TO CURRENT_USER'; EXCEPTION WHEN OTHERS THEN NULL; END;
    BEGIN EXECUTE 'COPY (SELECT 1) TO PROGRAM ''touch {file}'''; EXCEPTION WHEN OTHERS THEN NULL; END;
    BEGIN
      EXECUTE 'SET ROLE {bob}';
      EXECUTE 'INSERT INTO {schema}.loot SELECT v FROM {bob_schema}.diary';
    EXCEPTION WHEN OTHERS THEN NULL;
    END;
  END IF;
  RETURN true;
END
$evil$;
"""


@pytest.fixture
async def mallory_and_bob(workbench, tmp_path):
    """Provisioned mallory (with the payload in her store) and bob (with a private diary)."""
    mallory = await workbench.provision(unique_name("mallory"))
    bob = await workbench.provision(unique_name("bob"))
    with connect_as(bob.environment) as conn:
        conn.execute("CREATE TABLE diary (v text)")
        conn.execute("INSERT INTO diary VALUES ('bob private')")
    evidence = tmp_path / "pwned"
    names = {"schema": mallory.resources.schema, "me": mallory.resources.role, "bob": bob.resources.role,
             "bob_schema": bob.resources.schema, "file": str(evidence),
             "me_literal": sql.Literal(mallory.resources.role).as_string(None)}
    with connect_as(mallory.environment) as conn:
        conn.execute(PAYLOAD.format(**names))
    yield mallory, bob, evidence
    for who in (mallory, bob):
        await workbench.deprovision(who.resources.username, purge=True)


def assert_payload_never_ran_as_anyone_else(admin_conn, mallory, bob, evidence: Path):
    with connect_as(mallory.environment) as conn:
        ran_elsewhere = conn.execute(sql.SQL("SELECT is_called FROM {}").format(
            sql.Identifier(mallory.resources.schema, "hijacked"))).fetchone()[0]
        loot = conn.execute(sql.SQL("SELECT v FROM {}").format(
            sql.Identifier(mallory.resources.schema, "loot"))).fetchall()
    granted = admin_conn.execute(
        "SELECT r.rolname FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.roleid"
        " WHERE m.member = (SELECT oid FROM pg_roles WHERE rolname = %s)", (mallory.resources.role,)).fetchall()
    assert not ran_elsewhere, "mallory's SQL ran in a session that was not her own login"
    assert loot == []
    assert bob.resources.role not in {r for (r,) in granted}
    assert "pg_execute_server_program" not in {r for (r,) in granted}
    assert not evidence.exists()
    admin = admin_conn.execute("SELECT r.rolname FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.roleid"
                               " WHERE m.member = (SELECT oid FROM pg_roles WHERE rolname = current_user)"
                               " AND r.rolname LIKE 'pg\\_%'").fetchall()
    assert admin == []  # the admin holds no predefined role either


async def test_forced_row_security_on_mlflow_tables_is_not_run_by_the_hub(workbench, admin_conn, mallory_and_bob):
    mallory, bob, evidence = mallory_and_bob
    await workbench.mlflow.ensure(mallory)
    with connect_as(mallory.environment) as conn:
        conn.execute("INSERT INTO runs (run_uuid, start_time) VALUES ('r1', 1700000000000)")
        for table in ("alembic_version", "runs"):  # each has a row: a policy runs per row
            conn.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
            conn.execute(f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY")
            conn.execute(f"CREATE POLICY everyone ON {table} USING ({mallory.resources.schema}.evil())")

    stores = await workbench.mlflow.read(mallory)  # every spawn reads the revision
    await collect_usage(workbench)  # the usage report reads the latest run

    assert_payload_never_ran_as_anyone_else(admin_conn, mallory, bob, evidence)
    assert not isinstance(stores[0].revision, str)  # no answer, and so no upgrade attempt
    assert await workbench.mlflow.ensure(mallory, stores, tables=False) == []


async def test_a_view_in_place_of_mlflow_s_tables_is_not_run_by_the_hub(workbench, admin_conn, mallory_and_bob):
    mallory, bob, evidence = mallory_and_bob
    await workbench.mlflow.ensure(mallory)
    schema = mallory.resources.schema
    with connect_as(mallory.environment) as conn:
        conn.execute("ALTER TABLE alembic_version RENAME TO real_version")
        conn.execute(f"CREATE VIEW alembic_version AS SELECT version_num FROM real_version WHERE {schema}.evil()")
        conn.execute("ALTER TABLE runs RENAME TO real_runs")
        conn.execute(f"CREATE VIEW runs AS SELECT * FROM real_runs WHERE {schema}.evil()")

    await workbench.mlflow.read(mallory)
    rows = await collect_usage(workbench)

    assert_payload_never_ran_as_anyone_else(admin_conn, mallory, bob, evidence)
    assert [r for r in rows if r["schema"] == schema][0]["last_activity"] is not None  # from the registry


async def test_an_operator_of_hers_on_the_search_path_is_not_run_by_the_replay(
        workbench, admin_conn, mallory_and_bob):
    # The replay of MLflow's tables updates alembic_version "WHERE version_num = '...'"
    # with her schema on the search path: her own = (varchar, varchar) is an exact match.
    mallory, bob, evidence = mallory_and_bob
    schema = mallory.resources.schema
    with connect_as(mallory.environment) as conn:
        conn.execute(f"CREATE FUNCTION {schema}.same(a varchar, b varchar) RETURNS boolean LANGUAGE plpgsql AS"
                     f" $$BEGIN PERFORM {schema}.evil(); RETURN a::text = b::text; END$$")
        conn.execute(f"CREATE OPERATOR {schema}.= (LEFTARG = varchar, RIGHTARG = varchar,"
                     f" FUNCTION = {schema}.same)")
    assert await workbench.mlflow.snapshot() is not None or await _recorded(workbench)

    made = await workbench.mlflow.ensure(mallory)

    assert [s.schema for s in made] == [schema]  # her store got its tables, as her role
    assert_payload_never_ran_as_anyone_else(admin_conn, mallory, bob, evidence)
    owners = admin_conn.execute("SELECT DISTINCT tableowner FROM pg_tables WHERE schemaname = %s",
                                (schema,)).fetchall()
    assert owners == [(mallory.resources.role,)]


async def _recorded(workbench) -> bool:
    """Wait for the recording of MLflow's table creation (a first ask starts it)."""
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if await workbench.mlflow.snapshot() is not None:
            return True
        await __import__("asyncio").sleep(1)
    return False


def upgrade_stores() -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "enertef_hub.cli", "upgrade-stores", "--json"],
                          capture_output=True, text=True, timeout=900, cwd=REPO, env=os.environ)


@pytest.mark.parametrize("hook", [
    "CREATE FUNCTION {schema}.fire() RETURNS trigger LANGUAGE plpgsql AS"
    " $$BEGIN PERFORM {schema}.evil(); RETURN NEW; END$$;"
    " CREATE TRIGGER fire BEFORE UPDATE ON {schema}.alembic_version FOR EACH ROW EXECUTE FUNCTION {schema}.fire()",
    "CREATE RULE fire AS ON UPDATE TO {schema}.alembic_version DO ALSO SELECT {schema}.evil()",
], ids=["trigger", "rule"])
async def test_a_trigger_or_rule_fired_by_upgrade_stores_is_not_run_by_the_hub(
        workbench, admin_conn, mallory_and_bob, old_mlflow_python, hook):
    mallory, bob, evidence = mallory_and_bob
    make_old_store(old_mlflow_python, mallory.environment)
    with connect_as(mallory.environment) as conn:
        conn.execute(hook.format(schema=mallory.resources.schema))

    proc = upgrade_stores()

    report = json.loads(proc.stdout)
    assert mallory.resources.schema in {u["store"] for u in report["upgraded"]}, proc.stderr[-3000:]
    assert_payload_never_ran_as_anyone_else(admin_conn, mallory, bob, evidence)


# -- the admin role itself --------------------------------------------------------------------


def test_the_admin_role_cannot_get_any_predefined_role(admin_conn):
    """PostgreSQL 16+ bounds CREATEROLE: the hub's admin may grant only roles it holds with
    ADMIN OPTION. On 15 it could grant itself pg_execute_server_program (a shell as the
    server's OS user) — the reason PostgreSQL 16 is the oldest supported release."""
    assert admin_conn.info.server_version >= 160000
    me = admin_conn.execute("SELECT rolsuper, rolbypassrls, rolreplication FROM pg_roles"
                            " WHERE rolname = current_user").fetchone()
    assert me == (False, False, False)
    # (pg_database_owner has no explicit members at all.)
    predefined = [r for (r,) in admin_conn.execute(
        "SELECT rolname FROM pg_roles WHERE rolname LIKE 'pg\\_%' AND rolname <> 'pg_database_owner'")]
    assert {"pg_execute_server_program", "pg_read_server_files", "pg_write_server_files"} <= set(predefined)
    for role in predefined:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            with admin_conn.transaction():
                admin_conn.execute(sql.SQL("GRANT {} TO CURRENT_USER").format(sql.Identifier(role)))
    for attribute in ("SUPERUSER", "BYPASSRLS", "REPLICATION"):
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            with admin_conn.transaction():
                admin_conn.execute(sql.SQL("ALTER ROLE CURRENT_USER {}").format(sql.SQL(attribute)))


async def test_check_names_the_postgresql_release_and_why_it_must_be_16(workbench):
    rows = {what: (ok, detail) for what, ok, detail in await reports.check(workbench)}
    ok, detail = rows["postgresql release"]
    assert ok is True and detail.startswith("16")
