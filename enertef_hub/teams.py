"""Team stores: JupyterHub groups become shared MLflow stores and shared buckets.

A team ``team1`` gets a NOLOGIN PostgreSQL role ``t_team1`` owning schema
``t_team1``, and a MinIO group ``team-team1`` whose policy reaches bucket
``team-team1``. Each member gets a login role of their own for the team
(``m_team1_alice``, with alice's password) that is a member of the team role and of
nothing else — alice's own role never is — and their MinIO user is put in the group.
Members connect as that login with ``-c role=t_team1``, so whatever they create
belongs to the team and every member can keep writing it, while code one member
leaves in the team's schema can never act with another member's own rights.

JupyterHub is the source of truth for membership (admin panel, ``hub.loadGroups``).
Memberships granted here are recorded in the registry so a removed member is
found and revoked: at once when the group edit goes through the hub's API
(``enertef_hub.api_handlers`` calls :meth:`TeamSync.sync_user`), at that member's
next spawn, by ``enertef-hub sync``, and by the periodic sync service (the safety
net: revocation delay at most its interval).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from collections.abc import Iterable, Mapping

import psycopg

from . import events
from .accounts import AccountRegistry
from .errors import EnerTEFError
from .metrics import measured
from .naming import InvalidNameError, UserResources, make_team_resources, make_user_resources, normalize_team_name
from .provisioners.minio import MinioProvisioner
from .provisioners.postgres import PostgresProvisioner


@dataclass(frozen=True)
class _Member:
    """An active member: their resource names and their database password (that of their team logins)."""

    resources: UserResources
    password: str = field(repr=False)

    @property
    def minio_user(self) -> str:
        return self.resources.minio_user


class TeamSync:
    """Grants and revokes team access to match JupyterHub's groups."""

    def __init__(self, postgres: PostgresProvisioner, minio: MinioProvisioner, registry: AccountRegistry, log,
                 password_of):
        self.postgres = postgres
        self.minio = minio
        self.registry = registry
        self.log = log
        #: ``password_of(resources, account)``: a member's database password, also their team logins'
        self.password_of = password_of

    @measured("team_sync_user")
    async def sync_user(self, username: str, teams: Iterable[str], actor: str | None = None,
                        conn=None) -> list[str]:
        """Make ``username``'s team memberships exactly ``teams`` (at spawn). Returns the teams.

        ``conn``: the caller's connection (provisioning passes its own, so a spawn holds
        one pool connection, not two); None takes one from the pool.
        """
        wanted = sorted({normalize_team_name(t) for t in teams})
        if conn is None:
            async with self.postgres.connection() as own:
                return await self.sync_user(username, wanted, actor, conn=own)
        member = await self._active_resources(conn, username)
        current = set(await self.registry.teams_of(conn, username))
        for team in wanted:
            if team in current and member is not None and await self._membership_intact(conn, team, member):
                continue  # a returning member: two lookups instead of re-making it all (~25 ms)
            await self._set_membership(conn, team, username, member, True, actor, recorded=team in current)
        for team in sorted(current - set(wanted)):
            await self._set_membership(conn, team, username, member, False, actor)
        return wanted

    async def sync_all(self, groups: Mapping[str, Iterable[str]], actor: str | None = None) -> dict:
        """Make every team's membership exactly JupyterHub's ``groups`` (team -> usernames).

        Groups whose names are not valid team names are reported and left alone.
        Members without an active account are skipped until their first spawn. A member
        whose change fails is reported under ``failed`` and the others go on.
        Teams that vanished from JupyterHub lose all members; their data is kept.
        """
        report = {"granted": [], "revoked": [], "refused": {}, "skipped": [], "failed": {}}
        wanted: dict[str, set[str]] = {}
        for group, members in groups.items():
            try:
                wanted[normalize_team_name(group)] = {m.lower() for m in members}
            except InvalidNameError as exc:
                report["refused"][group] = str(exc)
        async with self.postgres.connection() as conn:
            recorded = await self.registry.team_members(conn)
            for team in sorted(set(wanted) | set(recorded)):
                want = wanted.get(team, set())
                have = recorded.get(team, set())
                for username in sorted(want | have):
                    member = await self._active_resources(conn, username)
                    if member is None:
                        if username in want:
                            report["skipped"].append(f"{team}:{username}")
                        if username in have:
                            await self.registry.set_member(conn, team, username, False)
                        continue
                    try:
                        if username in want:
                            # Granted again even if recorded: repairs what was changed by hand.
                            await self._set_membership(conn, team, username, member, True, actor,
                                                       recorded=username in have)
                            if username not in have:
                                report["granted"].append(f"{team}:{username}")
                        else:
                            await self._set_membership(conn, team, username, member, False, actor)
                            report["revoked"].append(f"{team}:{username}")
                    except EnerTEFError as exc:
                        # One broken account (e.g. its MinIO user lost in a restore) must not
                        # stop everyone else's sync; it is reported and retried next time.
                        self.log.warning("Team sync of %s in %s failed: %s", username, team, exc)
                        report["failed"][f"{team}:{username}"] = str(exc)
        return report

    async def _active_resources(self, conn, username: str):
        account = await self.registry.active(conn, username)
        if account is None:
            return None
        resources = make_user_resources(username, account.incarnation)
        return _Member(resources, self.password_of(resources, account))

    async def _membership_intact(self, conn, team_name: str, member) -> bool:
        """Whether the team's store, bucket and the member's access to both are all there."""
        team = make_team_resources(team_name)
        in_postgres, in_minio = await asyncio.gather(
            self.postgres.team_member_usable(conn, team, member.resources),
            self.minio.team_member_is_ready(team, member.minio_user))
        return in_postgres and in_minio

    async def _set_membership(self, conn, team_name: str, username: str, member, grant: bool, actor,
                              recorded: bool = False):
        team = make_team_resources(team_name)
        if not grant and member is not None:
            # Revocation first, committed at once, waiting for no lock (a teammate can hold
            # one on the team's store): her team login and sessions end, her MinIO user
            # leaves the team's group. The sweeps follow under the team's lock.
            await self.postgres.cut_team_access(conn, team, member.resources)
            await self.minio.set_team_member(team, member.minio_user, False)
        pending = False
        async with conn.transaction():
            await self.registry.lock_team(conn, team.team)
            if grant:
                await self.postgres.ensure_team_store(conn, team)
                await self.minio.ensure_team(team)
                if member is not None:
                    await self.postgres.grant_team(conn, team, member.resources, member.password)
                    await self.minio.set_team_member(team, member.minio_user, True)
                await self.registry.set_member(conn, team.team, username, True)
            else:
                # While a member, the user could act as the team: the sweeps take
                # back whatever they opened with it (grants, functions, bucket policy).
                swept: list[str] = []
                if member is not None:
                    try:
                        async with conn.transaction():  # a savepoint: a lock wait past the bound undoes only this
                            swept += await self.postgres.revoke_team(conn, team, member.resources)
                    except psycopg.errors.LockNotAvailable:
                        # A teammate's session held a lock on the team's store for over
                        # PostgresProvisioner.lock_timeout. Her access is revoked already;
                        # the membership stays recorded, so the next sync sweeps again.
                        pending = True
                        self.log.warning("%s left team %s (access revoked), but the sweep of the team's store"
                                         " waited for a lock past PostgresProvisioner.lock_timeout; the next"
                                         " sync sweeps again", username, team.team)
                    await self.minio.set_team_member(team, member.minio_user, False)
                swept += await self.minio.sweep_bucket(team.bucket)
                if not pending:
                    await self.registry.set_member(conn, team.team, username, False)
        if grant and not recorded:
            events.log_event(self.log, "team-granted", username, actor, team=team.team)
        elif not grant:
            events.log_event(self.log, "team-revoked", username, actor, team=team.team, swept=swept,
                             **({"store_sweep": "pending (a lock was held); retried at the next sync"}
                                if pending else {}))
