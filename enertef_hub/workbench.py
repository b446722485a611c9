"""The provisioning core shared by both spawners, the authenticator and the CLI.

:class:`Workbench` turns a username into a ready MLflow store and MinIO access and
back. It holds no state of its own beyond connection pools: the account registry
in PostgreSQL says which incarnation of a name is live and which credential
generation is applied, so any hub process (or the CLI) can repair what another
left unfinished.

Provisioning of one user runs in one PostgreSQL transaction holding that user's
lock (a row lock only the hub can take, ``accounts.hub_lock``): concurrent spawns of
the same user queue instead of racing, and a failure anywhere (database, MinIO) rolls
the database back and undoes what MinIO created in this attempt, so nothing half-made
remains. Revocations (deletion, withdrawn approval, rotation, team removal) first end
the access itself, committed at once and waiting for no lock; only the rest (sweeps,
registry, purge) waits for the user's lock, at most ``PostgresProvisioner.lock_timeout``.
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass, field

from traitlets import Bool, Float, Instance, Integer, Unicode, default, observe
from traitlets.config import SingletonConfigurable

from . import events
from .accounts import Account, AccountRegistry
from .credentials import derive_secret
from .environment import make_user_environment
from .errors import ConfigurationError, ProvisioningError
from .holdings import Holdings, build_holdings
from .metrics import measured
from .mlflow_stores import MOVED_FROM_WORKBENCH, MlflowStores
from .naming import (
    TEAM_LOGIN_LIKE,
    TEAM_ROLE_LIKE,
    USER_ROLE_LIKE,
    UserResources,
    make_team_login_role,
    make_team_resources,
    make_user_resources,
    normalize_username,
)
from .provisioners.minio import MinioProvisioner
from .provisioners.postgres import PostgresProvisioner
from .store_upgrades import Store
from .teams import TeamSync
from .usage import Quotas


@dataclass
class ProvisionResult:
    """What one provisioning produced: the names, and the environment of the user's server."""

    resources: UserResources
    environment: dict[str, str] = field(repr=False)
    created: bool  #: False when everything already existed (the fast path)
    seconds: float
    teams: list[str] = field(default_factory=list)  #: the user's teams after this provisioning


@dataclass
class PreparedWorkbench:
    """What :meth:`Workbench.prepare` made: the provisioning and the MLflow stores."""

    result: ProvisionResult
    stores: list[Store]  #: the user's and teams' stores, each with its revision (None: no tables yet)
    changed: list[Store]  #: the stores it upgraded or gave MLflow's tables


def _moved_to_mlflow_stores_trait(trait_type, name: str):
    """The old ``Workbench`` name of a setting that moved to :class:`MlflowStores` (None: not set)."""
    return trait_type(None, allow_none=True, config=True,
                      help=f"Deprecated: moved to ``MlflowStores.{name}`` (this name still works, with a warning).")


