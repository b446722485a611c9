"""A replayed store is the store MLflow makes, object for object and row for row (issue 13).

The full proof is MLflow's own tracking-store tests run against both kinds of store
(``tests/mlflow_store_suite.py``, ``scripts/check-mlflow-store-tests.sh``); they need
MLflow's source tree, which is in neither its wheel nor its sdist, so CI cannot run
them. This is what CI checks instead, on the same two stores
(``tests.mlflow_store_suite.make_stores``: one whose tables MLflow creates as the
user's role, one given them by the spawner's replay):

- ``pg_dump --schema-only`` of each store, made by the store's own role, is the same
  text once the store's name is taken out: every table, column, default, constraint,
  index, sequence, function, trigger, owner and grant (the catalog test in
  ``test_mlflow_snapshot.py`` reads no functions, triggers or grants);
- after MLflow has opened each store once as its user (MLflow adds the Default
  experiment at first use), ``pg_dump --data-only`` is the same too, timestamps aside:
  the rows the creation leaves (``workspaces``, ``alembic_version``) and the sequences'
  positions;
- MLflow opens the replayed store without creating any table (it would if it found one
  missing) and finds its schema current.
"""

from __future__ import annotations

import os
import re
import subprocess

from tests.harness.services import run_as_user
from tests.mlflow_store_suite import make_stores

#: Opens the store as MLflow does in a user's server; fails if MLflow would create tables.
OPEN_STORE = """
import os
import mlflow.store.db.utils as db_utils
from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

def refuse(engine):
    raise SystemExit("MLflow found tables missing and was about to create them")

db_utils._initialize_tables = refuse
store = SqlAlchemyStore(os.environ["MLFLOW_TRACKING_URI"], os.environ["ENERTEF_MLFLOW_ARTIFACT_ROOT"])
db_utils._verify_schema(store.engine)
print("OPENED", [e.name for e in store.search_experiments()])
"""


def dump(environment: dict[str, str], schema: str, what: str, username: str) -> str:
    """``pg_dump --{what}-only`` of ``schema``, connected as the store's own role, its own names taken out."""
    uri = environment["MLFLOW_TRACKING_URI"].replace("postgresql+psycopg://", "postgresql://", 1)
    pg_dump = os.path.join(os.environ.get("ENERTEF_PG_BIN", "/usr/bin"), "pg_dump")
    proc = subprocess.run([pg_dump, f"--{what}-only", "--quote-all-identifiers", "--schema", schema, "--dbname", uri],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    text = "\n".join(line for line in proc.stdout.splitlines()
                     if not line.startswith(("\\restrict", "\\unrestrict")))  # a random key per dump
    # The store's role and schema share one name; the bucket is named after the user.
    return text.replace(schema, "STORE").replace(username, "USER")


def without_times(text: str) -> str:
    """Epoch-millisecond timestamps (MLflow writes the time of creation) replaced by one token."""
    return re.sub(r"\b1\d{12}\b", "<ms>", text)


async def test_replayed_store_dumps_as_the_store_mlflow_makes(workbench):
    made, replayed, _snapshot = await make_stores(workbench, "eqv")
    try:
        dumps = []
        for result in (made, replayed):
            res = result.resources
            schema_dump = dump(result.environment, res.schema, "schema", res.username)
            opened = run_as_user(result.environment, OPEN_STORE)
            assert opened.returncode == 0, opened.stdout[-2000:] + opened.stderr[-3000:]
            assert "OPENED ['Default']" in opened.stdout
            dumps.append((schema_dump, without_times(dump(result.environment, res.schema, "data", res.username))))
        (made_schema, made_data), (replayed_schema, replayed_data) = dumps
        assert "CREATE TRIGGER" in made_schema and "CREATE FUNCTION" in made_schema
        assert made_schema.count("CREATE TABLE") > 50
        assert replayed_schema == made_schema
        assert 'COPY "STORE"."workspaces"' in made_data and "\ndefault\t" in made_data
        assert replayed_data == made_data
    finally:
        for result in (made, replayed):
            await workbench.deprovision(result.resources.username, purge=True)
