"""First-time provisioning as the number of accounts grows: 0, 1,000, 5,000, 10,000.

    .venv/bin/python -m benchmarks.bench_accounts [--sizes 0,1000,5000,10000] [--samples 20]

Starts a private PostgreSQL and MinIO (free ports, a temporary directory under /var/tmp,
stopped at the end), so the shared services are never filled. At each size it first
adds accounts up to that size through the hub's own code (registry row, role, schema,
grants: PostgresProvisioner.ensure_user_store, as a spawn does; their MinIO side is
left out, since MinIO's cost does not depend on PostgreSQL's), then times
``Workbench.provision`` of new users (PostgreSQL and MinIO) and prints p50/p95 and
the ratio to the empty system. It also prints how many roles the hub's admin role is
a member of. Target (issue 13): at 10,000 accounts, p50 at most 2x its value on an
empty system, with an admin role that is not a superuser. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

from enertef_hub.accounts import AccountRegistry
from enertef_hub.credentials import derive_secret
from enertef_hub.naming import make_user_resources
from enertef_hub.workbench import Workbench
from tests.harness.names import unique_name
from tests.harness.services import private_services
from tests.harness.workbench import services_config


async def add_accounts(wb: Workbench, count: int, batch: int = 200):
    """``count`` more accounts, made by the provisioning code's PostgreSQL steps."""
    registry = AccountRegistry(wb.postgres.registry_schema)
    made = 0
    while made < count:
        async with wb.postgres.connection() as conn, conn.transaction():
            for _ in range(min(batch, count - made)):
                name = unique_name("fill")
                account = await registry.ensure_active(conn, name)
                resources = make_user_resources(name, account.incarnation)
                password = derive_secret(wb.secret_key, "postgres", resources, account.generation)
                await wb.postgres.ensure_user_store(conn, resources, password)
                await registry.mark_ready(conn, account)
                made += 1


async def admin_memberships(wb: Workbench) -> int:
    async with wb.postgres.connection() as conn:
        cur = await conn.execute(
            "SELECT count(*) FROM pg_auth_members WHERE member = (SELECT oid FROM pg_roles WHERE rolname = current_user)")
        return (await cur.fetchone())[0]


async def main(args):
    with private_services("enertef-bench-accounts-") as env:
        wb = Workbench(config=services_config(env))
        await wb.provision(unique_name("warm"))  # pool open, one-time setup done
        total, base = 1, None
        print(f"{'accounts':>9}  {'p50':>9}  {'p95':>9}  {'x empty':>7}  admin role member of")
        for size in args.sizes:
            await add_accounts(wb, max(0, size - total))
            total = max(total, size)
            times = []
            for _ in range(args.samples):
                started = time.perf_counter()
                await wb.provision(unique_name("bench"))
                times.append((time.perf_counter() - started) * 1000)
            total += args.samples
            p50 = statistics.median(times)
            p95 = sorted(times)[min(len(times) - 1, round(0.95 * (len(times) - 1)))]
            base = base or p50
            print(f"{size:>9}  {p50:>7.1f}ms  {p95:>7.1f}ms  {p50 / base:>7.2f}  {await admin_memberships(wb)} roles")
        await wb.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=lambda s: [int(x) for x in s.split(",")], default=[0, 1000, 5000, 10000])
    parser.add_argument("--samples", type=int, default=20)
    asyncio.run(main(parser.parse_args()))
