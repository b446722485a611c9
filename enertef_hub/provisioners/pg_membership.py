"""The hub's admin role is a member of a store role only while it acts on that store.

A non-superuser admin role (CREATEROLE) may act on a user's or team's store only as
a member of the role that owns it: ``CREATE SCHEMA ... AUTHORIZATION``, ``ALTER ...
OWNER``, ``DROP SCHEMA``/``DROP OWNED``,
reading ``alembic_version`` (:mod:`.pg_reads`), ending the role's sessions, the
revocation sweeps. The admin never acts *as* a store's role (``SET ROLE``) to run
anything: what the store's owner made could switch back to the admin (issue 19).
Staying a member of every store role would make each permission check after any
role change recompute thousands of memberships (issue 13: 22 ms instead of 0.1 ms
at 3,000 accounts), so membership is granted for one operation and taken back:

- :func:`temporary_membership`: inside a transaction (a savepoint when the caller is
  in one), revoked before it ends; if the block fails, the rollback takes the grant
  back too, so no other session ever sees it committed.
- :func:`reading_membership`: for reads only: the grant and everything else in the
  block is rolled back, so nothing is committed, no other session sees the grant,
  and no commit is paid for (a store's revision at each spawn: 1.9 ms instead of 4).
- :func:`revoke_leftovers`: at set-up, memberships older hub releases left behind
  (they granted every store role for good) are revoked, in one statement.

PostgreSQL 16 or newer: there, a CREATEROLE role can grant only roles it holds with
ADMIN OPTION (those it created), so these grants can never reach a predefined role.
A superuser admin needs none of this and gets no grant.
"""

from __future__ import annotations

from contextlib import asynccontextmanager

import psycopg
from psycopg import sql

async def _grantable(conn: psycopg.AsyncConnection, roles) -> list[str]:
    """Of ``roles``, those the admin must be granted: existing, not superuser, not itself,
    not already a direct member with INHERIT and SET (an enclosing block granted it, or
    a leftover); none if the admin is a superuser. The membership PostgreSQL 16 gives a
    role's creator (ADMIN OPTION only) does not count: it lets the admin grant the
    role, not use it."""
    names = sorted({r for r in roles if r})
    if not names:
        return []
    cur = await conn.execute(
        """SELECT r.rolname FROM pg_roles r, pg_roles me
           WHERE me.rolname = current_user AND NOT me.rolsuper
             AND r.rolname = ANY(%s) AND NOT r.rolsuper AND r.oid <> me.oid
             AND NOT EXISTS (SELECT 1 FROM pg_auth_members m WHERE m.roleid = r.oid AND m.member = me.oid
                             AND m.inherit_option AND m.set_option)
           ORDER BY 1""", (names,))
    return [row[0] for row in await cur.fetchall()]


def _roles(names: list[str]) -> sql.Composable:
    return sql.SQL(", ").join(sql.Identifier(n) for n in names)


@asynccontextmanager
async def temporary_membership(conn: psycopg.AsyncConnection, *roles: str):
    """Make the admin a member of ``roles`` for the block, within a transaction, then not.

    Opens a transaction (or a savepoint inside the caller's): on an exception the
    rollback takes the grant back; otherwise it is revoked before the block's
    transaction ends. Roles that do not exist are skipped (the block's statements
    then fail on their own). The block must not drop a role it was granted.
    """
    async with conn.transaction():
        granted = await _grantable(conn, roles)
        if granted:
            await conn.execute(sql.SQL("GRANT {} TO CURRENT_USER").format(_roles(granted)))
        yield
        if granted:
            # RESET first: REVOKE of the role the session acts as would leave it acting as it.
            await conn.execute("RESET ROLE")
            await conn.execute(sql.SQL("REVOKE {} FROM CURRENT_USER").format(_roles(granted)))


@asynccontextmanager
async def reading_membership(conn: psycopg.AsyncConnection, *roles: str):
    """Make the admin a member of ``roles`` for a block that only reads, then roll it all back.

    The block runs in a transaction (a savepoint inside the caller's) that always ends
    in a rollback, which takes the grant back with it: a write in the block is lost.
    Granting what the admin already has (a superuser, or an enclosing block's grant)
    is a no-op notice, and the rollback leaves that membership as it was.
    """
    names = sorted({r for r in roles if r})
    async with conn.transaction(force_rollback=True):
        if names:
            await conn.execute(sql.SQL("GRANT {} TO CURRENT_USER").format(_roles(names)))
        yield


async def revoke_leftovers(conn: psycopg.AsyncConnection) -> list[str]:
    """Revoke the admin's memberships in store roles (a role owning the schema of its name,
    ``u_*`` or ``t_*``); inside the caller's transaction. Returns the roles.
    """
    cur = await conn.execute(r"""
        SELECT r.rolname FROM pg_auth_members m
        JOIN pg_roles r ON r.oid = m.roleid
        JOIN pg_namespace n ON n.nspname = r.rolname AND n.nspowner = r.oid
        WHERE m.member = (SELECT oid FROM pg_roles WHERE rolname = current_user)
          AND m.grantor = m.member AND NOT r.rolsuper AND (r.rolname LIKE 'u\_%' OR r.rolname LIKE 't\_%')
        ORDER BY 1""")
    names = [row[0] for row in await cur.fetchall()]
    if names:
        await conn.execute(sql.SQL("REVOKE {} FROM CURRENT_USER").format(_roles(names)))
    return names