class Workbench(SingletonConfigurable):
    """Provisions, revokes and purges each user's MLflow store and object storage."""

    secret_key = Unicode(
        config=True,
        help="""Key from which every user's database password and MinIO secret key are
        derived (HMAC), so nothing secret is stored and credentials stay stable across
        spawns. At least 32 random characters; changing it changes every user's
        credentials at their next spawn. Defaults to ``ENERTEF_SECRET_KEY``.""",
    )

    @default("secret_key")
    def _secret_key_default(self):
        return os.environ.get("ENERTEF_SECRET_KEY", "")

    purge_on_delete = Bool(
        False,
        config=True,
        help="""What deleting a user in the Hub admin panel does to the user's data.
        False (default): access is revoked at once, the schema and bucket are kept (an
        admin can restore them with ``enertef-hub restore``). True: they are deleted.""",
    )

    # The MLflow store settings moved to MlflowStores (c.MlflowStores.<name>); the old
    # names keep working for existing configs, with a warning (see _moved_to_mlflow_stores).
    prepare_mlflow_tables = _moved_to_mlflow_stores_trait(Bool, "prepare_mlflow_tables")
    replay_mlflow_snapshot = _moved_to_mlflow_stores_trait(Bool, "replay_mlflow_snapshot")
    mlflow_python = _moved_to_mlflow_stores_trait(Unicode, "mlflow_python")
    mlflow_tables_timeout = _moved_to_mlflow_stores_trait(Integer, "mlflow_tables_timeout")
    mlflow_lock_wait = _moved_to_mlflow_stores_trait(Float, "mlflow_lock_wait")

    @observe(*MOVED_FROM_WORKBENCH)
    def _moved_to_mlflow_stores(self, change):
        """``c.Workbench.<name>`` of a setting that moved: warn, and pass it on unless the new name is set too."""
        if change.new is None:
            return
        name = change.name
        if name in self.config.get("MlflowStores", {}):
            self.log.warning("Workbench.%s is deprecated and ignored: MlflowStores.%s is set too, and wins."
                             " Remove Workbench.%s from the configuration.", name, name, name)
            return
        self.log.warning("Workbench.%s is deprecated: set MlflowStores.%s instead (the value is used"
                         " for now).", name, name)
        setattr(self.mlflow, name, change.new)

    postgres = Instance(PostgresProvisioner)
    minio = Instance(MinioProvisioner)
    mlflow = Instance(MlflowStores, help="MLflow's tables in users' and teams' stores (``c.MlflowStores``).")

    @default("postgres")
    def _postgres_default(self):
        return PostgresProvisioner(parent=self, log=self.log)

    @default("minio")
    def _minio_default(self):
        return MinioProvisioner(parent=self, log=self.log)

    @default("mlflow")
    def _mlflow_default(self):
        return MlflowStores(self.postgres, parent=self, log=self.log)

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._registry = AccountRegistry(self.postgres.registry_schema)
        self.quotas = Quotas(parent=self, log=self.log)
        self.teams = TeamSync(self.postgres, self.minio, self._registry, self.log, password_of=self._db_password)

    # -- provisioning -----------------------------------------------------------

    @measured("provision")
    async def provision(self, username: str, teams=None, actor: str | None = None) -> ProvisionResult:
        """Make sure ``username`` has a store, a bucket and credentials; return the server environment.

        ``teams``: the user's JupyterHub groups; memberships are synced to exactly
        these. None leaves memberships as they are (the CLI does not know groups).
        Idempotent and safe to call concurrently for the same user. Raises
        ProvisioningError (a plain-words message) and leaves nothing half-made.
        """
        started = time.perf_counter()
        name = normalize_username(username)
        self._check_secret_key()
        # One pool checkout for the whole provisioning: in a storm, a caller that got a
        # connection finishes, instead of queueing again behind every later arrival.
        async with self.postgres.connection() as conn:
            result = await self._provision_user(conn, name, actor, started)
            if teams is not None:
                result.teams = await self.teams.sync_user(name, teams, actor, conn=conn)
            else:
                result.teams = await self._registry.teams_of(conn, name)
        result.environment["ENERTEF_TEAMS"] = ",".join(result.teams)
        await self.ensure_bucket_quotas(result)
        return result

    async def prepare(self, username: str, teams=None, actor: str | None = None, *, tables: bool = True,
                      then=None, progress=None) -> PreparedWorkbench:
        """Everything a server of ``username`` needs, made in the order it needs it.

        The one order of the spawn's steps, for the spawner and for an approval's
        preparation ahead of the first spawn (which then finds it all ready):

        1. provisioning (:meth:`provision`; ``teams`` as there: None leaves the team
           memberships as they are, for they follow JupyterHub's groups at spawn);
        2. ``await then(result)``: the caller's own step on the provisioned user (the
           spawner's: the home), before anything of MLflow's runs;
        3. the upgrade of every store an older MLflow made, since the server's MLflow
           refuses an out-of-date schema (``progress(message)`` is told when one is);
        4. with ``tables``, MLflow's tables in new stores. A spawn passes False and has
           them made once its server is up, not competing with its start.

        Raises like :meth:`provision`, or StoreUpgradeError naming the store.
        """
        result = await self.provision(username, teams=teams, actor=actor)
        if then is not None:
            await then(result)
        stores = await self.mlflow.read(result)  # each store's revision, read once for both steps
        changed = await self.mlflow.ensure(result, stores, tables=tables, progress=progress,
                                           actor=actor or "spawner")
        return PreparedWorkbench(result, stores, changed)

    async def ensure_bucket_quotas(self, result: ProvisionResult):
        """Give the user's bucket and their teams' buckets the quotas of :class:`~.usage.Quotas`."""
        quotas = {result.resources.bucket: self.quotas.user_quota(result.resources.username, result.teams)}
        for team in result.teams:
            quotas[make_team_resources(team).bucket] = self.quotas.team_quota(team)
        try:
            await self.quotas.ensure(self.minio, quotas)
        except Exception as exc:  # the workbench works without; the admin is told
            self.log.warning("Bucket quotas of %s not applied: %s", result.resources.username, exc)

    async def _provision_user(self, conn, name: str, actor, started: float) -> ProvisionResult:
        account = await self._registry.active(conn, name)
        if account is not None and account.ready_generation == account.generation:
            resources = make_user_resources(name, account.incarnation)
            if (await self.postgres.store_usable(conn, resources)
                    and await self.minio.user_is_ready(resources, self._minio_secret(resources, account))):
                return self._result(resources, account, created=False, started=started)
        created: list[tuple[str, str]] = []
        try:
            async with conn.transaction():
                await self._registry.lock_username(conn, name)
                account = await self._registry.ensure_active(conn, name)
                resources = make_user_resources(name, account.incarnation)
                await self.postgres.ensure_user_store(conn, resources, self._db_password(resources, account))
                # Her team logins share her password (a rotation changes both).
                await self.postgres.set_team_logins_password(conn, resources, self._db_password(resources, account))
                created = await self.minio.ensure_user(resources, self._minio_secret(resources, account))
                await self._registry.mark_ready(conn, account)
        except BaseException:
            # The database rolled back (or never committed): take back what
            # MinIO got in this attempt, so nothing half-made remains.
            if created:
                await self.minio.undo(created)
            raise
        result = self._result(resources, account, created=True, started=started)
        events.log_event(
            self.log, "provisioned", name, actor, incarnation=account.incarnation,
            generation=account.generation, role=resources.role, bucket=resources.bucket,
            seconds=round(result.seconds, 4),
        )
        return result

    def _result(self, resources, account: Account, *, created: bool, started: float) -> ProvisionResult:
        env = make_user_environment(
            tracking_uri=self.postgres.user_uri(resources, self._db_password(resources, account)),
            bucket=resources.bucket,
            access_key=resources.minio_user,
            secret_key=self._minio_secret(resources, account),
            s3_endpoint=self.minio.public_endpoint,
            region=self.minio.region,
        )
        return ProvisionResult(resources, env, created, time.perf_counter() - started)

    def _check_secret_key(self):
        if len(self.secret_key) < 32:
            raise ConfigurationError(
                "Workbench.secret_key is missing or shorter than 32 characters: set"
                " ENERTEF_SECRET_KEY to a long random string (e.g. `openssl rand -hex 32`)."
            )

    def _db_password(self, resources: UserResources, account: Account) -> str:
        return derive_secret(self.secret_key, "postgres", resources, account.generation)

    def _minio_secret(self, resources: UserResources, account: Account) -> str:
        return derive_secret(self.secret_key, "minio", resources, account.generation)

    async def all_mlflow_stores(self) -> list[Store]:
        """Every active user's store and every team's store, for ``enertef-hub upgrade-stores``.

        Each with the environment of the store's own role: a user's own login, a team's
        through one member's team login acting as the team. The migration then runs with
        the store's rights and nothing more, never as the hub's admin acting as the store
        (what the store's owner made could then act with the admin's rights). A store
        none of whose logins may log in (a suspended user; a team none of whose members
        can) is left out: it is upgraded at its next spawn.
        """
        stores = []
        async with self.postgres.connection() as conn:
            holdings = await self.holdings(conn)
            cur = await conn.execute(
                "SELECT rolname FROM pg_roles WHERE rolcanlogin AND (rolname LIKE %s OR rolname LIKE %s)",
                (USER_ROLE_LIKE, TEAM_LOGIN_LIKE))
            can_login = {row[0] for row in await cur.fetchall()}
            results = {}
            for user in holdings.active_users():
                account = Account(user.username, user.incarnation, user.state, user.row["generation"], None)
                results[user.username] = result = self._result(user.resources, account, created=False,
                                                                started=time.perf_counter())
                if user.resources.role in can_login:
                    stores.append(self.mlflow.of(result)[0])  # no teams: the user's store only
            for team in holdings.teams_with_members():
                for username in team.members:
                    result = results.get(username)
                    if result is not None and make_team_login_role(team.team, result.resources) in can_login:
                        stores.append(self.mlflow.team_store(result, team.team))
                        break
            await self.mlflow.read_revisions(conn, stores)
        return stores

    # -- revocation, purge, restore, rotation --------------------------------------

    @measured("deprovision")
    async def deprovision(self, username: str, purge: bool | None = None, actor: str | None = None) -> dict:
        """Revoke ``username``'s access everywhere, at once; keep or purge the data.

        With purge, the data of every kept earlier incarnation is deleted as well.
        Returns a summary of what was done.
        """
        name = normalize_username(username)
        purge = self.purge_on_delete if purge is None else purge
        done = {"user": name, "revoked": [], "purged": []}
        await self._revoke_first(name, lambda account: account.state != "purged")
        try:
            await self.teams.sync_user(name, [], actor)
            async with self.postgres.connection() as conn:
                async with conn.transaction():
                    await self._registry.lock_username(conn, name)
                    for account in await self._registry.all(conn, name):
                        resources = make_user_resources(name, account.incarnation)
                        if account.state != "purged":
                            # Every kept incarnation is swept again: what a user opened
                            # before the sweeps existed is closed by the next deletion.
                            swept = await self.postgres.revoke_user(conn, resources)
                            swept += await self.minio.revoke_user(resources)
                            swept += await self.minio.sweep_bucket(resources.bucket)
                        if account.state == "active":
                            await self._registry.set_state(conn, account, "deleted", bump=True)
                            done["revoked"].append(account.incarnation)
                            events.log_event(self.log, "deprovisioned", name, actor, incarnation=account.incarnation,
                                             data="purged" if purge else "kept", swept=swept)
                        if purge and account.state != "purged":
                            await self.postgres.purge_user(conn, resources)
                            await self.minio.purge_user(resources)
                            await self._registry.set_state(conn, account, "purged")
                            done["purged"].append(account.incarnation)
                            events.log_event(self.log, "purged", name, actor, incarnation=account.incarnation)
        except ProvisioningError as exc:
            raise self._unfinished(name, "deletion", exc,
                                   f"`enertef-hub deprovision {name}{' --purge' if purge else ''}`") from exc
        return done

    async def _revoke_first(self, name: str, which) -> tuple[list[Account], list[str], int]:
        """A revocation's first step, for the incarnations of ``name`` that ``which(account)`` picks.

        Their database logins (team logins too) stop and their sessions end, each
        committed at once (``PostgresProvisioner.cut_access``), then their MinIO users
        and every key made from them are removed. No hub lock is taken and nothing a
        user can hold is waited for, so access ends now; the rest of the revocation
        follows under the user's lock and revokes again (a provisioning that held the
        lock meanwhile may have given access back). Returns the accounts, what MinIO
        removed, and how many sessions were ended.
        """
        async with self.postgres.connection() as conn:
            accounts = [account for account in await self._registry.all(conn, name) if which(account)]
            sessions = 0
            for account in accounts:
                sessions += await self.postgres.cut_access(conn, make_user_resources(name, account.incarnation))
        removed = []
        for account in accounts:
            removed += await self.minio.revoke_user(make_user_resources(name, account.incarnation))
        return accounts, removed, sessions

    @staticmethod
    def _unfinished(name: str, what: str, exc: Exception, again: str) -> ProvisioningError:
        """The error of a revocation whose first step (:meth:`_revoke_first`) was done, but not the rest."""
        return ProvisioningError(
            f"{name}'s access is revoked (database login refused, sessions ended, storage keys removed),"
            f" but the rest of the {what} did not finish: {exc} Run {again} to finish it."
        )

    async def _kept_incarnation(self, conn, name: str, incarnation: int, verb: str):
        """Lock ``name`` and return ``(accounts by incarnation, the deleted one to act on)``.

        Raises ProvisioningError naming the kept incarnations when ``incarnation`` is not one.
        """
        await self._registry.lock_username(conn, name)
        accounts = {a.incarnation: a for a in await self._registry.all(conn, name)}
        target = accounts.get(incarnation)
        if target is None or target.state != "deleted":
            kept = [a.incarnation for a in accounts.values() if a.state == "deleted"]
            raise ProvisioningError(
                f"{name} has no kept data of incarnation {incarnation} to {verb}"
                f" (kept incarnations: {kept or 'none'})."
            )
        return accounts, target

    @measured("restore")
    async def restore(self, username: str, incarnation: int, actor: str | None = None) -> ProvisionResult:
        """Give ``username`` back the kept data of an earlier, deleted incarnation.

        The current incarnation, if any, is deleted with its data kept (so nothing is
        lost), then the restored one becomes live with fresh credentials.
        """
        name = normalize_username(username)
        async with self.postgres.connection() as conn:
            async with conn.transaction():
                accounts, target = await self._kept_incarnation(conn, name, incarnation, "restore")
                for account in accounts.values():
                    if account.state == "active":
                        resources = make_user_resources(name, account.incarnation)
                        await self.postgres.revoke_user(conn, resources)
                        await self.minio.revoke_user(resources)
                        await self._registry.set_state(conn, account, "deleted", bump=True)
                await self._registry.set_state(conn, target, "active")
                # Its person signs up again to get it: that sign-up must not take it
                # for a leftover of an earlier hub (end_leftover_account).
                await self._registry.set_restored_for_signup(conn, target, True)
        events.log_event(self.log, "restored", name, actor, incarnation=incarnation)
        return await self.provision(name, actor=actor)

    async def end_leftover_account(self, username: str, actor: str | None = None) -> list[int]:
        """At a sign-up of a name the hub does not know: end the live account the registry
        still holds for it, unless an admin restored it for this sign-up; returns the
        incarnations ended.

        A live account of a name the hub does not know is left by an earlier hub on the
        same data (a reinstall with a new hub database) or by a deletion without
        revocation; whoever signs up now is someone new and must not get its store,
        bucket and home (they are kept for an admin to restore). An incarnation an admin
        restored (``restore``) is what the sign-up is for: it is kept, and the mark
        consumed, so a later sign-up of the name is judged afresh.
        """
        name = normalize_username(username)
        async with self.postgres.connection() as conn:
            async with conn.transaction():
                await self._registry.lock_username(conn, name)
                account = await self._registry.active(conn, name)
                if account is None:
                    return []
                if await self._registry.restored_for_signup(conn, account):
                    await self._registry.set_restored_for_signup(conn, account, False)
                    return []
        return (await self.deprovision(name, purge=False, actor=actor))["revoked"]

    @measured("purge")
    async def purge(self, username: str, incarnation: int, actor: str | None = None) -> dict:
        """Delete the kept data (schema, role, bucket) of one deleted incarnation of ``username``.

        Only a *deleted* incarnation can be purged this way, so the active account of a
        name that was signed up again is never touched (``deprovision --purge`` purges
        every incarnation, the active one included). Raises ProvisioningError otherwise.
        """
        name = normalize_username(username)
        async with self.postgres.connection() as conn:
            async with conn.transaction():
                _accounts, target = await self._kept_incarnation(conn, name, incarnation, "purge")
                resources = make_user_resources(name, incarnation)
                await self.postgres.purge_user(conn, resources)
                await self.minio.purge_user(resources)
                await self._registry.set_state(conn, target, "purged")
        events.log_event(self.log, "purged", name, actor, incarnation=incarnation)
        return {"user": name, "purged": [incarnation]}

    @measured("rotate")
    async def rotate(self, username: str, actor: str | None = None) -> ProvisionResult:
        """Give ``username`` new credentials now; every old one stops working.

        The MinIO user is made anew, which also ends the service accounts and STS
        credentials made from the old key, and the database sessions opened with
        the old password are ended. A running server loses access until restarted.
        """
        name = normalize_username(username)
        accounts, removed, sessions = await self._revoke_first(name, lambda account: account.state == "active")
        if not accounts:
            raise ProvisioningError(f"{name} has no active account to rotate; provision it first.")
        resources = make_user_resources(name, accounts[0].incarnation)
        try:
            async with self.postgres.connection() as conn:
                # The new generation is recorded at once as well, without the user's lock
                # (the row's own lock is the hub's only): should the rest not finish, the
                # next provisioning makes new credentials, never the old ones again.
                await self._registry.rotate(conn, accounts[0])
                teams = await self._registry.teams_of(conn, name)
            # Provisioning, under the user's lock, makes the new credentials; with the
            # recorded teams it puts the new MinIO user back in the team groups.
            result = await self.provision(name, teams=teams, actor=actor)
            # A provisioning that held the lock before this rotation may have opened the
            # old password again for a moment: whatever logged in with it ends now.
            async with self.postgres.connection() as conn:
                sessions += await self.postgres.end_sessions(conn, resources.role)
        except ProvisioningError as exc:
            raise self._unfinished(name, "rotation", exc, f"`enertef-hub rotate {name}`") from exc
        events.log_event(self.log, "rotated", name, actor, removed=removed, sessions_ended=sessions)
        return result

    @measured("suspend")
    async def suspend(self, username: str, actor: str | None = None) -> dict:
        """Withdrawn approval: take away database and storage access, keep the data.

        Like a deletion's revocation (NOLOGIN, sessions ended, the sweep, the MinIO
        user and every key made from it removed) but the account stays active: the
        next provisioning, once an admin approves the user again, restores access
        with fresh credentials (the generation is bumped, so old secrets stay dead).
        """
        name = normalize_username(username)
        done = {"user": name, "suspended": [], "swept": []}
        accounts, done["swept"], _sessions = await self._revoke_first(
            name, lambda account: account.state == "active")
        try:
            async with self.postgres.connection() as conn:
                # New credentials at the next approval, recorded at once (see rotate).
                for account in accounts:
                    await self._registry.rotate(conn, account)
                async with conn.transaction():
                    await self._registry.lock_username(conn, name)
                    account = await self._registry.active(conn, name)
                    if account is not None:
                        resources = make_user_resources(name, account.incarnation)
                        done["swept"] += await self.postgres.revoke_user(conn, resources)
                        done["swept"] += await self.minio.revoke_user(resources)
                        done["swept"] += await self.minio.sweep_bucket(resources.bucket)
                        if account.incarnation not in [a.incarnation for a in accounts]:
                            await self._registry.rotate(conn, account)  # made meanwhile
                        done["suspended"].append(account.incarnation)
        except ProvisioningError as exc:
            raise self._unfinished(name, "withdrawal of access", exc, f"`enertef-hub suspend {name}`") from exc
        events.log_event(self.log, "suspended", name, actor, incarnations=done["suspended"], swept=done["swept"])
        return done

    # -- inspection -------------------------------------------------------------------

    async def status(self, username: str) -> dict:
        """Lifecycle state and resources of every incarnation of ``username``."""
        name = normalize_username(username)
        async with self.postgres.connection() as conn:
            accounts = await self._registry.all(conn, name)
            incarnations = []
            for account in accounts:
                resources = make_user_resources(name, account.incarnation)
                entry = {
                    "incarnation": account.incarnation,
                    "state": account.state,
                    "generation": account.generation,
                    "ready": account.ready_generation == account.generation,
                }
                entry.update(await self.postgres.store_state(conn, resources))
                entry.update(await self.minio.user_state(resources))
                incarnations.append(entry)
        active = [a for a in accounts if a.state == "active"]
        return {
            "user": name,
            "state": "active" if active else ("deleted" if accounts else "unknown"),
            "incarnations": incarnations,
        }

    @measured("team_sync")
    async def sync_teams(self, groups, actor: str | None = None) -> dict:
        """Make every team's membership match JupyterHub's groups (``{group: [usernames]}``)."""
        return await self.teams.sync_all(groups, actor)

    async def accounts(self, conn=None) -> list[dict]:
        """Every incarnation of every username the registry knows (on ``conn``, else a pool connection)."""
        async with self._connection(conn) as conn:
            return await self._registry.list_all(conn)

    async def holdings(self, conn=None) -> Holdings:
        """Every account incarnation and every team, with their resource names (:mod:`.holdings`).

        Teams are those the registry recorded members of and those whose role the
        catalogue has: a team's store and bucket outlive its last member.
        """
        async with self._connection(conn) as conn:
            rows = await self._registry.list_all(conn)
            members = await self._registry.team_members(conn)
            cur = await conn.execute("SELECT rolname FROM pg_roles WHERE rolname LIKE %s AND NOT rolcanlogin",
                                     (TEAM_ROLE_LIKE,))
            team_roles = [role for (role,) in await cur.fetchall()]
        return build_holdings(rows, members, team_roles)

    async def teams_of(self, username: str, conn=None) -> list[str]:
        """The teams ``username`` was granted, as the registry recorded them."""
        async with self._connection(conn) as conn:
            return await self._registry.teams_of(conn, normalize_username(username))

    @contextlib.asynccontextmanager
    async def _connection(self, conn):
        """``conn`` itself, or a connection of the pool when it is None."""
        if conn is not None:
            yield conn
        else:
            async with self.postgres.connection() as own:
                yield own

    async def close(self):
        """Release connection pools (a recording of MLflow's tables still running is awaited)."""
        await self.mlflow.close()
        await self.postgres.close()
