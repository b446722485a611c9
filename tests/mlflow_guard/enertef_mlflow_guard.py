"""pytest plugin for MLflow's own test run against an enertef store (``-p enertef_mlflow_guard``).

MLflow's ``SqlAlchemyStore`` creates its tables whenever it finds any of them missing.
Against a store whose tables came from our replay, that would silently swap our
tables for MLflow's and the run would no longer test the replay. So the store
under test (the ``MLFLOW_TRACKING_URI`` the run starts with) may never be given
tables by MLflow: a test that makes MLflow try fails with this message instead.
Other databases (the SQLite files some tests make for themselves) are left alone.
The runner (``tests/mlflow_store_suite.py``) also checks, from the catalog, that
every table of the store is still the one it had before the run.
"""

import os

_store_url = None


def _same_database(url) -> bool:
    return (_store_url is not None and url.drivername.startswith("postgresql")
            and (url.username, url.host, url.port, url.database)
            == (_store_url.username, _store_url.host, _store_url.port, _store_url.database))


def pytest_configure(config):
    global _store_url
    from sqlalchemy.engine import make_url

    import mlflow.store.db.utils as db_utils

    uri = os.environ.get("MLFLOW_TRACKING_URI", "")
    if not uri.startswith("postgresql"):
        raise RuntimeError("enertef_mlflow_guard: MLFLOW_TRACKING_URI is not the PostgreSQL store under test")
    _store_url = make_url(uri)
    create_tables = db_utils._initialize_tables

    def refuse_in_store_under_test(engine):
        if _same_database(engine.url):
            raise RuntimeError(
                "MLflow was about to create its tables in the store under test (it found some"
                " missing): the store does not have every table MLflow expects")
        return create_tables(engine)

    # SqlAlchemyStore calls it as mlflow.store.db.utils._initialize_tables(...).
    db_utils._initialize_tables = refuse_in_store_under_test
