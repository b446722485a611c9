"""Reading a value out of a user's or team's tables without running anything the user made.

The hub's admin role reads two things out of stores: MLflow's ``alembic_version`` (at
every spawn, to know whether the store must be upgraded) and the latest run time
(``enertef-hub usage``). A store's owner controls what such a read executes: a view
or rule in place of the table, a row-level-security policy (forced on the owner
too), a column of a type or domain whose operators are theirs, a function or
operator shadowing a built-in on the search path. Any of them would run the user's
SQL with the admin's rights, and the admin could then grant itself (and so the
user) anything (issue 19).

So a read here runs only where the catalogue shows a plain table whose columns are
of built-in types, with ``search_path`` pinned to ``pg_catalog`` (no user operator
or function can be resolved), ``row_security`` off (a policy raises an error instead
of running), and a short ``lock_timeout`` (a lock the user holds gives "no answer"
quickly). The table is locked before the catalogue is checked, so it cannot be
swapped for a view between the check and the read. Anything unexpected, including
any error, is :data:`UNREADABLE`: never a reason to retry as a stronger role.

The caller provides privileges (``PostgresProvisioner.reader_of``: membership for a
rolled-back transaction); everything here is a read.
"""

from __future__ import annotations

import psycopg
from psycopg import sql

#: Returned when the hub declines to read (or could not read) a value: the store is
#: not what MLflow made, or its owner is in the way. Callers treat it as "unknown".
UNREADABLE = object()

#: Built-in types the checked columns may have (never a domain or a user type).
_TEXT_TYPES = ("varchar", "text", "bpchar")
_INTEGER_TYPES = ("int8", "int4")

#: Milliseconds the hub waits for a lock on a user's table before giving up on a read.
READ_LOCK_TIMEOUT_MS = 1000


async def _pin(conn: psycopg.AsyncConnection):
    """Settings of the read's transaction: nothing of the user's can be resolved or run."""
    await conn.execute(
        "SELECT set_config('search_path', 'pg_catalog', true), set_config('row_security', 'off', true),"
        " set_config('lock_timeout', %s, true)", (f"{READ_LOCK_TIMEOUT_MS}ms",))


async def _plain_table_with(conn: psycopg.AsyncConnection, schema: str, table: str,
                            columns: dict[str, tuple[str, ...]]) -> bool:
    """Lock ``schema.table`` and tell whether it is a plain table, without row security,
    whose ``columns`` are of the given built-in types (checked in the catalogue only)."""
    await conn.execute(sql.SQL("LOCK TABLE ONLY {} IN ACCESS SHARE MODE").format(sql.Identifier(schema, table)))
    cur = await conn.execute(
        """SELECT c.relkind = 'r' AND NOT c.relrowsecurity AND NOT c.relforcerowsecurity
                  AND (SELECT count(*) FROM pg_catalog.pg_attribute a
                       JOIN pg_catalog.pg_type t ON t.oid = a.atttypid
                       WHERE a.attrelid = c.oid AND NOT a.attisdropped
                         AND t.typnamespace = 'pg_catalog'::regnamespace AND t.typtype = 'b'
                         AND (a.attname, t.typname) IN (SELECT * FROM unnest(%s::text[], %s::text[])))
                      = %s
           FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
           WHERE n.nspname = %s AND c.relname = %s""",
        ([name for name, types in columns.items() for _ in types],
         [t for types in columns.values() for t in types], len(columns), schema, table))
    row = await cur.fetchone()
    return bool(row and row[0])


async def read_alembic_revision(conn: psycopg.AsyncConnection, schema: str):
    """The revision in ``schema.alembic_version``; None if the table has no row;
    :data:`UNREADABLE` if the table is not MLflow's plain table or the read failed."""
    try:
        async with conn.transaction(force_rollback=True):
            await _pin(conn)
            if not await _plain_table_with(conn, schema, "alembic_version", {"version_num": _TEXT_TYPES}):
                return UNREADABLE
            cur = await conn.execute(sql.SQL("SELECT version_num::pg_catalog.text FROM ONLY {} LIMIT 2").format(
                sql.Identifier(schema, "alembic_version")))
            rows = await cur.fetchall()
    except psycopg.Error:
        return UNREADABLE
    if len(rows) > 1:
        return UNREADABLE  # MLflow keeps one row
    return rows[0][0] if rows else None


async def read_latest_run_millis(conn: psycopg.AsyncConnection, schema: str):
    """Latest start or end time (epoch milliseconds) in ``schema.runs``; None if it has no
    runs; :data:`UNREADABLE` if the table is not MLflow's plain table or the read failed."""
    try:
        async with conn.transaction(force_rollback=True):
            await _pin(conn)
            if not await _plain_table_with(conn, schema, "runs",
                                           {"start_time": _INTEGER_TYPES, "end_time": _INTEGER_TYPES}):
                return UNREADABLE
            cur = await conn.execute(sql.SQL(
                "SELECT pg_catalog.max(greatest(start_time, coalesce(end_time, 0)))"
                " FROM ONLY {}").format(sql.Identifier(schema, "runs")))
            (millis,) = await cur.fetchone()
    except psycopg.Error:
        return UNREADABLE
    return millis
