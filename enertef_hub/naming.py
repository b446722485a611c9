"""The one place where usernames and team names become resource names.

Everything here is pure: no I/O, no configuration lookups. A username is checked
*before* any SQL statement or HTTP request is built from it, and every resource
name (PostgreSQL role and schema, MinIO user, policy and bucket, system user) is
derived from the checked name here, so the rules can be read and tested in one
place.

Resource names carry a prefix so that no user can ever take a name that the
database, MinIO or the operating system already uses (``postgres``, ``public``,
``pg_*``, ``root``...). The prefix alone would make those names safe, but a user
called ``postgres`` or ``admin`` is still confusing in the admin panel and logs,
so such names are refused too.

An *incarnation* is one life of an account name: when an admin deletes ``alice``
and keeps her data, a later sign-up named ``alice`` is incarnation 2 and gets
fresh, empty resources, so it never sees the old data unless an admin restores it.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

#: Longest accepted username: the tightest limit of every mode it must spawn in.
#: Single-machine mode runs a server as system account ``jupyter-<name>``, and
#: system account names stop at 32 characters (useradd, utmp): 32 - 8 = 24.
#: Everything else has room to spare at 24 (+ incarnation suffixes): PostgreSQL
#: identifiers 63 bytes (``u_<name>_<n>``), bucket names 63 (``user-<name>-<n>``),
#: Kubernetes pod names and label values 63 (``jupyter-<name>``), PVC names 253
#: (``claim-<name>-i<n>``), a DNS label of a per-user origin 63 (``<name>.<host>``).
MAX_NAME_LENGTH = 24
#: Longest accepted team (JupyterHub group) name: teams get no system account, so
#: only the 63-character limits apply (``team-<name>``, ``t_<name>``).
MAX_TEAM_NAME_LENGTH = 32

#: Names refused at sign-up even though they are letters and digits: they are the
#: names of database, storage, operating-system or hub internals, and an account
#: with such a name would be mistaken for them by admins reading logs.
RESERVED_NAMES = frozenset(
    """
    admin administrator root postgres postgresql pgadmin public information
    informationschema pgcatalog pgtoast minio minioadmin mlflow jupyterhub jupyter
    hub proxy api user users team teams enertef system daemon bin sys sync games
    man lp mail news uucp www backup list irc gnats nobody nogroup sshd operator
    template template0 template1 default anonymous guest null none all current
    session
    """.split()
)

_NAME_PATTERN = re.compile(r"[a-z][a-z0-9]*\Z")


class InvalidNameError(ValueError):
    """A username or team name that cannot be used; ``str()`` says why and what to do."""


def normalize_username(name: str) -> str:
    """Return the canonical (lower-case) form of a username, or raise InvalidNameError.

    Only ASCII letters and digits are accepted, starting with a letter; case is
    ignored (``Alice`` and ``alice`` are one account). Unicode look-alikes
    (Cyrillic ``а``, full-width letters, ligatures) are refused rather than folded,
    so that two visibly identical names can never be two accounts.
    """
    return _check_name(name, kind="Username", limit=MAX_NAME_LENGTH)


def normalize_team_name(name: str) -> str:
    """Return the canonical form of a team (JupyterHub group) name, or raise InvalidNameError.

    Team names follow the same rules as usernames: they become a PostgreSQL role
    and schema and a MinIO bucket.
    """
    return _check_name(name, kind="Team name", limit=MAX_TEAM_NAME_LENGTH)


def _check_name(name: object, kind: str, limit: int) -> str:
    if not isinstance(name, str) or name == "":
        raise InvalidNameError(f"{kind} is empty: choose a name of letters and digits.")
    if len(name) > limit:
        raise InvalidNameError(f"{kind} is {len(name)} characters long; the limit is {limit}.")
    if not name.isascii():
        raise InvalidNameError(
            f"{kind} {_show(name)} contains non-ASCII characters; use only the letters"
            " a-z and digits 0-9."
        )
    lowered = name.lower()
    if not _NAME_PATTERN.match(lowered):
        if not lowered.isalnum():
            raise InvalidNameError(
                f"{kind} {_show(name)} may contain only letters a-z and digits 0-9"
                " (no spaces, dots, dashes, underscores or quotes)."
            )
        raise InvalidNameError(f"{kind} {_show(name)} must start with a letter.")
    if lowered in RESERVED_NAMES:
        raise InvalidNameError(
            f"{kind} {_show(name)} is reserved for the system (database, storage or hub"
            " internals); please choose another."
        )
    return lowered


def _show(name: str) -> str:
    # Echo user input safely in messages: escape control and invisible characters.
    shown = "".join(
        c if c.isprintable() and unicodedata.category(c) != "Cf" else repr(c)[1:-1]
        for c in name
    )
    return f"'{shown}'"


@dataclass(frozen=True)
class UserResources:
    """Names of everything that belongs to one incarnation of one user."""

    username: str
    incarnation: int
    role: str  #: PostgreSQL login role; also the name of its schema
    schema: str  #: PostgreSQL schema holding the user's MLflow tables
    minio_user: str  #: MinIO access key
    policy: str  #: MinIO policy that reaches only ``bucket``
    bucket: str  #: MinIO bucket for artifacts and data


@dataclass(frozen=True)
class TeamResources:
    """Names of everything that belongs to one team (JupyterHub group)."""

    team: str
    role: str  #: PostgreSQL NOLOGIN group role; owns the schema; granted to members' team logins only
    schema: str
    group: str  #: MinIO group whose members get ``policy``
    policy: str
    bucket: str


def make_user_resources(username: str, incarnation: int = 1) -> UserResources:
    """Map a (valid) username and incarnation to its resource names.

    Incarnation 1 gets the plain names (``u_alice``, ``user-alice``); later ones a
    numeric suffix (``u_alice_2``, ``user-alice-2``). Underscores and dashes are
    never part of a username, so suffixed names cannot collide with another user.
    """
    name = normalize_username(username)
    if not isinstance(incarnation, int) or incarnation < 1:
        raise ValueError(f"incarnation must be a positive integer, not {incarnation!r}")
    pg_suffix = "" if incarnation == 1 else f"_{incarnation}"
    s3_suffix = "" if incarnation == 1 else f"-{incarnation}"
    role = f"u_{name}{pg_suffix}"
    return UserResources(
        username=name,
        incarnation=incarnation,
        role=role,
        schema=role,
        minio_user=f"user-{name}{s3_suffix}",
        policy=f"user-{name}{s3_suffix}",
        bucket=f"user-{name}{s3_suffix}",
    )


def make_team_resources(team: str) -> TeamResources:
    """Map a (valid) team name to its resource names (``t_team1``, ``team-team1``)."""
    name = normalize_team_name(team)
    return TeamResources(
        team=name,
        role=f"t_{name}",
        schema=f"t_{name}",
        group=f"team-{name}",
        policy=f"team-{name}",
        bucket=f"team-{name}",
    )


#: SQL ``LIKE`` patterns of the roles named here (``u_alice``, ``t_vision``, ``m_vision_alice``), for
#: catalogue queries that look for them; what matches is checked with the functions here.
USER_ROLE_LIKE = "u\\_%"
TEAM_ROLE_LIKE = "t\\_%"
TEAM_LOGIN_LIKE = "m\\_%"


def is_user_role(role: str) -> bool:
    """Whether ``role`` is named like a user's own role (``u_alice``, ``u_alice_2``) (pure)."""
    return role.startswith("u_")


