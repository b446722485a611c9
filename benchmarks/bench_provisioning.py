"""Provisioning latency against the real services, with the bare round trips as baseline.

    scripts/services.sh start && . .local/services.env
    .venv/bin/python -m benchmarks.bench_provisioning [--first 40] [--repeat 200] [--storm 200]

Prints, in one run:
- baseline: one ``SELECT 1`` and one MinIO admin call (p50, p95);
- first-time provisioning of new users, one after another (p50, p95);
- repeat provisioning of an existing user (p50, p95);
- a storm of N first-time users at once: errors, total time, and the most
  PostgreSQL connections the hub's admin role held at any moment.
Targets (issue 2): repeat <= 10 ms p50; first-time <= 150 ms p50; storm with zero
errors and a bounded pool; (issue 13) callers of the storm finish in roughly arrival
order, the median caller by 60 % of its total time. Nothing is asserted: figures are
for humans.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import time

import psycopg

from enertef_hub.workbench import Workbench
from tests.harness.names import unique_name
from tests.harness.s3 import minio_admin


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def summary(label: str, seconds: list[float]) -> dict:
    ms = [s * 1000 for s in seconds]
    row = {"what": label, "n": len(ms), "p50_ms": round(statistics.median(ms), 2), "p95_ms": round(pct(ms, 0.95), 2)}
    print(f"{label:<38} n={row['n']:<4} p50={row['p50_ms']:>8.2f} ms  p95={row['p95_ms']:>8.2f} ms")
    return row


async def timed(coro_factory, n: int) -> list[float]:
    out = []
    for _ in range(n):
        started = time.perf_counter()
        await coro_factory()
        out.append(time.perf_counter() - started)
    return out


async def main(args) -> list[dict]:
    wb = Workbench.instance()
    rows = []
    await wb.provision(unique_name("benchwarm"))  # pool open, one-time setup done

    async with wb.postgres.connection() as conn:
        async def select_one():
            await (await conn.execute("SELECT 1")).fetchone()
        rows.append(summary("baseline: SELECT 1", await timed(select_one, 200)))
    name = unique_name("benchrepeat")
    repeat_user = (await wb.provision(name)).resources
    admin = minio_admin()
    # The admin call repeat provisioning makes: one user lookup.
    rows.append(summary("baseline: MinIO admin call (user info)",
                        await timed(lambda: asyncio.to_thread(admin.user_info, repeat_user.minio_user), 100)))

    rows.append(summary("first-time provisioning", await timed(lambda: wb.provision(unique_name("benchfirst")), args.first)))
    rows.append(summary("repeat provisioning", await timed(lambda: wb.provision(name), args.repeat)))

    # Storm: N new users at once, sampling the hub's PostgreSQL connections meanwhile.
    peak = 0
    stop = asyncio.Event()

    async def sample():
        nonlocal peak
        with psycopg.connect(os.environ["ENERTEF_POSTGRES_ADMIN_URL"], autocommit=True) as watcher:
            while not stop.is_set():
                count = watcher.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'enertef-hub'"
                ).fetchone()[0]
                peak = max(peak, count)
                await asyncio.sleep(0.01)

    sampler = asyncio.create_task(sample())
    started = time.perf_counter()
    finished: list[float] = [0.0] * args.storm  # when each caller, in arrival order, got its answer

    async def caller(index: int):
        try:
            return await wb.provision(unique_name("benchstorm"))
        finally:
            finished[index] = time.perf_counter() - started

    results = await asyncio.gather(*(caller(i) for i in range(args.storm)), return_exceptions=True)
    total = time.perf_counter() - started
    stop.set()
    await sampler
    errors = [r for r in results if isinstance(r, BaseException)]
    # Fairness: callers should finish in roughly the order they arrived. The first
    # caller's and the median caller's finish, as a share of the storm's total time.
    first_share = finished[0] / total
    median_share = statistics.median(finished) / total
    storm = {"what": f"storm of {args.storm} first-time users", "errors": len(errors), "total_s": round(total, 2),
             "per_user_ms": round(total / args.storm * 1000, 2), "peak_hub_pg_connections": peak,
             "pool_max_size": wb.postgres.pool_max_size, "first_caller_share": round(first_share, 2),
             "median_caller_share": round(median_share, 2)}
    print(f"{storm['what']:<38} errors={storm['errors']} total={storm['total_s']} s"
          f" ({storm['per_user_ms']} ms/user)  peak PostgreSQL connections={peak}"
          f" (pool max {wb.postgres.pool_max_size})")
    print(f"{'  arrival order':<38} first caller done at {first_share:.0%} of the storm,"
          f" median caller at {median_share:.0%}")
    if errors:
        print("first error:", errors[0])
    rows.append(storm)
    await wb.close()
    return rows


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--first", type=int, default=40)
    parser.add_argument("--repeat", type=int, default=200)
    parser.add_argument("--storm", type=int, default=200)
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()
    figures = asyncio.run(main(args))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(figures, f, indent=2)
