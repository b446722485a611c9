"""Create MLflow's tables in a user's schema, as the user's own role.

Run by the hub as ``python -m enertef_hub.mlflow_tables`` with the user's server
environment (``MLFLOW_TRACKING_URI``, ``ENERTEF_MLFLOW_ARTIFACT_ROOT``): the tables
are then owned by the user, and the Default experiment keeps its artifacts in the
user's bucket. A per-user advisory lock makes a second concurrent run wait and find
the tables made, instead of racing MLflow's migrations.
"""

from __future__ import annotations

import os
import sys


def main() -> int:
    uri = os.environ["MLFLOW_TRACKING_URI"]
    artifact_root = os.environ["ENERTEF_MLFLOW_ARTIFACT_ROOT"]
    import sqlalchemy
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    engine = sqlalchemy.create_engine(uri, poolclass=sqlalchemy.pool.NullPool)
    with engine.connect() as conn:
        conn.execute(sqlalchemy.text("SELECT pg_advisory_lock(hashtextextended('enertef:mlflow:' || current_user, 0))"))
        try:
            SqlAlchemyStore(uri, artifact_root)
        finally:
            conn.execute(sqlalchemy.text("SELECT pg_advisory_unlock_all()"))
    engine.dispose()
    print("MLflow tables ready")
    return 0


if __name__ == "__main__":
    sys.exit(main())
