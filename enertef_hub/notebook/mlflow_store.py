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
"""

from __future__ import annotations

import os
import re
from urllib.parse import parse_qs, urlsplit

#: Environment variable the hub sets in each server: the user's artifact root.
ARTIFACT_ROOT_ENV = "ENERTEF_MLFLOW_ARTIFACT_ROOT"
#: MLflow's own (private) variable for the server's artifact root; it wins when set.
_MLFLOW_SERVER_ARTIFACT_ROOT_ENV = "_MLFLOW_SERVER_ARTIFACT_ROOT"

_TEAM_ROLE = re.compile(r"(?:^|\s)-c\s*role=t_([a-z][a-z0-9]*)(?:\s|$)")


def make_default_artifact_root(store_uri: str, environ: dict[str, str] | None = None) -> str | None:
    """The artifact root new experiments of *store_uri* should get, or None for MLflow's default.

    Pure: reads only *environ* (default ``os.environ``) and the URI.
    """
    environ = os.environ if environ is None else environ
    if environ.get(_MLFLOW_SERVER_ARTIFACT_ROOT_ENV):
        return environ[_MLFLOW_SERVER_ARTIFACT_ROOT_ENV]
    team = _team_of(store_uri)
    if team is not None:
        return f"s3://team-{team}/mlflow"
    return environ.get(ARTIFACT_ROOT_ENV) or None


def _team_of(store_uri: str) -> str | None:
    """Team name if the URI connects with a team role (``options=-c role=t_<team> ...``)."""
    for options in parse_qs(urlsplit(store_uri).query).get("options", []):
        match = _TEAM_ROLE.search(options)
        if match:
            return match.group(1)
    return None


def make_tracking_store(store_uri: str, artifact_uri: str | None = None, **kwargs):
    """Entry point for ``mlflow.tracking_store``: MLflow's SQLAlchemy store with our artifact default."""
    # Imported here: MLflow loads this module while ``mlflow.tracking`` is importing.
    from mlflow.tracking._tracking_service.utils import _get_sqlalchemy_store

    if artifact_uri is None:
        artifact_uri = make_default_artifact_root(store_uri)
    return _get_sqlalchemy_store(store_uri, artifact_uri)
