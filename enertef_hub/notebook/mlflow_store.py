"""MLflow tracking store for PostgreSQL URIs whose artifacts default to the user's bucket.

With a database tracking URI, MLflow gives every new experiment an artifact location
under the *local* ``./mlruns`` unless the caller passes an artifact root, so a plain
``mlflow.start_run()`` in a notebook would write artifacts next to the notebook instead
of into MinIO. MLflow lets packages register tracking stores per URI scheme through the
``mlflow.tracking_store`` entry-point group, and entry points are registered *after*
the built-in schemes, so ours replaces the built-in builder for ``postgresql``.

Note that MLflow looks stores up by *database type*: ``postgresql+psycopg://...`` is
looked up as ``postgresql`` (``mlflow.utils.uri.get_uri_scheme``), so the entry point
must be named ``postgresql``.

Behaviour is exactly MLflow's own ``_get_sqlalchemy_store`` except for the default
artifact root, chosen in this order:

1. the ``artifact_uri`` MLflow passes (e.g. ``mlflow server --default-artifact-root``);
2. ``_MLFLOW_SERVER_ARTIFACT_ROOT``, which MLflow's server sets for itself;
3. a team store (URI option ``-c role=t_<team>``): ``s3://team-<team>/mlflow``;
4. ``$ENERTEF_MLFLOW_ARTIFACT_ROOT`` (``s3://user-alice/mlflow``), set by the hub;
5. MLflow's default (``./mlruns``).

Runs are also attributed to the hub user (``$JUPYTERHUB_USER``, set by JupyterHub in
every server) instead of the operating-system account MLflow reads by default
(``jupyter-alice`` on one machine, ``jovyan`` for everyone on Kubernetes), so a
team store tells who ran what. A ``mlflow.user`` tag the caller set explicitly is kept.

In a Jupyter kernel, MLflow's informational log lines ("Creating a new experiment")
are printed as ordinary output instead of stderr, which Jupyter shows in red as if
something had failed; warnings and errors stay on stderr.
"""

from __future__ import annotations

import contextlib
import getpass
import logging
import os
import re
import sys
from urllib.parse import parse_qs, urlsplit

from ..naming import make_team_resources, team_of_role

#: Environment variable the hub sets in each server: the user's artifact root.
ARTIFACT_ROOT_ENV = "ENERTEF_MLFLOW_ARTIFACT_ROOT"
#: MLflow's own (private) variable for the server's artifact root; it wins when set.
_MLFLOW_SERVER_ARTIFACT_ROOT_ENV = "_MLFLOW_SERVER_ARTIFACT_ROOT"

_ROLE_OPTION = re.compile(r"(?:^|\s)-c\s*role=(\S+)")


def make_default_artifact_root(store_uri: str, environ: dict[str, str] | None = None) -> str | None:
    """The artifact root new experiments of *store_uri* should get, or None for MLflow's default.

    Pure: reads only *environ* (default ``os.environ``) and the URI.
    """
    environ = os.environ if environ is None else environ
    if environ.get(_MLFLOW_SERVER_ARTIFACT_ROOT_ENV):
        return environ[_MLFLOW_SERVER_ARTIFACT_ROOT_ENV]
    team = _team_of(store_uri)
    if team is not None:
        return f"s3://{make_team_resources(team).bucket}/mlflow"
    return environ.get(ARTIFACT_ROOT_ENV) or None


def _team_of(store_uri: str) -> str | None:
    """Team name if the URI connects with a team role (``options=-c role=t_<team> ...``)."""
    for options in parse_qs(urlsplit(store_uri).query).get("options", []):
        match = _ROLE_OPTION.search(options)
        team = team_of_role(match.group(1)) if match else None
        if team is not None:
            return team
    return None


def make_tracking_store(store_uri: str, artifact_uri: str | None = None, **kwargs):
    """Entry point for ``mlflow.tracking_store``: MLflow's SQLAlchemy store with our artifact default."""
    # Imported here: MLflow loads this module while ``mlflow.tracking`` is importing.
    from mlflow.tracking._tracking_service.utils import _get_sqlalchemy_store

    if artifact_uri is None:
        artifact_uri = make_default_artifact_root(store_uri)
    with holding_store_lock(store_uri):
        store = _get_sqlalchemy_store(store_uri, artifact_uri)
    if "ipykernel" in sys.modules:
        show_mlflow_info_as_output()
    hub_user = os.environ.get(HUB_USER_ENV)
    if hub_user:
        attribute_runs_to(store, hub_user)
    return store


