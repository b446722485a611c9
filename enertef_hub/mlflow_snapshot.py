"""A new MLflow store in milliseconds: MLflow's own table creation, recorded once, replayed per store.

Giving a new store MLflow's tables means importing MLflow (~1.8 s of CPU) and running
its migrations (~1.3 s) in a subprocess (~230 MB), and that work is the same for every
new store of one MLflow release. So, once per MLflow schema head, the hub records the
SQL that MLflow itself executes to create its tables in an empty scratch schema
(``python -m enertef_hub.mlflow_snapshot record``, MLflow's ``_initialize_tables``:
``create_all`` of its initial tables, then every alembic migration), keeps it in the
registry, and replays it into each new store over a connection of the store's own
role (never the hub's admin acting as it), so the store owns every object exactly as
if MLflow had run as that role. The replay ends by checking MLflow's own ``alembic_version`` row
against the head the recording was made for; any difference rolls everything back.

Only statements that change the schema are kept (MLflow's catalog look-ups return
the same on every empty schema), and a recording that names its scratch schema
anywhere is refused, so a replay never reaches outside the store it is made for.
The Default experiment is not part of it: MLflow creates it at first use, with the
time of that use.
"""

from __future__ import annotations

import json
import os
import sys

from psycopg import sql

#: Registry table of recordings, one per MLflow schema head.
SNAPSHOT_TABLE = "mlflow_snapshots"


class SnapshotError(Exception):
    """A recording is unusable, or its replay did not give MLflow's schema head."""


# -- recording (runs in a subprocess with MLflow installed) -------------------------


def record(uri: str, scratch_schema: str) -> dict:
    """Create MLflow's tables at ``uri`` (search_path: an empty ``scratch_schema``) and record the SQL.

    Returns ``{"mlflow", "head", "statements": [[sql, params], ...]}``.
    """
    import mlflow
    import sqlalchemy
    from mlflow.store.db.utils import _get_latest_schema_revision, _initialize_tables

    statements = []

    def keep(conn, cursor, statement, parameters, context, executemany):
        if executemany:
            raise SnapshotError("MLflow's table creation ran a batch statement; not recordable")
        statements.append([statement, parameters])

    engine = sqlalchemy.create_engine(uri, poolclass=sqlalchemy.pool.NullPool)
    sqlalchemy.event.listen(engine, "before_cursor_execute", keep)
    try:
        _initialize_tables(engine)
    finally:
        engine.dispose()
    kept = make_replay_statements(statements, scratch_schema)
    return {"mlflow": mlflow.__version__, "head": _get_latest_schema_revision(), "statements": kept}


def make_replay_statements(statements: list, scratch_schema: str) -> list:
    """The statements of a recording that change the schema, checked to stay in it (pure).

    Raises SnapshotError if a kept statement names the scratch schema (it would reach
    outside the store it is replayed into) or carries a parameter JSON cannot keep.
    """
    kept = []
    for statement, parameters in statements:
        head = statement.lstrip().split(None, 1)[0].upper() if statement.strip() else ""
        if head in ("SELECT", "SHOW", "WITH"):
            continue  # look-ups: the same answers on every empty schema
        if scratch_schema in statement or scratch_schema in json.dumps(parameters, default=str):
            raise SnapshotError(f"a recorded statement names the scratch schema: {statement[:200]}")
        try:
            json.dumps(parameters)
        except TypeError:
            raise SnapshotError(f"a recorded statement has parameters JSON cannot keep: {statement[:200]}") from None
        kept.append([statement, parameters])
    if not any(s.lstrip().upper().startswith("CREATE TABLE") for s, _ in kept):
        raise SnapshotError("the recording creates no table")
    return kept


# -- keeping and replaying (in the hub) ----------------------------------------------


def make_snapshot_table_statement(registry_schema: str) -> sql.Composed:
    """DDL of the registry table that keeps recordings, one per MLflow release (pure)."""
    return sql.SQL(
        "CREATE TABLE IF NOT EXISTS {} (mlflow text PRIMARY KEY, head text NOT NULL, script text NOT NULL,"
        " statements jsonb NOT NULL, recorded_at timestamptz NOT NULL DEFAULT now())"
    ).format(sql.Identifier(registry_schema, SNAPSHOT_TABLE))


async def load_snapshot(conn, registry_schema: str, mlflow_version: str) -> dict | None:
    """The recording made with MLflow ``mlflow_version``, or None."""
    cur = await conn.execute("SELECT to_regclass(%s)", (f"{registry_schema}.{SNAPSHOT_TABLE}",))
    if (await cur.fetchone())[0] is None:
        return None
    cur = await conn.execute(
        sql.SQL("SELECT head, script FROM {} WHERE mlflow = %s").format(
            sql.Identifier(registry_schema, SNAPSHOT_TABLE)), (mlflow_version,))
    row = await cur.fetchone()
    return None if row is None else {"mlflow": mlflow_version, "head": row[0], "script": row[1]}


