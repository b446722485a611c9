"""``enertef-hub``: the admin command line, reading the hub's own configuration.

    enertef-hub provision USER [--json]      create or repair; print the server environment
    enertef-hub deprovision USER [--purge]   revoke access everywhere (--purge: delete data)
    enertef-hub deprovision --all [--purge]  every active account (before uninstalling)
    enertef-hub restore USER --incarnation N give USER the kept data of a deleted account
    enertef-hub rotate USER                  new credentials; old keys and sessions end
    enertef-hub suspend USER                 withdrawn approval: no store/storage access, data kept
    enertef-hub status [USER] [--json]       lifecycle state and resources
    enertef-hub check                        connectivity and configuration doctor
    enertef-hub admin-password NAME          create or reset admin NAME's hub account (prints a new password once)
    enertef-hub sync [--loop SECONDS]        team memberships := JupyterHub's groups
    enertef-hub upgrade-stores [--jobs N]    bring every MLflow store to this MLflow's schema
    enertef-hub usage [--json]               sizes in PostgreSQL and MinIO, quotas, last activity

Settings come from ``--config FILE`` (a ``jupyterhub_config.py``) and the
``ENERTEF_*`` environment variables, exactly as in the hub. Exit codes: 0 done,
1 failed (the message says why), 2 bad usage or invalid name.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import sys

from traitlets.config import Config, PyFileConfigLoader

from . import events, reports
from .errors import EnerTEFError
from .hubapi import fetch_groups
from .naming import InvalidNameError
from .store_upgrades import ProgressBar
from .usage import collect_usage, format_usage
from .workbench import Workbench

SECRET_NAMES = ("AWS_SECRET_ACCESS_KEY",)


def mask_environment(env: dict[str, str]) -> dict[str, str]:
    """The environment with secrets replaced by ``***`` (pure; for human-readable output)."""
    masked = {}
    for key, value in env.items():
        if key in SECRET_NAMES:
            value = "***"
        elif "://" in value and "@" in value:
            scheme, rest = value.split("://", 1)
            userinfo, host = rest.split("@", 1)
            value = f"{scheme}://{userinfo.split(':', 1)[0]}:***@{host}"
        masked[key] = value
    return masked


def load_config(path: str | None) -> Config:
    """The traitlets config of a ``jupyterhub_config.py`` file, or an empty one."""
    if not path:
        return Config()
    import os

    loader = PyFileConfigLoader(os.path.basename(path), path=os.path.dirname(os.path.abspath(path)))
    return loader.load_config()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="enertef-hub", description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", help="jupyterhub_config.py to read settings from")
    parser.add_argument("--verbose", action="store_true", help="log what is done")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("provision", help="create or repair USER's store, bucket and credentials")
    p.add_argument("user")
    p.add_argument("--json", action="store_true", help="machine-readable output, secrets included")
    p.add_argument("--no-tables", action="store_true", help="do not wait for MLflow's tables")
    p = sub.add_parser("deprovision", help="revoke USER's access everywhere")
    p.add_argument("user", nargs="?")
    p.add_argument("--all", action="store_true",
                   help="every active account (before `helm uninstall`: nobody keeps working credentials)")
    p.add_argument("--purge", action="store_true", help="also delete USER's schemas and buckets")
    p = sub.add_parser("restore", help="give USER the kept data of a deleted incarnation")
    p.add_argument("user")
    p.add_argument("--incarnation", type=int, required=True)
    p.add_argument("--no-tables", action="store_true", help="do not wait for MLflow's tables")
    p = sub.add_parser("rotate", help="give USER new credentials")
    p.add_argument("user")
    p.add_argument("--no-tables", action="store_true", help="do not wait for MLflow's tables")
    p = sub.add_parser("suspend", help="take USER's database and storage access away, keep the data")
    p.add_argument("user")
    p = sub.add_parser("status", help="lifecycle state and resources")
    p.add_argument("user", nargs="?")
    p.add_argument("--json", action="store_true")
    sub.add_parser("check", help="check configuration and connectivity")
    p = sub.add_parser("admin-password", help="create or reset the hub account of admin NAME; prints a new password once")
    p.add_argument("user", metavar="NAME", help="a name of c.Authenticator.admin_users")
    p.add_argument("--password-stdin", action="store_true", help="read the password from stdin instead of generating one")
    p = sub.add_parser("sync", help="make team memberships match JupyterHub's groups")
    p.add_argument("--loop", type=float, metavar="SECONDS",
                   help="repeat every SECONDS (as a hub service); the bound on revocation delay")
    p.add_argument("--api-url", help="JupyterHub API URL (default $JUPYTERHUB_API_URL)")
    p = sub.add_parser("usage", help="bytes in PostgreSQL and MinIO per user, team and kept account")
    p.add_argument("--json", action="store_true", help="machine-readable (sizes in bytes)")
    p = sub.add_parser("upgrade-stores", help="upgrade every user and team MLflow store made by an older MLflow")
    p.add_argument("--jobs", type=int, default=2, metavar="N", help="stores upgraded at once (default 2)")
    p.add_argument("--json", action="store_true", help="machine-readable summary")
    return parser


async def run(args, workbench: Workbench) -> int:
    actor = "cli"
    if args.command in ("provision", "restore", "rotate"):
        if args.command == "provision":
            result = await workbench.provision(args.user, actor=actor)
        elif args.command == "restore":
            result = await workbench.restore(args.user, args.incarnation, actor=actor)
        else:
            result = await workbench.rotate(args.user, actor=actor)
            print("Old keys and sessions were ended: running servers need a restart.", file=sys.stderr)
        if not getattr(args, "no_tables", False):
            await workbench.mlflow.ensure(result, actor=actor)
        if getattr(args, "json", False):
            print(json.dumps({"user": result.resources.username, "incarnation": result.resources.incarnation,
                              "environment": result.environment}, indent=2))
        else:
            for key, value in sorted(mask_environment(result.environment).items()):
                print(f"{key}={value}")
        return 0
    if args.command == "deprovision":
        if bool(args.all) == bool(args.user):
            print("error: name one USER, or --all", file=sys.stderr)
            return 2
        names = ([user.username for user in (await workbench.holdings()).active_users()]
                 if args.all else [args.user])
        for name in names:
            done = await workbench.deprovision(name, purge=args.purge, actor=actor)
            print(f"{done['user']}: access revoked for incarnations {done['revoked'] or 'none'};"
                  f" data {'deleted for ' + str(done['purged']) if done['purged'] else 'kept'}")
        return 0
    if args.command == "suspend":
        done = await workbench.suspend(args.user, actor=actor)
        print(f"{done['user']}: access suspended for incarnations {done['suspended'] or 'none'}; data kept."
              " The next spawn after approval restores it.")
        return 0
    if args.command == "status":
        status = await (workbench.status(args.user) if args.user else workbench.accounts())
        print(json.dumps(status, indent=2, default=str) if args.json or not args.user else _format_status(status))
        return 0
    if args.command == "sync":
        # As a hub service it is stopped with SIGINT/SIGTERM: end the wait at once
        # (the hub otherwise waits for its stop timeouts before its own shutdown).
        stop = asyncio.Event()
        if args.loop:
            for signum in (signal.SIGINT, signal.SIGTERM):
                asyncio.get_running_loop().add_signal_handler(signum, stop.set)
        while not stop.is_set():
            try:
                groups = await asyncio.to_thread(fetch_groups, args.api_url)
                report = await workbench.sync_teams(groups, actor="sync")
                print(json.dumps(report, sort_keys=True), flush=True)
            except (EnerTEFError, OSError, RuntimeError) as exc:
                if not args.loop:
                    raise
                # As a service: report and try again next round, never die.
                print(f"error: team sync failed, retrying in {args.loop} s: {exc}", file=sys.stderr, flush=True)
            if not args.loop:
                return 0
            try:
                await asyncio.wait_for(stop.wait(), args.loop)
            except asyncio.TimeoutError:
                pass
        print("team sync stopped", file=sys.stderr, flush=True)
        return 0
    if args.command == "usage":
        rows = await collect_usage(workbench)
        print(json.dumps(rows, indent=2) if args.json else format_usage(rows, workbench.quotas.postgres_soft_limit))
        return 0
    if args.command == "upgrade-stores":
        return await upgrade_stores(workbench, args.jobs, args.json)
    if args.command == "check":
        rows = await reports.check(workbench)
        for what, ok, detail in rows:
            # None: a finding to look at (the revocation audit), not a broken service.
            print(f"{'ok ' if ok else 'WARN' if ok is None else 'FAIL'} {what}: {detail}")
        return 0 if all(ok is not False for _, ok, _ in rows) else 1
    raise AssertionError(args.command)


async def upgrade_stores(workbench: Workbench, jobs: int, as_json: bool) -> int:
    """Upgrade every behind store; one line per failure; exit 1 if any failed.

    Resumable by design: a store already at the head is skipped, so running it
    again after an interruption or a failure does only what is left.
    """
    stores = await workbench.all_mlflow_stores()
    upgrader = workbench.mlflow.upgrader
    head = await upgrader.head() if any(isinstance(s.revision, str) for s in stores) else None
    behind = await upgrader.behind(stores)
    print(f"{len(stores)} stores; {len(behind)} behind MLflow"
          f" {head['mlflow'] if head else '(none has tables)'}"
          f"{' schema ' + head['head'] if head else ''}", file=sys.stderr)
    bar = ProgressBar(len(behind), sys.stderr)
    outcomes = await upgrader.ensure_all(
        behind, jobs, on_done=lambda store, outcome: bar.update(store.schema, not isinstance(outcome, Exception)))
    failed = [(store, outcome) for store, outcome in outcomes if isinstance(outcome, Exception)]
    for store, outcome in outcomes:
        if not isinstance(outcome, Exception):
            events.log_event(workbench.log, "store-upgraded", store.name, "cli", store=store.schema,
                             revision_from=outcome["from"], revision_to=outcome["to"], seconds=outcome["seconds"])
    if as_json:
        print(json.dumps({
            "stores": len(stores), "head": head,
            "upgraded": [{"store": s.schema, **o} for s, o in outcomes if not isinstance(o, Exception)],
            "failed": [{"store": s.schema, "error": str(o)} for s, o in failed],
        }, indent=2))
    else:
        print(f"{len(behind) - len(failed)} upgraded, {len(failed)} failed,"
              f" {len(stores) - len(behind)} already current or empty")
        for store, exc in failed:
            print(f"FAIL {store.kind} store {store.schema}: {exc}")
    return 1 if failed else 0


def _format_status(status: dict) -> str:
    lines = [f"{status['user']}: {status['state']}"]
    for inc in status["incarnations"]:
        lines.append(
            f"  incarnation {inc['incarnation']}: {inc['state']}, generation {inc['generation']},"
            f" {'ready' if inc['ready'] else 'not ready'}"
        )
        lines.append(
            f"    postgres: role {inc['role']} {'can log in' if inc['can_login'] else 'cannot log in'},"
            f" schema {inc['schema']} {'with ' + str(inc['tables']) + ' tables' if inc['schema_exists'] else 'absent'}"
        )
        lines.append(
            f"    minio: user {inc['minio_user']} {inc['minio_user_status']}, bucket {inc['bucket']}"
            f" {str(inc['objects']) + ' objects' if inc['bucket_exists'] else 'absent'}"
        )
    return "\n".join(lines)


def admin_password(args) -> int:
    """``admin-password NAME``: the operator's way to make or reset an admin account (no services needed)."""
    from .admins import DEFAULT_DB_URL, generate_password, set_admin_password

    config = load_config(args.config)
    password = sys.stdin.readline().rstrip("\n") if args.password_stdin else generate_password()
    try:
        created = set_admin_password(
            config.JupyterHub.get("db_url", DEFAULT_DB_URL),
            config.Authenticator.get("admin_users", set()),
            args.user,
            password,
        )
    except (ValueError, InvalidNameError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    events.log_event(logging.getLogger("enertef-hub"), "admin-created" if created else "admin-password-reset",
                     args.user.lower(), actor="operator")
    print(f"{'created' if created else 'reset'} admin account {args.user.lower()}", file=sys.stderr)
    if not args.password_stdin:
        print(password)  # shown once: nothing else keeps it
    return 0


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s")
    if args.command == "admin-password":
        return admin_password(args)
    try:
        workbench = Workbench(config=load_config(args.config), log=logging.getLogger("enertef-hub"))
    except Exception as exc:
        print(f"error: could not read the configuration: {exc}", file=sys.stderr)
        return 2

    async def _main():
        try:
            return await run(args, workbench)
        finally:
            await workbench.close()

    try:
        return asyncio.run(_main())
    except InvalidNameError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (EnerTEFError, RuntimeError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