def make_registry_store(store_uri: str):
    """Entry point for ``mlflow.model_registry_store``: MLflow's own, opened under the store's lock.

    MLflow's model registry store creates the tables of an empty store too, so it
    waits for the hub's table creation like the tracking store does.
    """
    from mlflow.tracking._model_registry.utils import _get_sqlalchemy_store

    with holding_store_lock(store_uri):
        return _get_sqlalchemy_store(store_uri)


@contextlib.contextmanager
def holding_store_lock(store_uri: str):
    """Hold the store's MLflow lock while MLflow opens it (creating its tables if there are none).

    The hub gives a new store its tables once the user's server is up, under this
    lock (:mod:`enertef_hub.mlflow_tables`). An MLflow call in the first moments
    waits for that to end and finds the tables, instead of creating them at the same
    time and failing on the hub's. If the lock cannot be taken (the database is
    unreachable), MLflow goes on and reports the problem itself.
    """
    import sqlalchemy

    from enertef_hub.mlflow_tables import STORE_LOCK_SQL

    engine = sqlalchemy.create_engine(store_uri, poolclass=sqlalchemy.pool.NullPool)
    conn = None
    try:
        try:
            conn = engine.connect()
            conn.execute(sqlalchemy.text(STORE_LOCK_SQL))
            conn.commit()  # the session's lock stays; no transaction is left open
        except sqlalchemy.exc.SQLAlchemyError:
            pass  # MLflow's own connection reports it
        yield
    finally:
        if conn is not None:
            conn.close()  # the session ends, and its lock with it
        engine.dispose()


#: Set by JupyterHub in every single-user server: the hub username.
HUB_USER_ENV = "JUPYTERHUB_USER"
_USER_TAG = "mlflow.user"


def make_run_attribution(user_id: str, tags, hub_user: str, os_user: str | None):
    """``(user_id, tags)`` with MLflow's OS-account default replaced by *hub_user* (pure).

    Only the default is replaced (the value MLflow took from the OS account, or
    none); a ``mlflow.user`` tag the caller chose stays as it is.
    """
    from mlflow.entities import RunTag

    defaults = {None, "", "unknown", os_user}
    new_tags = []
    for tag in tags or []:
        if tag.key == _USER_TAG and tag.value in defaults:
            tag = RunTag(_USER_TAG, hub_user)
        new_tags.append(tag)
    if not any(t.key == _USER_TAG for t in new_tags):
        new_tags.append(RunTag(_USER_TAG, hub_user))
    return (hub_user if user_id in defaults else user_id), new_tags


def attribute_runs_to(store, hub_user: str):
    """Make *store* record *hub_user* as the creator of runs MLflow attributes to the OS account."""
    if getattr(store, "_enertef_hub_user", None) == hub_user:
        return  # MLflow caches stores: patch each once
    create_run = type(store).create_run
    try:
        os_user = getpass.getuser()
    except Exception:  # no login name at all (some containers)
        os_user = None

    def create_run_as_hub_user(experiment_id, user_id, start_time, tags, run_name):
        user_id, tags = make_run_attribution(user_id, tags, hub_user, os_user)
        return create_run(store, experiment_id, user_id, start_time, tags, run_name)

    store.create_run = create_run_as_hub_user
    store._enertef_hub_user = hub_user


def show_mlflow_info_as_output() -> None:
    """Send MLflow's INFO lines to stdout, keep WARNING and above on stderr (idempotent)."""
    logger = logging.getLogger("mlflow")
    if any(getattr(h, "_enertef_info", False) for h in logger.handlers):
        return
    for handler in list(logger.handlers):
        if isinstance(handler, logging.StreamHandler):
            handler.addFilter(lambda record: record.levelno >= logging.WARNING)
            info = logging.StreamHandler(sys.stdout)
            info.setFormatter(handler.formatter)
            info.setLevel(handler.level)
            info.addFilter(lambda record: record.levelno < logging.WARNING)
            info._enertef_info = True
            logger.addHandler(info)
            return
