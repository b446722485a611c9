"""The admins' Accounts page (/hub/enertef/accounts) with many accounts, against the hub's own admin pages.

    .venv/bin/python -m benchmarks.bench_admin_accounts [--accounts 1500] [--deleted 75]
        [--samples 7] [--compare REV] [--shared]

Starts a private PostgreSQL and MinIO (free ports, a temporary directory under /var/tmp,
stopped at the end; ``--shared`` uses the running shared pair instead, leaving the
accounts behind) and a real hub (tests/harness/hub_config.py). It makes ``--accounts``
accounts with unique names the way spawns make them (``Workbench.provision``: role,
schema, bucket, MinIO user and quota; then MLflow's tables, replayed from the
recording as at a first spawn), each also a hub user, and deletes ``--deleted`` of
them in the hub (data kept). Then, logged in as the admin, it times (median and
p95 of ``--samples`` after one warm-up):

- the Accounts page as it opens (100 accounts), one name searched (``?q=``), a
  confirmation page, and the largest page (``?per_page=500``; code without pages
  shows every account each time);
- the hub's own ``/hub/admin`` page and the ``/hub/api/users`` page its panel loads
  (``limit=100``), as the baseline of the same run.

``--compare REV`` also starts a hub running the enertef_hub of git revision REV
(``git archive``, put first on the hub's PYTHONPATH) on the same accounts, and times
both hubs in turn, request by request: before and after in one run, under the same
load. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import os
import shutil
import statistics
import subprocess
import tarfile
import tempfile
import time
from pathlib import Path

from enertef_hub import mlflow_snapshot
from enertef_hub.workbench import Workbench
from tests.harness import REPO
from tests.harness.hub import running_hub
from tests.harness.names import unique_name
from tests.harness.services import private_services_env, start_services, stop_services
from tests.harness.workbench import services_config


def workbench(env: dict) -> Workbench:
    return Workbench(config=services_config(env))


async def make_accounts(env: dict, count: int, jobs: int = 6) -> list[str]:
    """``count`` accounts as first spawns make them (store with MLflow's tables, bucket, MinIO user)."""
    wb = workbench(env)
    version = await wb.mlflow.mlflow_release()
    async with wb.postgres.connection() as conn:
        recorded = await mlflow_snapshot.load_snapshot(conn, wb.postgres.registry_schema, version)
    if recorded is None:
        await wb.mlflow.record_snapshot()
    names, done, started = [], 0, time.perf_counter()
    limit = asyncio.Semaphore(jobs)

    async def one():
        nonlocal done
        async with limit:
            name = unique_name("acct")
            await wb.mlflow.ensure(await wb.provision(name))
            names.append(name)
            done += 1
            if done % 250 == 0:
                print(f"  {done} accounts ({time.perf_counter() - started:.0f} s)", flush=True)

    await asyncio.gather(*(one() for _ in range(count)))
    await wb.close()
    return names


def add_hub_users(hub, names: list[str]):
    for i in range(0, len(names), 200):
        hub.api("POST", "/users", json={"usernames": names[i:i + 200]}).raise_for_status()


def cases(hub, names: list[str]) -> list[tuple[str, object]]:
    """What is timed, as ``(label, fetch)``, on one hub, logged in as its admin."""
    admin = hub.admin_session()
    one = names[len(names) // 2]
    get = lambda path: lambda: admin.get(f"{hub.url}{path}", timeout=120)  # noqa: E731
    return [
        ("Accounts page", get("/hub/enertef/accounts")),
        ("Accounts, one name searched", get(f"/hub/enertef/accounts?q={one}")),
        ("Accounts, a confirmation page", get(f"/hub/enertef/accounts/{one}/rotate")),
        ("Accounts, 500 on one page", get("/hub/enertef/accounts?per_page=500")),
        ("hub /hub/admin page", get("/hub/admin")),
        ("hub /hub/api/users?limit=100", lambda: hub.api("GET", "/users?limit=100&include_stopped_servers=1",
                                                         headers={"Accept": "application/jupyterhub-pagination+json"})),
    ]


def measure(hubs: dict, names: list[str], samples: int) -> list[tuple]:
    """Time every case on every hub, the hubs' requests interleaved (load changes hit both alike)."""
    per_hub = {label: cases(hub, names) for label, hub in hubs.items()}
    rows = []
    for index, (what, _) in enumerate(next(iter(per_hub.values()))):
        times = {label: [] for label in hubs}
        sizes = {}
        for label in hubs:
            per_hub[label][index][1]().raise_for_status()  # warm-up: pools, caches
        for _ in range(samples):
            for label in hubs:
                started = time.perf_counter()
                response = per_hub[label][index][1]()
                times[label].append((time.perf_counter() - started) * 1000)
                response.raise_for_status()
                sizes[label] = len(response.content)
        for label in hubs:
            t = sorted(times[label])
            p50, p95 = statistics.median(t), t[min(len(t) - 1, round(0.95 * (len(t) - 1)))]
            rows.append((label, what, p50, p95, sizes[label]))
            print(f"  {label:<7} {what:<32} p50 {p50:8.1f} ms   p95 {p95:8.1f} ms   {sizes[label] / 1024:8.1f} KiB",
                  flush=True)
    return rows


def code_of(rev: str, into: Path) -> Path:
    """enertef_hub as of git revision ``rev``, unpacked in ``into`` (for the hub's PYTHONPATH)."""
    archive = subprocess.run(["git", "-C", str(REPO), "archive", rev, "enertef_hub"], capture_output=True, check=True)
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        tar.extractall(into)  # our own repository's files
    return into


def main(args):
    state = Path(tempfile.mkdtemp(prefix="enertef-bench-admin-", dir="/var/tmp"))
    os.chmod(state, 0o755)
    private = None if args.shared else private_services_env(state / "services")
    if private:
        (state / "services").mkdir()
    try:
        env = start_services(private)
        started = time.perf_counter()
        print(f"making {args.accounts} accounts ({'shared' if args.shared else 'private'} services) ...", flush=True)
        names = asyncio.run(make_accounts(env, args.accounts))
        print(f"  done in {time.perf_counter() - started:.0f} s", flush=True)
        deleted, kept = names[:args.deleted], names[args.deleted:]
        runs = [("before", code_of(args.compare, state / "before"))] if args.compare else []
        runs.append(("now", None))
        with contextlib.ExitStack() as stack:
            hubs = {}
            for index, (label, code) in enumerate(runs):
                (state / f"hub-{label}").mkdir()
                extra = {"PYTHONPATH": str(code)} if code else {}
                hub = hubs[label] = stack.enter_context(running_hub(env, state / f"hub-{label}", extra_env=extra))
                add_hub_users(hub, names if index == 0 else kept)
                if index == 0:
                    for name in deleted:  # deleted in the hub: data kept
                        hub.api("DELETE", f"/users/{name}").raise_for_status()
                print(f"{label}: hub at {hub.url}, {len(kept)} hub users, {len(deleted)} deleted (data kept)")
            rows = measure(hubs, kept, args.samples)
        print("\nsummary (p50, ms)")
        for what in dict.fromkeys(row[1] for row in rows):
            figures = "   ".join(f"{label} {p50:8.1f}" for label, w, p50, _, _ in rows if w == what)
            print(f"  {what:<32} {figures}")
    finally:
        if private:
            stop_services(private)
        shutil.rmtree(state, ignore_errors=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--accounts", type=int, default=1500)
    parser.add_argument("--deleted", type=int, default=75, help="of them deleted in the hub, data kept")
    parser.add_argument("--samples", type=int, default=7)
    parser.add_argument("--compare", metavar="REV", help="also time a hub with the enertef_hub of this git revision, in turn")
    parser.add_argument("--shared", action="store_true", help="use the shared services (accounts are left behind)")
    main(parser.parse_args())
