"""Every account incarnation and every team, with its resource names: the one list of who holds what.

The revocation audit, the usage report, the accounts page and the upgrade of every
MLflow store each go over "every account and every team"; they all take it from
:meth:`~.workbench.Workbench.holdings`, which reads it in one connection and builds
it here. Building is pure: the registry's rows, its recorded team memberships and
the team roles the catalogue has go in, names made by :mod:`.naming` come out.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from .naming import TeamResources, UserResources, make_team_resources, make_user_resources, team_of_role


@dataclass(frozen=True)
class UserHolding:
    """One incarnation of one username, as the registry has it, with its resource names."""

    row: dict  #: the registry's row (username, incarnation, state, generation, created_at, deleted_at)
    resources: UserResources

    @property
    def username(self) -> str:
        return self.resources.username

    @property
    def incarnation(self) -> int:
        return self.row["incarnation"]

    @property
    def state(self) -> str:
        """'active', 'deleted' (its data kept) or 'purged' (nothing left)."""
        return self.row["state"]


@dataclass(frozen=True)
class TeamHolding:
    """One team: its resource names and its members as the registry recorded their grants."""

    resources: TeamResources
    members: tuple[str, ...]  #: sorted; empty for a team whose store outlived its last member

    @property
    def team(self) -> str:
        return self.resources.team


@dataclass(frozen=True)
class Holdings:
    """Every user incarnation (purged ones included) and every team, each sorted by name."""

    users: tuple[UserHolding, ...]
    teams: tuple[TeamHolding, ...]

    def users_with_data(self) -> list[UserHolding]:
        """The incarnations that still hold a store and a bucket: active and deleted-but-kept."""
        return [u for u in self.users if u.state != "purged"]

    def active_users(self) -> list[UserHolding]:
        return [u for u in self.users if u.state == "active"]

    def teams_with_members(self) -> list[TeamHolding]:
        return [t for t in self.teams if t.members]


def build_holdings(rows: Iterable[Mapping], members: Mapping[str, Iterable[str]],
                   team_roles: Iterable[str] = ()) -> Holdings:
    """The holdings of the registry's ``rows``, its recorded ``members`` (team -> usernames) and
    the catalogue's ``team_roles`` (a team's store outlives its members: it is still held)."""
    users = sorted((UserHolding(dict(row), make_user_resources(row["username"], row["incarnation"]))
                    for row in rows), key=lambda u: (u.username, u.incarnation))
    teams = {name: sorted(names) for name, names in members.items()}
    for role in team_roles:
        name = team_of_role(role)
        if name is not None:
            teams.setdefault(name, [])
    return Holdings(tuple(users), tuple(TeamHolding(make_team_resources(name), tuple(teams[name]))
                                        for name in sorted(teams)))
