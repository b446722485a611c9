"""Create or upgrade MLflow's tables in one store (a user's or a team's schema), as the store's role.

Run by the hub as ``python -m enertef_hub.mlflow_tables`` with the store's
environment (``MLFLOW_TRACKING_URI``, ``ENERTEF_MLFLOW_ARTIFACT_ROOT``): tables are
created, and migrations run, as the role that owns the schema, so the store stays
the user's (or the team's) own. A per-store advisory lock (keyed on the role the
connection acts as) makes a second concurrent run wait and then find the work done,
instead of racing MLflow's migrations.

    python -m enertef_hub.mlflow_tables            create or upgrade; print a JSON summary
    python -m enertef_hub.mlflow_tables --head     print this MLflow's schema head and version

Exit codes: 0 done; 1 failed (MLflow's error on stderr); 3 the store is *newer*
than this MLflow (made by a later release): nothing is changed, since a downgrade
would lose data. An upgrade runs in one PostgreSQL transaction (DDL is
transactional there), so a failed upgrade leaves the store exactly as it was.
"""

from __future__ import annotations

import json
import os
import sys

#: Exit code: the store's schema revision is unknown to this MLflow (a later release made it).
EXIT_STORE_NEWER = 3

#: A store's MLflow lock, keyed on the store's role: taken here and by the MLflow of the
#: user's server while it opens the store (the session's role: ``current_user``), and by
#: the hub's replay of MLflow's tables (for one transaction, the role as a parameter), so
#: table creation never runs twice at once.
_STORE_LOCK_KEY = "hashtextextended('enertef:mlflow:' || {role}, 0)"
STORE_LOCK_SQL = f"SELECT pg_advisory_lock({_STORE_LOCK_KEY.format(role='current_user')})"
STORE_XACT_LOCK_SQL = f"SELECT pg_advisory_xact_lock({_STORE_LOCK_KEY.format(role='%s')})"


def schema_head() -> dict:
    """The alembic head revision of the installed MLflow, and its version."""
    import mlflow
    from mlflow.store.db.utils import _get_latest_schema_revision

    return {"head": _get_latest_schema_revision(), "mlflow": mlflow.__version__}


def read_schema_head() -> dict:
    """:func:`schema_head` read from MLflow's migration files, without importing MLflow.

    The hub asks this at the first spawn after it starts, before the server starts:
    importing MLflow would cost seconds there. The head is the one revision that no
    migration names as its ``down_revision``; anything unexpected falls back to MLflow.
    """
    import importlib.metadata
    import importlib.util
    import re
    from pathlib import Path

    spec = importlib.util.find_spec("mlflow")  # locates the package, runs none of it
    versions = Path(spec.origin).parent / "store" / "db_migrations" / "versions"
    revisions, parents = set(), set()
    for path in versions.glob("[0-9a-f]*_*.py"):  # revision files, not __init__.py
        text = path.read_text()
        revision = re.search(r"^revision\s*=\s*[\"']([0-9a-f]+)[\"']", text, re.M)
        down = re.search(r"^down_revision\s*=\s*(.+)$", text, re.M)
        if revision is None or down is None:
            return schema_head()
        revisions.add(revision.group(1))
        parents.update(re.findall(r"[\"']([0-9a-f]+)[\"']", down.group(1)))
    heads = revisions - parents
    if len(heads) != 1:
        return schema_head()
    head = heads.pop()
    for dist in ("mlflow", "mlflow-skinny"):
        try:
            return {"head": head, "mlflow": importlib.metadata.version(dist)}
        except importlib.metadata.PackageNotFoundError:
            continue
    return schema_head()


def ensure_store(uri: str, artifact_root: str) -> dict:
    """Create the tables of an empty store, or upgrade an older one to this MLflow's head.

    Returns ``{"action": "created"|"upgraded"|"current", "from": rev, "to": head}``.
    Raises ``StoreNewerError`` when the store was made by a later MLflow.
    """
    import sqlalchemy
    from alembic.migration import MigrationContext
    from alembic.script import ScriptDirectory
    from mlflow.store.db.utils import _get_alembic_config, _upgrade_db
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    head = schema_head()
    engine = sqlalchemy.create_engine(uri, poolclass=sqlalchemy.pool.NullPool)
    try:
        with engine.connect() as conn:
            conn.execute(sqlalchemy.text(STORE_LOCK_SQL))
            try:
                current = MigrationContext.configure(conn).get_current_revision()
                # End this read's transaction (the session's lock stays): the upgrade
                # below, on another connection, may need exclusive table locks.
                conn.commit()
                action = "created" if current is None else "current"
                if current is not None and current != head["head"]:
                    script = ScriptDirectory.from_config(_get_alembic_config(""))
                    if current not in {rev.revision for rev in script.walk_revisions()}:
                        raise StoreNewerError(current, head)
                    # One transaction for every migration step (engine.begin() in MLflow):
                    # on PostgreSQL a failure rolls the whole upgrade back.
                    _upgrade_db(engine)
                    action = "upgraded"
                # Creates the tables of an empty schema and the Default experiment; on
                # an up-to-date store it only checks the schema version.
                SqlAlchemyStore(uri, artifact_root)
            finally:
                conn.execute(sqlalchemy.text("SELECT pg_advisory_unlock_all()"))
                conn.commit()
    finally:
        engine.dispose()
    return {"action": action, "from": current, "to": head["head"], "mlflow": head["mlflow"]}


class StoreNewerError(Exception):
    """The store's schema revision is not one this MLflow knows: a later MLflow made it."""

    def __init__(self, revision: str, head: dict):
        super().__init__(
            f"the store is at MLflow schema revision {revision}, which MLflow {head['mlflow']}"
            f" (head {head['head']}) does not know: a later MLflow release made it. Nothing was"
            " changed; use that MLflow release (or a later one) for this store."
        )


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv == ["--head"]:
        print(json.dumps(read_schema_head()))
        return 0
    try:
        result = ensure_store(os.environ["MLFLOW_TRACKING_URI"], os.environ["ENERTEF_MLFLOW_ARTIFACT_ROOT"])
    except StoreNewerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_STORE_NEWER
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
