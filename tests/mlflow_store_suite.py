"""MLflow's own tracking-store tests, run against a user's store made by MLflow and one made by our replay.

Issue 13: a store whose tables came from the replayed recording
(:mod:`enertef_hub.mlflow_snapshot`) must be exactly what MLflow makes, so MLflow's
own store tests must pass against it as they pass against a store MLflow made
itself. This runner makes both kinds with the Workbench, the way a spawn does:

(a) ``made``: a new user whose tables MLflow creates (``python -m enertef_hub.mlflow_tables``
    as the user's role; ``MlflowStores.replay_mlflow_snapshot`` off);
(b) ``replayed``: a new user whose tables come from the recording, replayed as the
    user's role by ``MlflowStores.replay``, the spawner's own step;

then runs MLflow's tests (a source checkout at the release in this venv: they are not
in MLflow's wheel nor its sdist) once per store, each in a process that connects *as
the store's own role*: only the user's server environment (``MLFLOW_TRACKING_URI`` =
the user's login, search_path = the user's schema). MLflow's SQL-store fixtures use
``MLFLOW_TRACKING_URI`` when it is set, and between tests only delete rows and reset
the experiment sequence, so the tables under test stay ours; the guard plugin
(``tests/mlflow_guard``) makes any attempt by MLflow to create tables there a failure,
and the runner checks afterwards that every table still has the catalog identity it
had before the run. A test that fails against (b) but passes against (a) is a
difference of the replay (exit status 1); tests that fail against both need what a
user's role does not have, or parts of MLflow's test tree this checkout lacks.

    python -m tests.mlflow_store_suite --mlflow-source ~/src/mlflow [--out DIR] [TESTS...]

``TESTS`` are paths inside the checkout (default: ``tests/store/tracking/sqlalchemy_store``).
Needs the services (``scripts/services.sh start``); ``scripts/check-mlflow-store-tests.sh``
wraps it. Summary in ``DIR/summary.json``, each run's log and JUnit XML beside it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
GUARD_DIR = Path(__file__).resolve().parent / "mlflow_guard"
DEFAULT_TESTS = ["tests/store/tracking/sqlalchemy_store"]
FAILED = ("failed", "error")

TABLE_IDENTITY = """
SELECT c.relname, c.oid::bigint FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = %s AND c.relkind IN ('r', 'p', 'S') ORDER BY 1
"""


# -- reading results (pure) ------------------------------------------------------------


def read_junit(path: Path) -> dict[str, str]:
    """``{test id: "passed"|"failed"|"error"|"skipped"}`` from a pytest JUnit XML file."""
    outcomes = {}
    for case in ET.parse(path).getroot().iter("testcase"):
        test_id = f"{case.get('classname')}::{case.get('name')}"
        kinds = {child.tag for child in case}
        if "error" in kinds:
            outcome = "error"
        elif "failure" in kinds:
            outcome = "failed"
        elif "skipped" in kinds:
            outcome = "skipped"
        else:
            outcome = "passed"
        # A teardown error is reported as a second testcase of the same id: keep the worst.
        if outcomes.get(test_id) not in FAILED:
            outcomes[test_id] = outcome
    return outcomes


def count(outcomes: dict[str, str]) -> dict[str, int]:
    """How many tests had each outcome."""
    totals = {"passed": 0, "failed": 0, "error": 0, "skipped": 0}
    for outcome in outcomes.values():
        totals[outcome] += 1
    return totals


def compare(made: dict[str, str], replayed: dict[str, str]) -> dict[str, list[str]]:
    """What the replayed store does differently: failures (a) has not, and the reverse."""
    return {
        "fail_only_on_replayed": sorted(t for t, o in replayed.items() if o in FAILED and made.get(t) == "passed"),
        "fail_only_on_made": sorted(t for t, o in made.items() if o in FAILED and replayed.get(t) == "passed"),
        "not_run_on_both": sorted(set(made) ^ set(replayed)),
    }


# -- the two stores ----------------------------------------------------------------------


async def make_stores(workbench, prefix: str, replay_extra: str = ""):
    """Provision two new users; give (a) its tables by MLflow, (b) by the replay. Returns both results.

    ``replay_extra``: SQL run at the end of the replay, as a broken replay would leave
    the store (a self-test of whatever checks the stores: it must then fail).
    """
    from enertef_hub import mlflow_snapshot

    from tests.harness.names import unique_name

    made = await workbench.provision(unique_name(f"{prefix}a"))
    replayed = None
    try:
        replayed = await workbench.provision(unique_name(f"{prefix}b"))
        replay = workbench.mlflow.replay_mlflow_snapshot
        workbench.mlflow.replay_mlflow_snapshot = False  # (a): MLflow itself, in a subprocess, as the user's role
        try:
            await workbench.mlflow.ensure(made)
        finally:
            workbench.mlflow.replay_mlflow_snapshot = replay

        version = await workbench.mlflow.mlflow_release()
        async with workbench.postgres.connection() as conn:
            snapshot = await mlflow_snapshot.load_snapshot(conn, workbench.postgres.registry_schema, version)
        if snapshot is None:  # first run of this MLflow release on this database: record it now
            snapshot = await mlflow_snapshot.record_snapshot(
                workbench.postgres.admin_url, workbench.postgres.registry_schema,
                workbench.mlflow.mlflow_python, workbench.mlflow.mlflow_tables_timeout)
        stores = workbench.mlflow.of(replayed)[:1]  # the user's own store (no teams)
        replaying = {**snapshot, "script": f"{snapshot['script']};\n{replay_extra}"} if replay_extra else snapshot
        done, _ = await workbench.mlflow.replay(stores, replaying)  # the spawner's step
        if done != stores:
            raise RuntimeError(f"the replay into {stores[0].schema} failed: see the log above")
    except BaseException:
        for result in (made, replayed):  # nothing half-made is left behind
            if result is not None:
                await workbench.deprovision(result.resources.username, purge=True)
        raise
    return made, replayed, snapshot


def table_identity(admin_url: str, schema: str) -> dict[str, int]:
    """Each table and sequence of ``schema`` with its catalog OID (a re-created table gets a new one)."""
    import psycopg

    with psycopg.connect(admin_url, autocommit=True) as conn:
        return dict(conn.execute(TABLE_IDENTITY, (schema,)).fetchall())


# -- running MLflow's tests ------------------------------------------------------------------


def run_suite(label: str, environment: dict[str, str], source: Path, tests: list[str], out: Path,
              timeout: float, extra: list[str]) -> dict:
    """Run MLflow's tests against the store of ``environment`` (a user's server environment)."""
    env = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/tmp"), "LANG": "C.UTF-8",
           "PYTHONPATH": str(GUARD_DIR), "PYTHONDONTWRITEBYTECODE": "1"}
    env.update(environment)  # only the user's own credentials: what the user's notebook server gets
    junit = out / f"{label}.xml"
    log = out / f"{label}.log"
    cmd = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "enertef_mlflow_guard",
           "-q", "-rfE", f"--junitxml={junit}", "-o", "junit_family=xunit1", *extra, *tests]
    started = time.monotonic()
    with open(log, "w") as handle:
        proc = subprocess.run(cmd, cwd=source, env=env, stdout=handle, stderr=subprocess.STDOUT, timeout=timeout)
    seconds = round(time.monotonic() - started, 1)
    outcomes = read_junit(junit) if junit.exists() else {}
    return {"label": label, "exit": proc.returncode, "seconds": seconds, "outcomes": outcomes,
            "counts": count(outcomes), "log": str(log)}


async def main_async(args) -> int:
    from enertef_hub.workbench import Workbench

    source = Path(args.mlflow_source).resolve()
    tests = args.tests or DEFAULT_TESTS
    missing = [t for t in tests if not (source / t).exists()]
    if missing:
        print(f"error: not in {source}: {', '.join(missing)} (a checkout of MLflow's source at the"
              " release installed here is needed: the tests are not in its wheel or sdist)", file=sys.stderr)
        return 2
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    Workbench.clear_instance()
    workbench = Workbench.instance()
    made = replayed = None
    try:
        made, replayed, snapshot = await make_stores(workbench, args.prefix, args.replay_extra)
        admin_url = workbench.postgres.admin_url
        runs = {}
        for label, result in (("made", made), ("replayed", replayed)):
            schema = result.resources.schema
            before = table_identity(admin_url, schema)
            print(f"[{label}] {schema}: {len(before)} tables and sequences; running MLflow's tests…", flush=True)
            run = run_suite(label, result.environment, source, tests, out, args.timeout, args.pytest_args)
            after = table_identity(admin_url, schema)
            run["tables_replaced"] = sorted(name for name in before if after.get(name) != before[name])
            run["schema"] = schema
            runs[label] = run
            print(f"[{label}] {run['counts']} in {run['seconds']} s (pytest exit {run['exit']});"
                  f" tables replaced during the run: {len(run['tables_replaced'])}", flush=True)
    finally:
        for result in (made, replayed):
            if result is not None and not args.keep:
                await workbench.deprovision(result.resources.username, purge=True)
        await workbench.close()
        Workbench.clear_instance()

    difference = compare(runs["made"]["outcomes"], runs["replayed"]["outcomes"])
    import mlflow  # noqa: PLC0415 - only for the version in the summary

    summary = {
        "mlflow": mlflow.__version__, "head": snapshot["head"], "source": str(source), "tests": tests,
        **{label: {k: v for k, v in run.items() if k != "outcomes"} for label, run in runs.items()},
        **difference,
        "failing_on_both": sorted(t for t, o in runs["replayed"]["outcomes"].items()
                                  if o in FAILED and runs["made"]["outcomes"].get(t) in FAILED),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    print(f"(a) made by MLflow: {runs['made']['counts']}")
    print(f"(b) replayed:       {runs['replayed']['counts']}")
    print(f"fail only on (b): {len(difference['fail_only_on_replayed'])}; fail only on (a):"
          f" {len(difference['fail_only_on_made'])}; run on one side only: {len(difference['not_run_on_both'])}")
    for test_id in difference["fail_only_on_replayed"]:
        print(f"  REPLAY DIFFERS: {test_id}")
    print(f"details: {out / 'summary.json'}")
    bad = (difference["fail_only_on_replayed"] or runs["replayed"]["tables_replaced"]
           or runs["made"]["tables_replaced"] or not runs["replayed"]["outcomes"])
    return 1 if bad else 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mlflow-source", required=True,
                        help="checkout of MLflow's source at the release installed in this venv")
    parser.add_argument("--out", default=str(REPO / ".local" / "mlflow-store-tests"),
                        help="directory for the logs, JUnit files and summary.json")
    parser.add_argument("--prefix", default="mlst", help="username prefix of the two users made")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds one run of the tests may take")
    parser.add_argument("--replay-extra", default="", metavar="SQL",
                        help="self-test: SQL run at the end of the replay (e.g. 'DELETE FROM workspaces'),"
                        " to see the tests notice a broken replay")
    parser.add_argument("--keep", action="store_true", help="keep both users and their stores afterwards")
    parser.add_argument("--pytest-args", nargs=argparse.REMAINDER, default=[],
                        help="further pytest arguments (last on the line)")
    parser.add_argument("tests", nargs="*", help=f"test paths inside the checkout (default {DEFAULT_TESTS[0]})")
    args = parser.parse_args(argv)
    if not os.environ.get("ENERTEF_POSTGRES_ADMIN_URL"):
        from tests.harness.services import load_env_file

        os.environ.update(load_env_file(REPO / ".local" / "services.env"))
    return asyncio.run(main_async(args))


if __name__ == "__main__":
    sys.exit(main())
