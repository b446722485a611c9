"""What reading users' stores without running their SQL costs (issue 19), against the real services.

    scripts/services.sh start && . .local/services.env
    .venv/bin/python -m benchmarks.bench_store_reads [--stores 20] [--rounds 200]

Prints, in one run, p50 and p95 of:
- baseline: the plain read of a store's ``alembic_version`` as the admin (a member of the
  store's role for a rolled-back transaction), as the hub did before issue 19;
- the hub's read now (``pg_reads.read_alembic_revision``: the table locked, the catalogue
  checked, ``search_path``/``row_security``/``lock_timeout`` pinned), same membership;
- ``read_revisions`` for one store, what every spawn runs;
- opening and closing a connection logged in as the store's own role
  (``PostgresProvisioner.store_connection``), which each replay of MLflow's tables now
  pays instead of borrowing a pooled admin connection.
Nothing is asserted: figures are for humans.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

from psycopg import sql

from enertef_hub.provisioners import pg_reads
from enertef_hub.workbench import Workbench
from tests.harness.names import unique_name


def figures(name: str, seconds: list[float]) -> str:
    ordered = sorted(seconds)
    p95 = ordered[max(0, int(len(ordered) * 0.95) - 1)]
    return f"{name:58} p50 {statistics.median(ordered) * 1000:7.2f} ms   p95 {p95 * 1000:7.2f} ms"


async def timed(rounds: int, call) -> list[float]:
    out = []
    for _ in range(rounds):
        started = time.perf_counter()
        await call()
        out.append(time.perf_counter() - started)
    return out


async def main(stores: int, rounds: int):
    workbench = Workbench()
    results = [await workbench.provision(unique_name("bench")) for _ in range(stores)]
    for result in results:
        await workbench.mlflow.ensure(result)
    schemas = [r.resources.schema for r in results]
    pick = iter(range(10**9))

    async def plain():
        schema = schemas[next(pick) % stores]
        async with workbench.postgres.connection() as conn, workbench.postgres.reader_of(conn, schema):
            cur = await conn.execute(sql.SQL("SELECT version_num FROM {}").format(
                sql.Identifier(schema, "alembic_version")))
            await cur.fetchone()

    async def safe():
        schema = schemas[next(pick) % stores]
        async with workbench.postgres.connection() as conn, workbench.postgres.reader_of(conn, schema):
            assert isinstance(await pg_reads.read_alembic_revision(conn, schema), str)

    async def spawn_read():
        result = results[next(pick) % stores]
        stores_read = await workbench.mlflow.read(result)
        assert isinstance(stores_read[0].revision, str)

    async def store_login():
        result = results[next(pick) % stores]
        async with workbench.postgres.store_connection(result.environment["MLFLOW_TRACKING_URI"]) as conn:
            await conn.execute("SELECT 1")

    try:
        for call in (plain, safe, spawn_read, store_login):  # warm-up
            await timed(5, call)
        rows = [
            ("baseline: plain read as the admin (before issue 19)", plain),
            ("safe read (pg_reads.read_alembic_revision)", safe),
            ("read_mlflow_stores, one store (each spawn)", spawn_read),
            ("connection as the store's own role (each replay)", store_login),
        ]
        print(f"{stores} stores, {rounds} rounds each")
        measured = {}
        for name, call in rows:
            measured[name] = await timed(rounds, call)
            print(figures(name, measured[name]))
        base = statistics.median(measured[rows[0][0]])
        print(f"safe read minus baseline (p50): {(statistics.median(measured[rows[1][0]]) - base) * 1000:+.2f} ms")
    finally:
        for result in results:
            await workbench.deprovision(result.resources.username, purge=True)
        await workbench.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stores", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=200)
    args = parser.parse_args()
    asyncio.run(main(args.stores, args.rounds))
