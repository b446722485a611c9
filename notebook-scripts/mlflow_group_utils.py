"""Where your MLflow runs and files go, and switching between your own store and a team's.

Your server is already set up: ``mlflow.start_run()`` logs to your own MLflow store
(a private schema in the workbench's PostgreSQL database) and artifacts go to your
own bucket. These helpers tell you where things are and let you work in a team::

    from mlflow_group_utils import whoami, my_experiments, my_bucket, my_teams, team_members, use_team, use_personal

    whoami()                # {'store': 'personal', 'schema': 'u_alice', 'bucket': 'user-alice', ...}
    my_experiments()        # names of the experiments in the current store
    my_teams()              # ['vision']: the teams you are in now
    team_members("vision")  # ['alice', 'bob']: who is in team "vision"
    use_team("vision")      # from now on runs go to team "vision" (shared with its members)
    use_personal()          # back to your own store

This module imports from any notebook of your server: every kernel has
``~/notebook-scripts`` at the end of its ``sys.path``, so this copy, with your edits if
you made any, is the one imported. An admin manages teams (groups) in the hub's admin
panel; a team store lives in the team's schema (``t_<team>``), and its artifacts in
the team's bucket (``team-<team>``). The MLflow UI shows a team's store at
``mlflow/team/<team>/`` (its "Store" menu switches between them).

Nothing these helpers return or print holds a password: a notebook keeps its cells'
output, and notebooks get shared.
"""

from __future__ import annotations

import os
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

__all__ = [
    "whoami",
    "my_experiments",
    "my_bucket",
    "my_teams",
    "team_members",
    "use_team",
    "use_personal",
]

#: The values your server started with, so use_personal() can always go back.
_PERSONAL_TRACKING_URI = os.environ.get("MLFLOW_TRACKING_URI", "")
_PERSONAL_ARTIFACT_ROOT = os.environ.get("ENERTEF_MLFLOW_ARTIFACT_ROOT", "")


def my_bucket() -> str:
    """Name of your own bucket (``$ENERTEF_BUCKET``), e.g. ``user-alice``."""
    bucket = os.environ.get("ENERTEF_BUCKET")
    if not bucket:
        raise RuntimeError(
            "ENERTEF_BUCKET is not set: this server was not started by the workbench hub. "
            "Restart it from the hub control panel."
        )
    return bucket


def my_teams() -> list[str]:
    """Teams you are a member of now.

    Asked of the database: the workbench gives you a team login (``m_<team>_<you>``)
    when an admin adds you to a group and takes it away when you are removed, so a
    change reaches this running server as soon as the hub has synced it (at most
    ``ENERTEF_TEAM_SYNC_INTERVAL``, a minute by default), with no restart. If the
    database cannot be asked, the teams your server started with (``$ENERTEF_TEAMS``).
    """
    started_with = [t.strip() for t in os.environ.get("ENERTEF_TEAMS", "").split(",") if t.strip()]
    login = urlsplit(_PERSONAL_TRACKING_URI).username or ""
    if not login.startswith("u_"):
        return started_with
    me = login[2:]
    try:
        import psycopg

        with psycopg.connect(_personal_libpq_uri(), connect_timeout=5) as conn:
            rows = conn.execute(
                "SELECT rolname FROM pg_catalog.pg_roles WHERE rolname ~ %s AND rolcanlogin ORDER BY 1",
                (f"^m_[a-z0-9]+_{me}$",)).fetchall()
    except Exception:  # noqa: BLE001 - no database now: what the server started with
        return started_with
    return [name[2:-(len(me) + 1)] for (name,) in rows]


def _personal_libpq_uri() -> str:
    """Your own database login as a libpq URI (psycopg's), from the URI your server started with."""
    return urlunsplit(urlsplit(_PERSONAL_TRACKING_URI)._replace(scheme="postgresql"))


def team_members(team: str) -> list[str]:
    """Who is in team *team* now: the usernames of its members, sorted. Only for a team you are in.

    Asked of the database's catalogue, which every login may read: each member has a
    team login ``m_<team>_<user>`` that is a member of the team's role ``t_<team>``.
    Raises ValueError for a team you are not in, RuntimeError if the database cannot
    be asked.
    """
    team, teams = team.strip().lower(), my_teams()
    if team not in teams:
        known = ", ".join(teams) or "none"
        raise ValueError(f"You are not a member of team {team!r} (your teams: {known}): only its members see who "
                         "is in it.")  # fmt: skip
    prefix = f"m_{team}_"
    try:
        import psycopg

        with psycopg.connect(_personal_libpq_uri(), connect_timeout=5) as conn:
            rows = conn.execute(
                "SELECT m.rolname FROM pg_catalog.pg_auth_members a"
                " JOIN pg_catalog.pg_roles r ON r.oid = a.roleid JOIN pg_catalog.pg_roles m ON m.oid = a.member"
                " WHERE r.rolname = %s AND m.rolname LIKE %s AND m.rolcanlogin",
                (f"t_{team}", prefix.replace("_", r"\_") + "%")).fetchall()  # fmt: skip
    except Exception as exc:  # noqa: BLE001 - say what happened, never the connection string
        raise RuntimeError(f"Could not ask the database who is in team {team!r} ({type(exc).__name__}); try "
                           "again in a minute, or ask an admin.") from None  # fmt: skip
    # m_<team>_<user>, or m_<team>_<user>_<n> for a later account of the same name.
    return sorted({name[len(prefix):].split("_")[0] for (name,) in rows})


