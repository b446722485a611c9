"""MLflow's tables in users' and teams' stores: made ahead of first use, upgraded when behind.

:class:`MlflowStores` is the one place that decides what a user's MLflow stores (their
own and their teams') need before MLflow uses them, and does it as each store's own
role: a store an older MLflow made is upgraded (:class:`~.store_upgrades.StoreUpgrader`,
MLflow's migrations in a subprocess), a new store gets MLflow's tables, by replaying
MLflow's recorded table creation (:mod:`.mlflow_snapshot`, ~0.1 s) or else by MLflow
itself. Its one entry point, :meth:`MlflowStores.ensure`, serves a spawn, a
preparation at approval and the CLI alike.
"""

from __future__ import annotations

import asyncio
import sys
import time
from typing import TYPE_CHECKING
from urllib.parse import quote, urlsplit, urlunsplit

import psycopg
from traitlets import Bool, Float, Integer, Unicode, default, observe
from traitlets.config import LoggingConfigurable

from . import events, mlflow_snapshot
from .errors import ProvisioningError
from .mlflow_tables import STORE_XACT_LOCK_SQL
from .naming import TeamResources, UserResources, make_team_login_role, make_team_resources
from .store_upgrades import Store, StoreUpgrader

if TYPE_CHECKING:
    from .provisioners.postgres import PostgresProvisioner
    from .workbench import ProvisionResult

#: Settings that were ``Workbench``'s until they moved here; ``c.Workbench.<name>`` still works (with a warning).
MOVED_FROM_WORKBENCH = ("prepare_mlflow_tables", "replay_mlflow_snapshot", "mlflow_python",
                        "mlflow_tables_timeout", "mlflow_lock_wait")

#: Prints the MLflow release installed (full MLflow or the hub image's mlflow-skinny).
_MLFLOW_RELEASE_CODE = """
from importlib.metadata import PackageNotFoundError, version
for name in ("mlflow", "mlflow-skinny"):
    try:
        print(version(name)); break
    except PackageNotFoundError:
        pass
"""


