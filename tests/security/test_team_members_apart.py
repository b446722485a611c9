"""Issue 19, part 3: in a team store, members cannot act as each other.

alice (hostile) and bob share team ``team``. Working in the team's store, alice
leaves a trigger that, when it fires in bob's session, switches back to the
session's login (``SET ROLE NONE``) and copies bob's private diary into a team
table she reads. Members reach the team's store through a team login of their own
(``m_<team>_<user>``) that holds the team's rights and nothing else, so the switch
lands on bob's *team* login, which cannot read bob's own store. Before issue 19 the
session's login was bob's own role: the trigger copied his diary.

Removing alice from the team then sweeps what she left in the team's store —
triggers, rules, policies — and ``enertef-hub check`` reported them before.
"""

from __future__ import annotations

import psycopg
from psycopg import sql

from enertef_hub import reports

from tests.harness.names import unique_name
from tests.harness.postgres import connect_as

#: alice's trap, made as the team in the team's schema; {team_schema}, {bob_schema} filled in.
TRAP = """
CREATE TABLE notes (v text);
CREATE TABLE loot (v text);
CREATE FUNCTION steal() RETURNS trigger LANGUAGE plpgsql AS $trap$
BEGIN
  BEGIN
    EXECUTE 'SET ROLE NONE';
    EXECUTE 'INSERT INTO {team_schema}.loot SELECT v FROM {bob_schema}.diary';
  EXCEPTION WHEN OTHERS THEN NULL;
  END;
  RETURN NEW;
END
$trap$;
CREATE TRIGGER steal AFTER INSERT ON notes FOR EACH ROW EXECUTE FUNCTION steal();
CREATE RULE echo AS ON UPDATE TO notes DO ALSO INSERT INTO loot VALUES ('rule');
ALTER TABLE notes ENABLE ROW LEVEL SECURITY;
CREATE POLICY everyone ON notes USING (true);
"""


def team_connection(workbench, result) -> psycopg.Connection:
    """The member's connection to the team's store, as their server makes it."""
    team_store = next(s for s in workbench.mlflow.of(result) if s.kind == "team")
    url = team_store.environment["MLFLOW_TRACKING_URI"].replace("postgresql+psycopg://", "postgresql://")
    return psycopg.connect(url, autocommit=True, connect_timeout=5)


async def test_a_teammate_s_trigger_never_runs_with_my_own_rights(workbench, admin_conn):
    team = unique_name("team")
    alice = await workbench.provision(unique_name("alice"), teams=[team])
    bob = await workbench.provision(unique_name("bob"), teams=[team])
    team_schema = f"t_{team}"
    with connect_as(bob.environment) as conn:
        conn.execute("CREATE TABLE diary (v text)")
        conn.execute("INSERT INTO diary VALUES ('bob private')")
    with team_connection(workbench, alice) as conn:
        conn.execute(TRAP.format(team_schema=team_schema, bob_schema=bob.resources.schema))

    with team_connection(workbench, bob) as conn:  # bob works in the team store as usual
        conn.execute("INSERT INTO notes VALUES ('meeting at 10')")
        after = conn.execute("SELECT current_user").fetchone()[0]

    with team_connection(workbench, alice) as conn:
        assert conn.execute("SELECT v FROM loot").fetchall() == []
    assert after == team_schema  # the trap could not leave bob's session as bob
    # bob's own role was never made a member of the team's role either.
    assert admin_conn.execute(
        "SELECT count(*) FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.roleid"
        " WHERE r.rolname = %s AND m.member = (SELECT oid FROM pg_roles WHERE rolname = %s)",
        (team_schema, bob.resources.role)).fetchone()[0] == 0

    # check shows what she left; her removal sweeps it.
    findings = [f for f in await reports.audit(workbench) if f.startswith(f"team {team}:")]
    assert any("trigger steal" in f for f in findings), findings
    assert any("rule echo" in f for f in findings) and any("policy everyone" in f for f in findings)
    await workbench.provision(alice.resources.username, teams=[])
    code = admin_conn.execute(sql.SQL(
        "SELECT (SELECT count(*) FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid"
        "        WHERE c.relnamespace = {ns} AND NOT t.tgisinternal),"
        " (SELECT count(*) FROM pg_rewrite r JOIN pg_class c ON c.oid = r.ev_class"
        "  WHERE c.relnamespace = {ns} AND r.rulename <> '_RETURN'),"
        " (SELECT count(*) FROM pg_policy p JOIN pg_class c ON c.oid = p.polrelid WHERE c.relnamespace = {ns})"
    ).format(ns=sql.Literal(team_schema) + sql.SQL("::regnamespace"))).fetchone()
    assert code == (0, 0, 0)
    assert not [f for f in await reports.audit(workbench) if f.startswith(f"team {team}:")]
    with team_connection(workbench, bob) as conn:  # the team's data stays for bob
        assert conn.execute("SELECT v FROM notes").fetchall() == [("meeting at 10",)]
    for who in (alice, bob):
        await workbench.deprovision(who.resources.username, purge=True)