async def save_snapshot(conn, registry_schema: str, snapshot: dict) -> dict:
    """Keep a recording; return it with ``script``, its statements bound into one SQL text.

    One text, sent in one round trip, replays ~360 statements in a fraction of the time
    one round trip each would take. Values are bound by psycopg's own client-side
    binding, with this connection's settings.
    """
    import psycopg
    from psycopg.types.json import Jsonb

    binder = psycopg.AsyncClientCursor(conn)
    script = ";\n".join(binder.mogrify(statement, parameters) for statement, parameters in snapshot["statements"])
    await conn.execute(make_snapshot_table_statement(registry_schema))
    await conn.execute(
        sql.SQL("INSERT INTO {} (mlflow, head, script, statements) VALUES (%s, %s, %s, %s)"
                " ON CONFLICT (mlflow) DO NOTHING").format(sql.Identifier(registry_schema, SNAPSHOT_TABLE)),
        (snapshot["mlflow"], snapshot["head"], script, Jsonb(snapshot["statements"])),
    )
    return {"mlflow": snapshot["mlflow"], "head": snapshot["head"], "script": script}


async def replay(conn, snapshot: dict, role: str, schema: str) -> None:
    """Create MLflow's tables in ``schema`` as ``role``, inside the caller's transaction.

    The connection must already act as ``role`` and as nothing stronger: logged in as
    the store's own role, or as a team member's login role acting as the team. Never
    a ``SET ROLE`` from the hub's admin: whatever the store's owner placed in the
    schema beforehand (a trigger, a function or operator the statements resolve to)
    could ``RESET ROLE`` back to the admin and act with its rights (issue 19).
    Raises SnapshotError (the caller's transaction must then roll back) if the
    connection is not ``role`` or the result is not at the head.
    """
    cur = await conn.execute("SELECT current_user, session_user, (SELECT rolcreaterole OR rolsuper FROM pg_roles"
                             " WHERE rolname = session_user)")
    current, session, strong = await cur.fetchone()
    if current != role or strong:
        raise SnapshotError(f"replay into {schema} must run as {role} alone, not as {session}/{current}")
    await conn.execute(sql.SQL("SET LOCAL search_path TO {schema}").format(schema=sql.Identifier(schema)),
                       prepare=False)
    try:
        await conn.execute(snapshot["script"], prepare=False)
        cur = await conn.execute(sql.SQL("SELECT version_num FROM {}").format(
            sql.Identifier(schema, "alembic_version")))
        versions = [row[0] for row in await cur.fetchall()]
    finally:
        await conn.execute("RESET search_path", prepare=False)
    if versions != [snapshot["head"]]:
        raise SnapshotError(f"replay gave alembic_version {versions}, not {snapshot['head']}")


async def record_snapshot(admin_url: str, registry_schema: str, python: str, timeout: float) -> dict:
    """Record MLflow's table creation with the MLflow of ``python`` and keep it in the registry.

    A scratch schema of the admin role takes the tables for the recording and is
    dropped afterwards. Raises SnapshotError with MLflow's message if it fails.
    """
    import asyncio
    import secrets

    import psycopg

    scratch = f"enertef_snapshot_{secrets.token_hex(6)}"
    async with await psycopg.AsyncConnection.connect(admin_url, autocommit=True) as conn:
        await conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(scratch)))
        try:
            env = {key: value for key, value in os.environ.items()
                   if not key.startswith(("ENERTEF_", "AWS_", "MLFLOW_", "PG"))}
            env["ENERTEF_SNAPSHOT_URI"] = _with_search_path(admin_url, scratch)
            env["ENERTEF_SNAPSHOT_SCHEMA"] = scratch
            proc = await asyncio.create_subprocess_exec(
                python, "-m", "enertef_hub.mlflow_snapshot", "record", env=env,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
            try:
                out, err = await asyncio.wait_for(proc.communicate(), timeout)
            except asyncio.TimeoutError:
                proc.kill()
                await proc.wait()
                raise SnapshotError(f"recording MLflow's tables took longer than {timeout} s") from None
            if proc.returncode != 0:
                raise SnapshotError(err.decode(errors="replace").strip().splitlines()[-1:] or "failed")
            snapshot = await save_snapshot(conn, registry_schema, json.loads(out.decode().strip().splitlines()[-1]))
        finally:
            await conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(scratch)))
    return snapshot


def _with_search_path(url: str, schema: str) -> str:
    """SQLAlchemy psycopg URL of ``url`` whose sessions use only ``schema`` (pure)."""
    from urllib.parse import quote

    scheme, rest = url.split("://", 1)
    separator = "&" if "?" in rest else "?"
    return f"postgresql+psycopg://{rest}{separator}options={quote(f'-c search_path={schema}')}" \
        if scheme in ("postgresql", "postgres") else url


# -- the recording subprocess --------------------------------------------------------


def main(argv=None) -> int:
    """``python -m enertef_hub.mlflow_snapshot record``: print a recording as JSON.

    Reads ``ENERTEF_SNAPSHOT_URI`` (SQLAlchemy URL whose search_path is an empty scratch
    schema) and ``ENERTEF_SNAPSHOT_SCHEMA`` (that schema's name) from the environment,
    so no secret is on the command line.
    """
    argv = sys.argv[1:] if argv is None else argv
    if argv != ["record"]:
        print("usage: python -m enertef_hub.mlflow_snapshot record", file=sys.stderr)
        return 2
    try:
        snapshot = record(os.environ["ENERTEF_SNAPSHOT_URI"], os.environ["ENERTEF_SNAPSHOT_SCHEMA"])
    except SnapshotError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(snapshot))
    return 0


if __name__ == "__main__":
    sys.exit(main())