class MlflowStores(LoggingConfigurable):
    """MLflow's tables in users' and teams' stores: given to new stores, upgraded in old ones."""

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
        ``MlflowStores.mlflow_python`` and kept in the registry; see
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

    def __init__(self, postgres: PostgresProvisioner, **kwargs):
        super().__init__(**kwargs)
        self.postgres = postgres
        self._snapshot: dict | None = None  #: MLflow's table creation, recorded (mlflow_snapshot)
        self._recording = None  #: the background task recording it, once started
        self._mlflow_release: str | None = None  #: MLflow release of mlflow_python ("" if none)
        self.upgrader = StoreUpgrader(self.mlflow_python, self.mlflow_tables_timeout, parent=self, log=self.log)

    @observe("mlflow_python", "mlflow_tables_timeout")
    def _tell_the_upgrader(self, change):
        # Set after the upgrader was made (e.g. through a deprecated Workbench name).
        if hasattr(self, "upgrader"):
            self.upgrader.python, self.upgrader.timeout = self.mlflow_python, self.mlflow_tables_timeout

    # -- which stores ---------------------------------------------------------------

    def of(self, result: ProvisionResult) -> list[Store]:
        """The user's store and their teams' stores, each with the environment that acts as its role.

        A team store is reached with the member's team login (``m_<team>_<user>``, their
        password) and ``-c role=<team role>``, so what MLflow creates there belongs to the team.
        """
        return [Store("user", result.resources.username, result.resources.schema, result.environment),
                *(self.team_store(result, team_name) for team_name in result.teams)]

    @staticmethod
    def team_store(result: ProvisionResult, team_name: str) -> Store:
        """Team ``team_name``'s store, reached as the member of ``result`` (see :meth:`of`)."""
        team = make_team_resources(team_name)
        env = dict(result.environment)
        env["MLFLOW_TRACKING_URI"] = make_team_tracking_uri(env["MLFLOW_TRACKING_URI"], team, result.resources)
        env["ENERTEF_MLFLOW_ARTIFACT_ROOT"] = f"s3://{team.bucket}/mlflow"
        return Store("team", team.team, team.schema, env)

    async def read(self, result: ProvisionResult) -> list[Store]:
        """The user's and teams' stores (:meth:`of`), each with its current revision."""
        stores = self.of(result)
        async with self.postgres.connection() as conn:
            await self.read_revisions(conn, stores)
        return stores

    async def read_revisions(self, conn, stores: list[Store]) -> list[Store]:
        """Fill in each store's current revision, on the caller's admin connection."""
        return await self.upgrader.read_revisions(conn, stores, self.postgres.reader_of)

    # -- bringing them to this MLflow --------------------------------------------------

    async def ensure(self, result: ProvisionResult, stores: list[Store] | None = None, *, tables: bool = True,
                     progress=None, actor: str = "spawner") -> list[Store]:
        """Bring the user's and teams' stores to this MLflow; return those it upgraded or gave tables.

        First every store an older MLflow made is upgraded (``progress(message)`` is told
        what), then, with ``tables``, new stores get MLflow's tables (unless
        ``prepare_mlflow_tables`` is off). ``stores``: as read by :meth:`read` (read here
        if None), so a spawn reads each store's revision once; an upgraded store's
        revision is updated in it. MLflow runs in a subprocess, so the hub never imports
        it; the secrets go through the subprocess's environment, never its command line.
        Raises StoreUpgradeError naming the store when one cannot be upgraded or made;
        its data is then as it was.
        """
        stores = stores if stores is not None else await self.read(result)
        done = await self._upgrade(result, stores, progress, actor)
        if tables:
            done += await self._make_tables(stores)
        return done

    async def _upgrade(self, result: ProvisionResult, stores: list[Store], progress, actor: str) -> list[Store]:
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
            events.log_event(self.log, "store-upgraded", result.resources.username, actor,
                             store=store.schema, revision_from=outcome["from"], revision_to=outcome["to"],
                             seconds=outcome["seconds"])
        return behind

    async def _make_tables(self, stores: list[Store]) -> list[Store]:
        """Give the new stores (no tables yet) MLflow's tables: by replay, else by MLflow itself."""
        # A store whose revision the hub declined to read (pg_reads.UNREADABLE) is left alone.
        todo = [s for s in stores if s.revision is None] if self.prepare_mlflow_tables else []
        made = []
        if todo and self.replay_mlflow_snapshot:
            snapshot = await self.snapshot()
            if snapshot is not None:
                made, busy = await self.replay(todo, snapshot)
                todo = [s for s in todo if s not in made and s not in busy]
        for store, outcome in await self.upgrader.ensure_all(todo, jobs=len(todo)):
            if isinstance(outcome, Exception):
                raise outcome
            made.append(store)
        return made

    # -- MLflow's table creation, recorded and replayed ----------------------------------

    async def snapshot(self) -> dict | None:
        """The recording of the current MLflow release's table creation, or None for now.

        The first time a release is seen its recording is made in the background (one
        MLflow subprocess), and stores keep getting their tables from MLflow itself
        until it is kept.
        """
        if self._snapshot is not None:
            return self._snapshot
        version = await self.mlflow_release()
        if version is None:
            return None
        async with self.postgres.connection() as conn:
            self._snapshot = await mlflow_snapshot.load_snapshot(conn, self.postgres.registry_schema, version)
        if self._snapshot is None and self._recording is None:
            self._recording = asyncio.ensure_future(self.record_snapshot())
        return self._snapshot

    async def record_snapshot(self):
        """Record MLflow's table creation for ``mlflow_python``'s release and keep it (failure is logged)."""
        try:
            await mlflow_snapshot.record_snapshot(
                self.postgres.admin_url, self.postgres.registry_schema, self.mlflow_python, self.mlflow_tables_timeout)
        except Exception as exc:  # noqa: BLE001 - not fatal: MLflow keeps creating tables itself
            self.log.warning("Recording MLflow's table creation failed (stores get their tables from"
                             " MLflow itself): %s", exc)
        else:
            self.log.info("Recorded MLflow's table creation: new stores get their tables by replay")

    async def mlflow_release(self) -> str | None:
        """The MLflow release of ``mlflow_python``, read from package metadata (no import of MLflow)."""
        if self._mlflow_release is None:
            proc = await asyncio.create_subprocess_exec(
                self.mlflow_python, "-c", _MLFLOW_RELEASE_CODE,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)
            out, _ = await proc.communicate()
            self._mlflow_release = out.decode().strip() if proc.returncode == 0 else ""
        return self._mlflow_release or None

    async def replay(self, stores: list[Store], snapshot: dict) -> tuple[list[Store], list[Store]]:
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

    async def close(self):
        """Wait for a recording of MLflow's tables still running."""
        if self._recording is not None:
            await asyncio.gather(self._recording, return_exceptions=True)


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
