"""Team stores: JupyterHub groups become shared MLflow stores and shared buckets.

A team ``team1`` gets a NOLOGIN PostgreSQL role ``t_team1`` owning schema
``t_team1``, and a MinIO group ``team-team1`` whose policy reaches bucket
``team-team1``. Members' roles are granted the team role and their MinIO users are
put in the group; members connect with ``-c role=t_team1`` so whatever they create
belongs to the team and every member can keep writing it.

JupyterHub is the source of truth for membership (admin panel, ``hub.loadGroups``).
Memberships granted here are recorded in the registry so a removed member is
found and revoked: at that member's next spawn, by ``enertef-hub sync``, and by the
periodic sync service (revocation delay at most its interval).
"""

from __future__ import annotations

import asyncio

from collections.abc import Iterable, Mapping

from . import events
from .accounts import AccountRegistry
from .metrics import measured
from .naming import InvalidNameError, make_team_resources, make_user_resources, normalize_team_name
from .provisioners.minio import MinioProvisioner
from .provisioners.postgres import PostgresProvisioner


class TeamSync:
    """Grants and revokes team access to match JupyterHub's groups."""

    def __init__(self, postgres: PostgresProvisioner, minio: MinioProvisioner, registry: AccountRegistry, log):
        self.postgres = postgres
        self.minio = minio
        self.registry = registry
        self.log = log

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
        Members without an active account are skipped until their first spawn.
        Teams that vanished from JupyterHub lose all members; their data is kept.
        """
        report = {"granted": [], "revoked": [], "refused": {}, "skipped": []}
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
                    if username in want:
                        # Granted again even if recorded: repairs what was changed by hand.
                        await self._set_membership(conn, team, username, member, True, actor,
                                                   recorded=username in have)
                        if username not in have:
                            report["granted"].append(f"{team}:{username}")
                    else:
                        await self._set_membership(conn, team, username, member, False, actor)
                        report["revoked"].append(f"{team}:{username}")
        return report

    async def _active_resources(self, conn, username: str):
        account = await self.registry.active(conn, username)
        return make_user_resources(username, account.incarnation) if account else None

    async def _membership_intact(self, conn, team_name: str, member) -> bool:
        """Whether the team's store, bucket and the member's access to both are all there."""
        team = make_team_resources(team_name)
        in_postgres, in_minio = await asyncio.gather(
            self.postgres.team_member_usable(conn, team, member),
            self.minio.team_member_is_ready(team, member.minio_user))
        return in_postgres and in_minio

    async def _set_membership(self, conn, team_name: str, username: str, member, grant: bool, actor,
                              recorded: bool = False):
        team = make_team_resources(team_name)
        async with conn.transaction():
            await self.registry.lock_team(conn, team.team)
            if grant:
                await self.postgres.ensure_team_store(conn, team)
                await self.minio.ensure_team(team)
                if member is not None:
                    await self.postgres.grant_team(conn, team, member)
                    await self.minio.set_team_member(team, member.minio_user, True)
                await self.registry.set_member(conn, team.team, username, True)
            else:
                # While a member, the user could act as the team: the sweeps take
                # back whatever they opened with it (grants, functions, bucket policy).
                swept: list[str] = []
                if member is not None:
                    swept += await self.postgres.revoke_team(conn, team, member)
                    await self.minio.set_team_member(team, member.minio_user, False)
                swept += await self.minio.sweep_bucket(team.bucket)
                await self.registry.set_member(conn, team.team, username, False)
        if grant and not recorded:
            events.log_event(self.log, "team-granted", username, actor, team=team.team)
        elif not grant:
            events.log_event(self.log, "team-revoked", username, actor, team=team.team, swept=swept)