def team_of_role(role: str) -> str | None:
    """The team whose group role ``role`` is (``t_vision`` -> ``vision``), or None when it is
    not a team role of ours, only one that looks like it (pure)."""
    if not role.startswith("t_"):
        return None
    try:
        team = make_team_resources(role[2:])
    except InvalidNameError:
        return None
    return team.team if team.role == role else None


def make_team_login_role(team: str, member: UserResources) -> str:
    """PostgreSQL login role through which ``member`` works in ``team``'s store (pure).

    ``m_team1_alice`` (``m_team1_alice_2`` for a second incarnation): a member of the
    team role and of nothing else, so code another member left in the team's schema
    (a trigger, a rule) that runs in alice's session and switches back to its login
    (``SET ROLE NONE``) still has only the team's rights, never alice's own. Team
    names and usernames hold no underscore, so the name is unambiguous; its password
    is the member's own (the same derived secret), so a server needs no second one.
    """
    name = f"m_{normalize_team_name(team)}_{member.role[2:]}"
    if len(name) > 63:
        raise InvalidNameError(f"Team login role {name} is longer than PostgreSQL's 63 characters.")
    return name


def make_team_login_pattern(member_role: str) -> str:
    """Regular expression (PostgreSQL ``~``) matching every team login role of the user
    whose role is ``member_role`` (``u_alice`` -> ``m_<any team>_alice``) (pure)."""
    return f"^m_[a-z0-9]+_{member_role[2:]}$"


def make_team_members_pattern(team: TeamResources) -> str:
    """Regular expression (PostgreSQL ``~``) matching the team login roles of ``team``'s members (pure)."""
    return f"^m_{team.team}_[a-z0-9_]+$"


def make_system_username(username: str) -> str:
    """System account that runs a user's server in single-machine mode.

    Prefixed like The Littlest JupyterHub does (``jupyter-alice``) so a hub user can
    never be mapped onto an existing system account such as ``root`` or ``postgres``.
    """
    return f"jupyter-{normalize_username(username)}"