def _make_team_tracking_uri(personal_uri: str, team: str) -> str:
    """Your tracking URI turned into team *team*'s: your team login, team role and schema.

    Private, and never shown: it holds your password (use :func:`use_team`).

    You reach a team's store through a login of your own for that team
    (``m_<team>_<you>``, with your usual password), which holds the team's rights and
    nothing of yours: code a teammate leaves in the team's schema can never act as you.
    PostgreSQL runs the session as the team's role (``-c role=t_<team>``) so that
    tables and runs belong to the team, and every member can keep writing them;
    ``search_path`` points MLflow at the team's schema.
    """
    parts = urlsplit(personal_uri)
    if not parts.scheme.startswith("postgresql"):
        raise ValueError(f"Team stores need a PostgreSQL tracking URI, not {parts.scheme or 'a local path'}.")
    personal_login = parts.username or ""
    if not personal_login.startswith("u_"):
        raise ValueError("This is not a workbench tracking URI: restart your server from the hub control panel.")
    netloc = f"m_{team}_{personal_login[2:]}" + parts.netloc[len(personal_login):]
    query = [(k, v) for k, v in parse_qsl(parts.query) if k != "options"]
    query.append(("options", f"-c role=t_{team} -c search_path=t_{team}"))
    return urlunsplit(parts._replace(netloc=netloc, query=urlencode(query, quote_via=quote)))


def _current_uri() -> str:
    import mlflow

    return mlflow.get_tracking_uri()


def whoami() -> dict:
    """Which store you are logging to now: kind, schema, artifact root, bucket, teams."""
    uri = _current_uri()
    parts = urlsplit(uri)
    options = dict(parse_qsl(parts.query)).get("options", "")
    team = None
    for token in options.split():
        if token.startswith("role=t_"):
            team = token[len("role=t_"):]
    user = parts.username or ""
    return {
        "store": f"team {team}" if team else "personal",
        "schema": f"t_{team}" if team else user,
        "artifact_root": os.environ.get("ENERTEF_MLFLOW_ARTIFACT_ROOT", ""),
        "bucket": f"team-{team}" if team else os.environ.get("ENERTEF_BUCKET", ""),
        # Where, never how to log in: no password (the URI holds one).
        "database": f"{parts.hostname}:{parts.port}{parts.path}" if parts.hostname else parts.path or parts.scheme,
        "teams": my_teams(),
    }


def my_experiments() -> list[str]:
    """Names of the experiments in the store you are using now."""
    import mlflow

    return [e.name for e in mlflow.search_experiments()]


def use_team(team: str) -> dict:
    """Log to team *team*'s store and bucket from now on (this notebook only); returns :func:`whoami`.

    Nothing returned or printed holds a password: a notebook keeps its cells' output.

    Raises ValueError if you are not a member of that team.
    """
    import mlflow

    team = team.strip().lower()
    if team not in my_teams():
        known = ", ".join(my_teams()) or "none"
        raise ValueError(f"You are not a member of team {team!r} (your teams: {known}). Ask an admin to add you.")
    if not _PERSONAL_TRACKING_URI:
        raise RuntimeError("MLFLOW_TRACKING_URI is not set: restart your server from the hub control panel.")
    uri = _make_team_tracking_uri(_PERSONAL_TRACKING_URI, team)
    # The workbench's tracking store also derives the team's artifact root from the
    # URI; setting it here keeps whoami() and anything reading the variable in step.
    os.environ["ENERTEF_MLFLOW_ARTIFACT_ROOT"] = f"s3://team-{team}/mlflow"
    if mlflow.active_run() is not None:
        mlflow.end_run()
    mlflow.set_tracking_uri(uri)
    return whoami()


def use_personal() -> dict:
    """Go back to your own store and bucket; returns :func:`whoami` (no password in it)."""
    import mlflow

    if _PERSONAL_ARTIFACT_ROOT:
        os.environ["ENERTEF_MLFLOW_ARTIFACT_ROOT"] = _PERSONAL_ARTIFACT_ROOT
    if mlflow.active_run() is not None:
        mlflow.end_run()
    mlflow.set_tracking_uri(_PERSONAL_TRACKING_URI)
    return whoami()
