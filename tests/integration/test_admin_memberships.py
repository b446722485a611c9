"""The hub's admin role is a member of no user or team role between operations (issue 13).

Staying a member of every store role made each permission check after a role change
recompute thousands of memberships; the admin now holds a store role only inside
the transaction that acts on it. These tests walk an account and a team through
every operation that needs such membership and then read ``pg_auth_members``.
"""

from __future__ import annotations

import psycopg
import pytest
from psycopg import sql

from enertef_hub.naming import make_team_resources, make_user_resources
from tests.harness.names import unique_name
from tests.harness.workbench import open_workbench


def admin_memberships(admin_conn, roles) -> set[str]:
    """Those of ``roles`` the admin role is a member of (directly; committed state) with
    INHERIT or SET: the ADMIN-only membership PostgreSQL 16 gives a role's creator
    lets the admin grant the role, not use its privileges, and costs no permission check."""
    return {row[0] for row in admin_conn.execute(
        "SELECT r.rolname FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.roleid"
        " WHERE m.member = (SELECT oid FROM pg_roles WHERE rolname = current_user) AND r.rolname = ANY(%s)"
        " AND (m.inherit_option OR m.set_option)",
        (sorted(roles),))}


def is_superuser(admin_conn) -> bool:
    return admin_conn.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user").fetchone()[0]


async def test_no_membership_remains_after_any_operation(workbench, admin_conn):
    assert not is_superuser(admin_conn)  # what the hub runs with; a superuser needs no membership
    team = unique_name("memteam")
    alice = await workbench.provision(unique_name("memalice"), teams=[team])
    bob = await workbench.provision(unique_name("membob"), teams=[team])
    team_role = make_team_resources(team).role
    roles = {alice.resources.role, bob.resources.role, team_role}
    assert admin_memberships(admin_conn, roles) == set()  # provisioning, team store and grants

    await workbench.mlflow.ensure(alice)  # the replay and reading alembic_version
    await workbench.mlflow.ensure(alice, tables=False)
    assert admin_memberships(admin_conn, roles) == set()

    # bob leaves the team while connected (his sessions are ended, the team's store swept) ...
    bob_team_uri = next(s for s in workbench.mlflow.of(bob) if s.kind == "team").environment[
        "MLFLOW_TRACKING_URI"].replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(bob_team_uri, autocommit=True) as session:  # his team login, acting as the team
        await workbench.sync_teams({team: [alice.resources.username]})
        assert admin_memberships(admin_conn, roles) == set()
        with pytest.raises(psycopg.OperationalError):  # ended: needed membership in his team login
            session.execute("SELECT 1")
    # ... and is suspended, rotated back, deleted with his data kept, restored, deleted and purged.
    await workbench.suspend(bob.resources.username)
    await workbench.rotate(bob.resources.username)
    await workbench.deprovision(bob.resources.username, purge=False)
    assert admin_memberships(admin_conn, roles) == set()
    again = await workbench.provision(bob.resources.username, teams=[])  # incarnation 2
    await workbench.restore(bob.resources.username, 1)
    roles.add(again.resources.role)
    assert admin_memberships(admin_conn, roles) == set()
    await workbench.deprovision(bob.resources.username, purge=True)
    await workbench.deprovision(alice.resources.username, purge=True)
    assert admin_memberships(admin_conn, roles) == set()
    assert admin_conn.execute("SELECT count(*) FROM pg_roles WHERE rolname = ANY(%s)",
                              ([alice.resources.role, bob.resources.role],)).fetchone()[0] == 0


async def test_leftover_memberships_of_earlier_releases_are_revoked_at_setup(workbench, admin_conn, services):
    """Earlier releases granted every store role to the admin for good; a hub start takes them back."""
    names = [unique_name("memold") for _ in range(3)]
    results = [await workbench.provision(name, teams=[]) for name in names]
    roles = {r.resources.role for r in results}
    for role in roles:  # what `GRANT <role> TO CURRENT_USER` of an earlier release left behind
        admin_conn.execute(sql.SQL("GRANT {} TO CURRENT_USER").format(sql.Identifier(role)))
    assert admin_memberships(admin_conn, roles) == roles

    async with open_workbench(services) as fresh:  # a hub (or the CLI) starting: its one-time set-up runs
        await fresh.status(names[0])

    assert admin_memberships(admin_conn, roles) == set()
    # The stores still work for the hub without the memberships: repeat provisioning, purge.
    for name in names:
        assert (await workbench.provision(name, teams=[])).created is False
        await workbench.deprovision(name, purge=True)
    assert admin_conn.execute("SELECT count(*) FROM pg_roles WHERE rolname = ANY(%s)",
                              (sorted(roles),)).fetchone()[0] == 0
    assert make_user_resources(names[0]).role in roles
