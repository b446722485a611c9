"""PostgreSQL as the tests reach it: the hub's admin acting as a store role, or a user's own login."""

from __future__ import annotations

import contextlib
import os
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import sql


@contextlib.contextmanager
def acting_as(conn, role: str):
    """The hub's admin connection ``conn`` (autocommit) acting as store role ``role`` for the block.

    The admin role is not a member of any store role between operations (issue 13),
    so, as the hub does, it is granted ``role`` inside one transaction and revoked
    before it commits; on an exception the rollback takes the grant back.
    """
    with conn.transaction():
        conn.execute(sql.SQL("GRANT {} TO CURRENT_USER").format(sql.Identifier(role)))
        conn.execute(sql.SQL("SET LOCAL ROLE {}").format(sql.Identifier(role)))
        yield conn
        conn.execute("RESET ROLE")
        conn.execute(sql.SQL("REVOKE {} FROM CURRENT_USER").format(sql.Identifier(role)))


def libpq_uri(sqlalchemy_uri: str) -> str:
    """``postgresql+psycopg://...`` (SQLAlchemy/MLflow form) → ``postgresql://...`` for psycopg."""
    return urlunsplit(urlsplit(sqlalchemy_uri)._replace(scheme="postgresql"))


def user_url(environment: dict[str, str], dbname: str | None = None) -> str:
    """libpq URL of a user's own database login, from their server's environment."""
    url = libpq_uri(environment["ENERTEF_MLFLOW_BACKEND_STORE_URI"])
    return url if dbname is None else url.rsplit("/", 1)[0] + "/" + dbname


def connect_as(environment: dict[str, str], options: str = "", dbname: str | None = None) -> psycopg.Connection:
    """A connection as the user (optionally acting as a team role through ``options``)."""
    return psycopg.connect(user_url(environment, dbname), options=options or None, autocommit=True,
                           connect_timeout=5)


def team_login_url(environment: dict[str, str], team: str) -> tuple[str, str]:
    """libpq URL of the user's team login for ``team`` (``m_<team>_<user>``), and the options that act as the team."""
    url = user_url(environment)
    login = urlsplit(url).username
    return (url.replace(f"//{login}:", f"//m_{team}_{login[2:]}:", 1),
            f"-c role=t_{team} -c search_path=t_{team}")


def connect_as_team(environment: dict[str, str], team: str) -> psycopg.Connection:
    """A connection as the user's team login for ``team``, acting as the team."""
    url, options = team_login_url(environment, team)
    return psycopg.connect(url, options=options, autocommit=True, connect_timeout=5)


def account_states(username: str) -> dict[int, str]:
    """``{incarnation: state}`` of ``username`` in the hub's account registry (as the admin role)."""
    with psycopg.connect(os.environ["ENERTEF_POSTGRES_ADMIN_URL"]) as conn:
        rows = conn.execute("SELECT incarnation, state FROM enertef.accounts WHERE username = %s", (username,))
        return dict(rows.fetchall())


def schema_exists(schema: str) -> bool:
    with psycopg.connect(os.environ["ENERTEF_POSTGRES_ADMIN_URL"]) as conn:
        return conn.execute("SELECT count(*) FROM pg_namespace WHERE nspname = %s", (schema,)).fetchone()[0] == 1
