"""The hub's account registry: which incarnation of a username is live, and its credential generation.

Kept in the MLflow database (schema ``PostgresProvisioner.registry_schema``, closed to
users) so every hub process and the CLI agree. Each function runs on the caller's
connection and transaction; :func:`lock_username` serialises everything done to one
username across processes until that transaction ends.

The hub's locks are row locks in the registry's ``locks`` table (:func:`hub_lock`), not
advisory locks: any database role can take any advisory lock key, so a user could hold
an advisory lock of the hub and stall their own revocation, while no user role can even
read the registry's schema. How long the hub waits for one is bounded by
``PostgresProvisioner.lock_timeout``.
"""

from __future__ import annotations

from dataclasses import dataclass

import psycopg
from psycopg import sql


@dataclass(frozen=True)
class Account:
    """One incarnation of one username, as the registry knows it."""

    username: str
    incarnation: int
    state: str  #: 'active', 'deleted' or 'purged'
    generation: int  #: bumped by credential rotation and by deletion
    ready_generation: int | None  #: generation whose resources were all made; None if unfinished


#: Columns of the registry that make an :class:`Account`, in its field order.
_ACCOUNT_COLUMNS = "username, incarnation, state, generation, ready_generation"


async def hub_lock(conn: psycopg.AsyncConnection, schema: str, kind: str, name: str):
    """Lock ``(kind, name)`` until the current transaction ends: a row of ``<schema>.locks``.

    Made on first use; the no-op update locks the row as well when it exists. Only the
    hub's admin role can reach that schema, so only another hub process (or the CLI)
    ever holds the lock: a user cannot make the hub wait.
    """
    await conn.execute(
        sql.SQL(
            "INSERT INTO {} (kind, name) VALUES (%s, %s)"
            " ON CONFLICT (kind, name) DO UPDATE SET kind = EXCLUDED.kind"
        ).format(sql.Identifier(schema, "locks")),
        (kind, name),
    )


class AccountRegistry:
    """SQL for the registry tables, in one schema."""

    def __init__(self, schema: str):
        self.schema = schema
        self.table = sql.Identifier(schema, "accounts")
        self.members_table = sql.Identifier(schema, "team_members")

    async def lock_username(self, conn: psycopg.AsyncConnection, username: str):
        """Take the per-username lock until the current transaction ends (:func:`hub_lock`)."""
        await hub_lock(conn, self.schema, "user", username)

    async def active(self, conn: psycopg.AsyncConnection, username: str) -> Account | None:
        """The live incarnation of ``username``, if any."""
        cur = await conn.execute(
            sql.SQL(
                "SELECT " + _ACCOUNT_COLUMNS + " FROM {} WHERE username = %s AND state = 'active'"
            ).format(self.table),
            (username,),
        )
        row = await cur.fetchone()
        return Account(*row) if row else None

    async def all(self, conn: psycopg.AsyncConnection, username: str) -> list[Account]:
        """Every incarnation of ``username``, oldest first."""
        cur = await conn.execute(
            sql.SQL(
                "SELECT " + _ACCOUNT_COLUMNS + " FROM {} WHERE username = %s ORDER BY incarnation"
            ).format(self.table),
            (username,),
        )
        return [Account(*row) for row in await cur.fetchall()]

    async def list_all(self, conn: psycopg.AsyncConnection) -> list[dict]:
        """Every row of the registry, for ``enertef-hub status``."""
        cur = await conn.execute(
            sql.SQL(
                "SELECT username, incarnation, state, generation, created_at, deleted_at FROM {}"
                " ORDER BY username, incarnation"
            ).format(self.table)
        )
        names = [c.name for c in cur.description]
        return [dict(zip(names, row)) for row in await cur.fetchall()]

    async def ensure_active(self, conn: psycopg.AsyncConnection, username: str) -> Account:
        """The live incarnation, created (as the next number) if there is none."""
        account = await self.active(conn, username)
        if account is not None:
            return account
        cur = await conn.execute(
            sql.SQL(
                "INSERT INTO {table} (username, incarnation, state)"
                " SELECT %(u)s, coalesce(max(incarnation), 0) + 1, 'active' FROM {table} WHERE username = %(u)s"
                " RETURNING " + _ACCOUNT_COLUMNS
            ).format(table=self.table),
            {"u": username},
        )
        return Account(*await cur.fetchone())

    async def _update(self, conn: psycopg.AsyncConnection, account: Account, assignments: str, params=()):
        # ``assignments`` is always a constant of this module, never user input.
        await conn.execute(
            sql.SQL("UPDATE {} SET " + assignments + ", updated_at = now() WHERE username = %s AND incarnation = %s")
            .format(self.table),
            (*params, account.username, account.incarnation),
        )

    async def set_state(self, conn: psycopg.AsyncConnection, account: Account, state: str, *, bump: bool = False):
        """Move an incarnation to ``state``; ``bump`` invalidates its current secrets."""
        await self._update(
            conn, account,
            "state = %s, deleted_at = CASE WHEN %s = 'active' THEN NULL ELSE coalesce(deleted_at, now()) END,"
            " generation = generation + %s, ready_generation = NULL",
            (state, state, 1 if bump else 0),
        )

    async def set_restored_for_signup(self, conn: psycopg.AsyncConnection, account: Account, restored: bool):
        """Mark (or unmark) an active incarnation as restored by an admin for its person's next sign-up."""
        await self._update(conn, account, "restored_for_signup = %s", (restored,))

    async def restored_for_signup(self, conn: psycopg.AsyncConnection, account: Account) -> bool:
        """Whether an admin restored this incarnation for its person's next sign-up."""
        cur = await conn.execute(
            sql.SQL("SELECT restored_for_signup FROM {} WHERE username = %s AND incarnation = %s").format(self.table),
            (account.username, account.incarnation))
        row = await cur.fetchone()
        return bool(row and row[0])

    async def mark_ready(self, conn: psycopg.AsyncConnection, account: Account):
        """Record that every resource of this generation exists."""
        await self._update(conn, account, "ready_generation = generation")

    async def lock_team(self, conn: psycopg.AsyncConnection, team: str):
        """Take the per-team lock until the current transaction ends (:func:`hub_lock`)."""
        await hub_lock(conn, self.schema, "team", team)

    async def team_members(self, conn: psycopg.AsyncConnection) -> dict[str, set[str]]:
        """Granted memberships as the registry recorded them: team -> usernames."""
        cur = await conn.execute(sql.SQL("SELECT team, username FROM {}").format(self.members_table))
        teams: dict[str, set[str]] = {}
        for team, username in await cur.fetchall():
            teams.setdefault(team, set()).add(username)
        return teams

    async def teams_of(self, conn: psycopg.AsyncConnection, username: str) -> list[str]:
        """Teams ``username`` was granted, as the registry recorded them."""
        cur = await conn.execute(
            sql.SQL("SELECT team FROM {} WHERE username = %s ORDER BY team").format(self.members_table), (username,)
        )
        return [team for (team,) in await cur.fetchall()]

    async def set_member(self, conn: psycopg.AsyncConnection, team: str, username: str, member: bool):
        """Record that ``username`` was granted (or revoked from) ``team``."""
        if member:
            query = "INSERT INTO {} (team, username) VALUES (%s, %s) ON CONFLICT DO NOTHING"
        else:
            query = "DELETE FROM {} WHERE team = %s AND username = %s"
        await conn.execute(sql.SQL(query).format(self.members_table), (team, username))

    async def rotate(self, conn: psycopg.AsyncConnection, account: Account):
        """New secrets on the next provisioning of this incarnation."""
        await self._update(conn, account, "generation = generation + 1")
