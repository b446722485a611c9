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

import asyncio
import os
import sys
import time
from dataclasses import dataclass, field
from urllib.parse import quote, urlsplit, urlunsplit

import psycopg
from traitlets import Bool, Float, Instance, Integer, Unicode, default
from traitlets.config import SingletonConfigurable

from . import events, mlflow_snapshot
from .accounts import Account, AccountRegistry
from .credentials import derive_secret
from .environment import make_user_environment
from .errors import ConfigurationError, ProvisioningError
from .metrics import measured
from .mlflow_tables import STORE_XACT_LOCK_SQL
from .naming import (
    InvalidNameError,
    TeamResources,
    UserResources,
    make_team_login_role,
    make_team_resources,
    make_user_resources,
    normalize_username,
)
from .provisioners.minio import MinioProvisioner
from .provisioners.postgres import PostgresProvisioner, judge_server_release
from .store_upgrades import Store, StoreUpgrader
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

    prepare_mlflow_tables = Bool(
        True,
        config=True,
        help="""Give a new store MLflow's tables ahead of the user's first MLflow call
        (at approval, or once the server of the first spawn is up), so that call does
        not wait for MLflow's migrations (~1.5 s). An MLflow call made meanwhile waits
        for the tables under the store's lock.""",
    )

    replay_mlflow_snapshot = Bool(
        True,
        config=True,
        help="""Give a new store MLflow's tables by replaying, as the store's role, the SQL
        MLflow itself ran to create them once (recorded per MLflow release with
        ``Workbench.mlflow_python`` and kept in the registry; see
        ``enertef_hub.mlflow_snapshot``): ~0.1 s in PostgreSQL instead of an MLflow
        subprocess of ~3 s and ~230 MB per spawn. The replay is checked against MLflow's
        own ``alembic_version``. False: always run MLflow in a subprocess.""",
    )

    mlflow_python = Unicode(
        config=True,
        help="""Python interpreter, with MLflow installed, that prepares users' MLflow
        tables (``python -m enertef_hub.mlflow_tables``). Default: the hub's own.""",
    )

    @default("mlflow_python")
    def _mlflow_python_default(self):
        return sys.executable

    mlflow_tables_timeout = Integer(
        600,
        config=True,
        help="""Seconds one MLflow store may take to get its tables (a new store, ~1.5 s)
        or to be upgraded to a newer MLflow's schema (large stores take longest). Past
        it the migration is stopped and rolled back, leaving the store as it was.""",
    )

    mlflow_lock_wait = Float(
        10.0,
        config=True,
        help="""Seconds the hub waits for a store's MLflow lock before it replays MLflow's
        tables into it. The store's own role can hold that lock (the user's MLflow
        takes it while it opens the store); past this wait the hub leaves the tables
        to MLflow's first use, instead of keeping a database connection waiting.""",
    )

    postgres = Instance(PostgresProvisioner)
    minio = Instance(MinioProvisioner)

    @default("postgres")
    def _postgres_default(self):
        return PostgresProvisioner(parent=self, log=self.log)

    @default("minio")
    def _minio_default(self):
        return MinioProvisioner(parent=self, log=self.log)

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._registry = AccountRegistry(self.postgres.registry_schema)
        self._snapshot: dict | None = None  #: MLflow's table creation, recorded (mlflow_snapshot)
        self._recording = None  #: the background task recording it, once started
        self._mlflow_release: str | None = None  #: MLflow release of mlflow_python ("" if none)
        self.upgrader = StoreUpgrader(self.mlflow_python, self.mlflow_tables_timeout, parent=self, log=self.log)
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

    async def prepare(self, username: str, actor: str | None = None) -> ProvisionResult:
        """Everything a spawn of ``username`` makes, made ahead of it (at approval).

        Provisioning (team memberships left as they are: they follow JupyterHub's
        groups at spawn), the upgrade of a store an older MLflow made, and MLflow's
        tables. The spawn then finds it all ready. Raises like :meth:`provision`.
        """
        result = await self.provision(username, teams=None, actor=actor)
        stores = await self.read_mlflow_stores(result)
        await self.upgrade_mlflow_stores(result, None, stores)
        await self.ensure_mlflow_tables(result, stores)
        return result

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

    def mlflow_stores(self, result: ProvisionResult) -> list[Store]:
        """The user's store and their teams' stores, each with the environment that acts as its role.

        A team store is reached with the member's team login (``m_<team>_<user>``, their
        password) and ``-c role=<team role>``, so what MLflow creates there belongs to the team.
        """
        return [Store("user", result.resources.username, result.resources.schema, result.environment),
                *(self._team_store(result, team_name) for team_name in result.teams)]

    @staticmethod
    def _team_store(result: ProvisionResult, team_name: str) -> Store:
        """Team ``team_name``'s store, reached as the member of ``result`` (see :meth:`mlflow_stores`)."""
        team = make_team_resources(team_name)
        env = dict(result.environment)
        env["MLFLOW_TRACKING_URI"] = make_team_tracking_uri(env["MLFLOW_TRACKING_URI"], team, result.resources)
        env["ENERTEF_MLFLOW_ARTIFACT_ROOT"] = f"s3://{team.bucket}/mlflow"
        return Store("team", team.team, team.schema, env)

    async def read_mlflow_stores(self, result: ProvisionResult) -> list[Store]:
        """The user's and teams' stores (:meth:`mlflow_stores`), each with its current revision."""
        stores = self.mlflow_stores(result)
        async with self.postgres.connection() as conn:
            await self.upgrader.read_revisions(conn, stores, self.postgres.reader_of)
        return stores

    async def upgrade_mlflow_stores(self, result: ProvisionResult, progress=None,
                                    stores: list[Store] | None = None) -> list[Store]:
        """Upgrade the user's and teams' stores that an older MLflow made (before the server starts).

        ``progress(message)`` is told what is upgraded. ``stores``: as read by
        :meth:`read_mlflow_stores` (read here if None); an upgraded store's revision is
        updated in it. Raises StoreUpgradeError naming the store when one cannot be
        upgraded; its data is then as it was.
        """
        stores = stores if stores is not None else await self.read_mlflow_stores(result)
        behind = await self.upgrader.behind(stores)
        if behind and progress is not None:
            head = await self.upgrader.head()
            progress(f"Upgrading MLflow store{'s' if len(behind) > 1 else ''} "
                     f"{', '.join(s.schema for s in behind)} to MLflow {head['mlflow']}'s schema"
                     " (as the store's own role, under its lock; this can take a minute)…")
        for store, outcome in await self.upgrader.ensure_all(behind, jobs=len(behind)):
            if isinstance(outcome, Exception):
                raise outcome
            store.revision = outcome["to"]
            events.log_event(self.log, "store-upgraded", result.resources.username, "spawner",
                             store=store.schema, revision_from=outcome["from"], revision_to=outcome["to"],
                             seconds=outcome["seconds"])
        return behind

    async def ensure_mlflow_tables(self, result: ProvisionResult, stores: list[Store] | None = None) -> list[Store]:
        """Create MLflow's tables in the user's and teams' stores unless they exist; upgrade old ones.

        ``stores``: as read by :meth:`read_mlflow_stores` (read here if None), so a spawn
        reads each store's revision once. Runs MLflow in a subprocess so the hub never
        imports it; the secrets go through the subprocess's environment, never its
        command line. Returns the stores it gave tables or upgraded.
        """
        stores = stores if stores is not None else await self.read_mlflow_stores(result)
        # A store whose revision the hub declined to read (pg_reads.UNREADABLE) is left alone.
        head = (await self.upgrader.head())["head"] if any(isinstance(s.revision, str) for s in stores) else None
        todo = [s for s in stores if (s.revision is None and self.prepare_mlflow_tables)
                or (isinstance(s.revision, str) and s.revision != head)]
        new = [s for s in todo if s.revision is None]
        made = []
        if new and self.replay_mlflow_snapshot:
            snapshot = await self._mlflow_snapshot()
            if snapshot is not None:
                made, busy = await self._replay_snapshot(new, snapshot)
                todo = [s for s in todo if s not in made and s not in busy]
        for store, outcome in await self.upgrader.ensure_all(todo, jobs=len(todo)):
            if isinstance(outcome, Exception):
                raise outcome
            made.append(store)
        return made

    async def _mlflow_snapshot(self) -> dict | None:
        """The recording of the current MLflow release's table creation, or None for now.

        The first time a release is seen its recording is made in the background (one
        MLflow subprocess), and stores keep getting their tables from MLflow itself
        until it is kept.
        """
        if self._snapshot is not None:
            return self._snapshot
        version = await self._mlflow_version()
        if version is None:
            return None
        async with self.postgres.connection() as conn:
            self._snapshot = await mlflow_snapshot.load_snapshot(conn, self.postgres.registry_schema, version)
        if self._snapshot is None and self._recording is None:
            self._recording = asyncio.ensure_future(self._record_snapshot())
        return self._snapshot

    async def _record_snapshot(self):
        try:
            await mlflow_snapshot.record_snapshot(
                self.postgres.admin_url, self.postgres.registry_schema, self.mlflow_python, self.mlflow_tables_timeout)
        except Exception as exc:  # noqa: BLE001 - not fatal: MLflow keeps creating tables itself
            self.log.warning("Recording MLflow's table creation failed (stores get their tables from"
                             " MLflow itself): %s", exc)
        else:
            self.log.info("Recorded MLflow's table creation: new stores get their tables by replay")

    async def _mlflow_version(self) -> str | None:
        """The MLflow release of ``mlflow_python``, read from package metadata (no import of MLflow)."""
        if self._mlflow_release is None:
            proc = await asyncio.create_subprocess_exec(
                self.mlflow_python, "-c", _MLFLOW_RELEASE_CODE,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)
            out, _ = await proc.communicate()
            self._mlflow_release = out.decode().strip() if proc.returncode == 0 else ""
        return self._mlflow_release or None

    async def _replay_snapshot(self, stores: list[Store], snapshot: dict) -> tuple[list[Store], list[Store]]:
        """Replay MLflow's table creation into each new store.

        Returns the stores that got their tables, and those whose lock their own role
        held for over ``mlflow_lock_wait`` (their MLflow creates the tables at first use).

        Each store in its own transaction, under the store's MLflow lock (the one
        ``enertef_hub.mlflow_tables`` takes), so a concurrent MLflow run waits, then finds
        the tables. A store that fails is left as it was, for MLflow to create its tables.
        """
        done, busy = [], []
        for store in stores:
            role = store.schema  # a store's schema is named after the role that owns it
            started = time.perf_counter()
            try:
                # As the store's own role (a team member's login acting as the team),
                # never the admin acting as it: see mlflow_snapshot.replay.
                async with self.postgres.store_connection(store.environment["MLFLOW_TRACKING_URI"]) as conn:
                    try:
                        async with conn.transaction():
                            await self._replay_under_lock(conn, snapshot, role, store.schema)
                    except psycopg.errors.LockNotAvailable:
                        # Its own role holds it: running MLflow here would only wait in turn.
                        self.log.warning("MLflow tables of %s not replayed: its MLflow lock was held for over"
                                         " %s s (MLflow will create them at first use)", store.schema,
                                         self.mlflow_lock_wait)
                        busy.append(store)
                        continue
            except (mlflow_snapshot.SnapshotError, psycopg.Error, ProvisioningError) as exc:
                self.log.warning("Replaying MLflow's table creation into %s failed (MLflow will create"
                                 " them): %s", store.schema, exc)
                continue
            done.append(store)
            self.log.info("MLflow tables of %s replayed in %.0f ms", store.schema,
                          (time.perf_counter() - started) * 1000)
        return done, busy

    async def _replay_under_lock(self, conn, snapshot: dict, role: str, schema: str):
        """Replay into ``schema`` (inside the caller's transaction, on a connection of the
        store's role) unless it has tables already."""
        # The store's own role can take this lock too (the user's MLflow does, briefly):
        # never keep a connection waiting for as long as they like.
        await conn.execute("SELECT set_config('lock_timeout', %s, true)",
                           (f"{round(self.mlflow_lock_wait * 1000)}ms",))
        await conn.execute(STORE_XACT_LOCK_SQL, (role,))
        if not await self.upgrader.with_tables(conn, [schema]):
            await mlflow_snapshot.replay(conn, snapshot, role, schema)

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
            accounts = [a for a in await self._registry.list_all(conn) if a["state"] == "active"]
            members = await self._registry.team_members(conn)
            cur = await conn.execute(
                "SELECT rolname FROM pg_roles WHERE rolcanlogin AND (rolname LIKE 'u\\_%' OR rolname LIKE 'm\\_%')")
            can_login = {row[0] for row in await cur.fetchall()}
            results = {}
            for row in accounts:
                resources = make_user_resources(row["username"], row["incarnation"])
                account = Account(row["username"], row["incarnation"], row["state"], row["generation"], None)
                results[resources.username] = result = self._result(resources, account, created=False,
                                                                    started=time.perf_counter())
                if resources.role in can_login:
                    stores.append(self.mlflow_stores(result)[0])  # no teams: the user's store only
            for team_name in sorted(members):
                team = make_team_resources(team_name)
                for username in sorted(members[team_name]):
                    result = results.get(username)
                    if result is not None and make_team_login_role(team.team, result.resources) in can_login:
                        stores.append(self._team_store(result, team.team))
                        break
            await self.upgrader.read_revisions(conn, stores, self.postgres.reader_of)
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

    async def audit(self) -> list[str]:
        """Everything the revocation sweeps would remove now, in every store and bucket.

        Grants, default privileges, ``SECURITY DEFINER`` functions, foreign-owned
        objects and role memberships in users' and teams' schemas; bucket policies
        and other bucket settings; users' service accounts. Empty on a clean system.
        """
        findings = []
        async with self.postgres.connection() as conn:
            accounts = [a for a in await self._registry.list_all(conn) if a["state"] != "purged"]
            # One pass over the catalogue first; the detailed plan only where it found something.
            flagged = await self.postgres.audit_candidates(conn)
            for row in accounts:
                resources = make_user_resources(row["username"], row["incarnation"])
                if flagged & {resources.schema, resources.role}:
                    findings += [f"user {resources.username}: {f}"
                                 for f in await self.postgres.audit_user(conn, resources)]
            cur = await conn.execute("SELECT rolname FROM pg_roles WHERE rolname LIKE 't\\_%' AND NOT rolcanlogin")
            teams = []
            for (role,) in await cur.fetchall():
                try:
                    team = make_team_resources(role[2:])
                except InvalidNameError:
                    continue
                if team.role == role:  # a team role of ours, not one that merely looks like it
                    teams.append(team)
            for team in teams:
                if flagged & {team.schema, team.role}:
                    findings += [f"team {team.team}: {f}" for f in await self.postgres.audit_team(conn, team)]
        # Bucket policies (what makes a bucket anonymous); a sweep also removes
        # lifecycle, notification and replication settings, which only an admin
        # (or allow_bucket_settings) can make.
        owners = {make_user_resources(r["username"], r["incarnation"]).bucket: f"user {r['username']}"
                  for r in accounts}
        owners.update({team.bucket: f"team {team.team}" for team in teams})
        for bucket in await self.minio.buckets_with_policy(sorted(owners)):
            findings.append(f"{owners[bucket]}: bucket {bucket}: bucket policy")
        # One admin call lists every user's service accounts and STS credentials.
        keys = await self.minio.access_keys()
        for row in accounts:
            resources = make_user_resources(row["username"], row["incarnation"])
            findings += [f"user {resources.username}: {kind} {key}" for kind, key in keys.get(resources.minio_user, [])]
        return findings

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

    async def accounts(self) -> list[dict]:
        """Every incarnation of every username the registry knows."""
        async with self.postgres.connection() as conn:
            return await self._registry.list_all(conn)

    async def check(self) -> list[tuple[str, bool, str]]:
        """Connectivity and configuration checks: ``(what, ok, detail)`` rows."""
        rows = []
        rows.append(("secret key", len(self.secret_key) >= 32,
                     "set" if len(self.secret_key) >= 32 else "ENERTEF_SECRET_KEY missing or too short"))
        try:
            started = time.perf_counter()
            async with self.postgres.connection() as conn:
                cur = await conn.execute(
                    "SELECT current_user, version(), r.rolsuper OR r.rolcreaterole,"
                    " r.rolsuper OR d.datdba = r.oid, current_setting('server_version_num')::int"
                    " FROM pg_roles r, pg_database d"
                    " WHERE r.rolname = current_user AND d.datname = current_database()"
                )
                user, version, can_create_roles, owns_database, version_num = await cur.fetchone()
            rows.append(("postgresql", True, f"{self.postgres.display_address} as {user}:"
                         f" {version.split(',')[0]} ({(time.perf_counter() - started) * 1000:.1f} ms)"))
            rows.append(("postgresql release", *judge_server_release(version_num)))
            rows.append(("postgresql privileges", can_create_roles and owns_database,
                         "CREATEROLE and owner of the MLflow database" if can_create_roles and owns_database
                         else f"{user} needs CREATEROLE and must own the database"
                              f" (ALTER ROLE {user} CREATEROLE; ALTER DATABASE ... OWNER TO {user})"))
        except Exception as exc:
            rows.append(("postgresql", False, str(exc)))
        try:
            started = time.perf_counter()
            version = await self.minio.check()
            rows.append(("minio", True, f"{self.minio.endpoint}: {version}"
                         f" ({(time.perf_counter() - started) * 1000:.1f} ms)"))
        except Exception as exc:
            rows.append(("minio", False, str(exc)))
        try:
            findings = await self.audit()
            rows.append(("revocation audit", True if not findings else None,
                         "nothing a revocation sweep would remove" if not findings else
                         f"{len(findings)} found (removed by the next revocation of their user or team):\n    "
                         + "\n    ".join(findings)))
        except Exception as exc:
            rows.append(("revocation audit", False, str(exc)))
        return rows

    async def close(self):
        """Release connection pools (a recording of MLflow's tables still running is awaited)."""
        if self._recording is not None:
            await asyncio.gather(self._recording, return_exceptions=True)
        await self.postgres.close()


#: Prints the MLflow release installed (full MLflow or the hub image's mlflow-skinny).
_MLFLOW_RELEASE_CODE = """
from importlib.metadata import PackageNotFoundError, version
for name in ("mlflow", "mlflow-skinny"):
    try:
        print(version(name)); break
    except PackageNotFoundError:
        pass
"""


def make_team_tracking_uri(personal_uri: str, team: TeamResources, member: UserResources) -> str:
    """``member``'s tracking URI turned into ``team``'s store (pure): their team login
    (``m_<team>_<user>``, same password) acting as the team role, in the team's schema."""
    parts = urlsplit(personal_uri)
    if not parts.netloc.startswith(f"{member.role}:"):
        raise ValueError(f"not a tracking URI of {member.role}")
    netloc = make_team_login_role(team.team, member) + parts.netloc[len(member.role):]
    return tracking_uri_with_options(urlunsplit(parts._replace(netloc=netloc)),
                                     f"-c role={team.role} -c search_path={team.schema}")


def tracking_uri_with_options(uri: str, options: str) -> str:
    """Append a libpq ``options`` string (e.g. ``-c role=t_team1``) to a SQLAlchemy URI (pure)."""
    return f"{uri}{'&' if '?' in uri else '?'}options={quote(options)}"
