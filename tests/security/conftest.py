"""Security regression tests: each attack from issue 11, tried with the real services.

Every test here plays a hostile user who holds what a user can hold (their own
credentials, a team role while a member, their server's token, their processes)
and checks that the revocation closes what they made. The fixtures are the
integration tier's (real PostgreSQL and MinIO, a Workbench from the environment).
"""

from __future__ import annotations

import psycopg

from tests.integration.conftest import _services, admin_conn, workbench  # noqa: F401  (fixtures)


def user_url(environment: dict[str, str], dbname: str | None = None) -> str:
    """libpq URL of a user's own database login, from their server's environment."""
    url = environment["ENERTEF_MLFLOW_BACKEND_STORE_URI"].replace("postgresql+psycopg://", "postgresql://")
    return url if dbname is None else url.rsplit("/", 1)[0] + "/" + dbname


def connect_as(environment: dict[str, str], options: str = "", dbname: str | None = None) -> psycopg.Connection:
    """A connection as the user (optionally acting as a team role through ``options``)."""
    return psycopg.connect(user_url(environment, dbname), options=options or None, autocommit=True,
                           connect_timeout=5)


def connect_as_team(environment: dict[str, str], team: str) -> psycopg.Connection:
    """A connection as the user's team login for ``team`` (``m_<team>_<user>``), acting as the team."""
    url = user_url(environment)
    login = url.split("://", 1)[1].split(":", 1)[0]
    url = url.replace(f"//{login}:", f"//m_{team}_{login[2:]}:", 1)
    return psycopg.connect(url, options=f"-c role=t_{team} -c search_path=t_{team}", autocommit=True,
                           connect_timeout=5)
