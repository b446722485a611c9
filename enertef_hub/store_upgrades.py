"""MLflow stores follow the MLflow that uses them: created when new, upgraded when behind.

A store (a user's or a team's schema) carries MLflow's alembic revision in its
``alembic_version`` table. When the notebook image's MLflow is bumped, every store
made by the older release is *behind*, and MLflow refuses to use it ("out-of-date
database schema"). This module compares each store's revision with the head of the
MLflow that will use it (``MlflowStores.mlflow_python``'s, which must match the
notebook image's) and runs ``python -m enertef_hub.mlflow_tables`` — MLflow's own
migrations — as the store's role, under the store's advisory lock, in a
subprocess (the hub never imports MLflow).

Used at each spawn (a behind store is upgraded before the server starts) and by
``enertef-hub upgrade-stores`` (every store ahead of time; resumable, since a store
already at the head is skipped).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
from dataclasses import dataclass, field

import psycopg
from traitlets import Unicode
from traitlets.config import LoggingConfigurable

from . import metrics
from .errors import ProvisioningError
from .provisioners import pg_reads

#: Exit code of ``enertef_hub.mlflow_tables`` when the store was made by a later MLflow.
EXIT_STORE_NEWER = 3


class StoreUpgradeError(ProvisioningError):
    """A store could not be created or upgraded; its data is as it was."""


@dataclass
class Store:
    """One MLflow store, with the environment its migration runs in (the store's role)."""

    kind: str  #: "user" or "team"
    name: str  #: username or team name
    schema: str
    environment: dict[str, str] = field(repr=False)
    #: the store's alembic revision; None: no MLflow tables yet; ``pg_reads.UNREADABLE``:
    #: tables the hub declines to read (not MLflow's plain table, or locked by their owner)
    revision: object = None


class StoreUpgrader(LoggingConfigurable):
    """Brings MLflow stores to the schema of the MLflow in users' servers."""

    mlflow_schema_head = Unicode(
        "",
        config=True,
        help="""MLflow schema (alembic) revision that users' servers expect, e.g.
        ``dc11669786a5`` for MLflow 3.17.2. A store at another revision is upgraded at
        spawn. Empty (default): the head of the MLflow that ``MlflowStores.mlflow_python``
        runs, asked once per hub process; that MLflow must then be the notebook
        image's release (the hub image installs ``enertef-hub[notebook]``).""",
    )

    def __init__(self, python: str, timeout: float, **kwargs):
        super().__init__(**kwargs)
        self.python = python  #: interpreter whose MLflow makes and migrates stores
        self.timeout = timeout  #: seconds one store may take
        self._head: dict | None = None
        self._head_lock = asyncio.Lock()

    # -- what the MLflow in users' servers expects -----------------------------------

    async def head(self) -> dict:
        """``{"head": revision, "mlflow": version}`` of the MLflow that upgrades stores."""
        if self._head is None:
            async with self._head_lock:
                if self._head is None:
                    if self.mlflow_schema_head:
                        self._head = {"head": self.mlflow_schema_head, "mlflow": "configured"}
                    else:
                        output = await self._run(["--head"], dict(os.environ), "MLflow schema head")
                        self._head = json.loads(output.strip().splitlines()[-1])
        return self._head

    # -- what a store has -----------------------------------------------------------

    @staticmethod
    async def with_tables(conn: psycopg.AsyncConnection, schemas: list[str]) -> set[str]:
        """Those of ``schemas`` that have MLflow's ``alembic_version`` table (from the catalogue:
        no privilege on the schemas needed)."""
        cur = await conn.execute(
            "SELECT n.nspname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = ANY(%s) AND c.relname = 'alembic_version' AND c.relkind IN ('r', 'p')",
            (list(schemas),))
        return {row[0] for row in await cur.fetchall()}

    @classmethod
    async def store_revision(cls, conn: psycopg.AsyncConnection, schema: str):
        """The alembic revision recorded in ``schema``, or None if it has no MLflow tables;
        ``pg_reads.UNREADABLE`` if the table is not one the hub reads (see :mod:`.provisioners.pg_reads`).

        Reading it needs the privileges of the schema's owner (the caller's membership).
        """
        if not await cls.with_tables(conn, [schema]):
            return None
        return await pg_reads.read_alembic_revision(conn, schema)

    async def read_revisions(self, conn: psycopg.AsyncConnection, stores: list[Store], member_of=None) -> list[Store]:
        """Fill in each store's current revision.

        ``member_of(conn, *roles)``: an async context manager under which the connection
        may read the stores (``PostgresProvisioner.reader_of``: the admin role is a member
        of a store's role only while it reads it); entered only if a store has tables.
        A store whose revision cannot be read safely gets ``pg_reads.UNREADABLE``: it is
        neither given tables nor upgraded (the hub never runs what its owner made).
        """
        tables = await self.with_tables(conn, [s.schema for s in stores])
        for store in stores:
            store.revision = None
        todo = [s for s in stores if s.schema in tables]
        if todo:
            # A store's role has the schema's name.
            async with (member_of(conn, *[s.schema for s in todo]) if member_of else contextlib.nullcontext()):
                for store in todo:
                    store.revision = await pg_reads.read_alembic_revision(conn, store.schema)
                    if store.revision is pg_reads.UNREADABLE:
                        self.log.warning("MLflow store %s: its alembic_version is not a plain table the hub"
                                         " reads (or is locked); not upgraded at this spawn", store.schema)
                    elif store.revision is None:
                        store.revision = pg_reads.UNREADABLE  # tables without a revision: not MLflow's doing
        return stores

    async def behind(self, stores: list[Store]) -> list[Store]:
        """Stores that have MLflow tables at another revision than the head."""
        known = [s for s in stores if isinstance(s.revision, str)]
        if not known:
            return []  # new (or unreadable) stores only: no need to ask MLflow for its head
        head = (await self.head())["head"]
        return [s for s in known if s.revision != head]

    # -- doing it ----------------------------------------------------------------------

    async def ensure(self, store: Store) -> dict:
        """Create or upgrade one store; return the summary printed by ``mlflow_tables``.

        Raises StoreUpgradeError (a plain-words message; details in the hub log).
        """
        env = dict(os.environ)
        for key in list(env):
            if key.startswith(("ENERTEF_", "AWS_", "MLFLOW_", "PG")):
                del env[key]  # only the store's own settings reach MLflow
        env.update(store.environment)
        started = time.perf_counter()
        operation = "store_tables" if store.revision is None else "store_upgrade"
        try:
            output = await self._run([], env, f"MLflow store {store.schema}", secrets=_secrets_in(store.environment))
        except StoreUpgradeError:
            metrics.observe(operation, time.perf_counter() - started, ok=False)
            raise
        result = json.loads(output.strip().splitlines()[-1])
        result["seconds"] = round(time.perf_counter() - started, 3)
        metrics.observe("store_upgrade" if result["action"] == "upgraded" else "store_tables", result["seconds"], ok=True)
        return result

    async def _run(self, args: list[str], env: dict[str, str], what: str, secrets=()) -> str:
        proc = await asyncio.create_subprocess_exec(
            self.python, "-m", "enertef_hub.mlflow_tables", *args,
            env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        try:
            out, err = await asyncio.wait_for(proc.communicate(), self.timeout)
        except asyncio.TimeoutError:
            proc.kill()
            await proc.wait()
            raise StoreUpgradeError(
                f"Preparing {what} took longer than {self.timeout} s and was stopped; its"
                " data is as it was. Ask an admin to run `enertef-hub upgrade-stores`."
            ) from None
        if proc.returncode == 0:
            return out.decode()
        text = err.decode(errors="replace")[-3000:]
        for secret in secrets:
            if secret:
                text = text.replace(secret, "***")  # never a secret in the hub's log
        self.log.error("Preparing %s failed (exit %s):\n%s", what, proc.returncode, text)
        if proc.returncode == EXIT_STORE_NEWER:
            last = text.strip().splitlines()[-1].removeprefix("error: ")
            raise StoreUpgradeError(f"{what} cannot be used by this MLflow: {last}")
        raise StoreUpgradeError(
            f"{what} could not be created or upgraded to this MLflow's schema; its data is"
            " untouched (the migration was rolled back). Details are in the hub log; an admin"
            " can retry with `enertef-hub upgrade-stores`."
        )

    async def ensure_all(self, stores: list[Store], jobs: int = 2, on_done=None,
                         around=None) -> list[tuple[Store, dict | Exception]]:
        """Create or upgrade ``stores``, ``jobs`` at a time; one failure does not stop the rest.

        ``on_done(store, outcome)`` is called after each store (for a progress bar).
        ``around(store)``: an async context manager each store's run happens in (the
        admin role's membership in the store's role, for ``upgrade-stores``).
        Returns ``(store, summary or exception)`` in the order given.
        """
        slots = asyncio.Semaphore(max(1, jobs))

        async def one(store: Store):
            async with slots:
                try:
                    async with (around(store) if around else contextlib.nullcontext()):
                        outcome = await self.ensure(store)
                except StoreUpgradeError as exc:
                    outcome = exc
                except (psycopg.Error, OSError) as exc:  # e.g. the database is unreachable
                    outcome = StoreUpgradeError(f"MLflow store {store.schema}: {type(exc).__name__}: {exc}")
            if on_done is not None:
                on_done(store, outcome)
            return store, outcome

        return list(await asyncio.gather(*(one(s) for s in stores)))


def _secrets_in(environment: dict[str, str]) -> list[str]:
    """The secrets of a store's environment, to blank out of logged output."""
    secrets = [environment.get("AWS_SECRET_ACCESS_KEY", "")]
    uri = environment.get("MLFLOW_TRACKING_URI", "")
    if "://" in uri and "@" in uri.split("://", 1)[1]:
        userinfo = uri.split("://", 1)[1].split("@", 1)[0]
        if ":" in userinfo:
            secrets.append(userinfo.split(":", 1)[1])
    return secrets


def sqlalchemy_uri(url: str) -> str:
    """A ``postgresql://`` URL as SQLAlchemy's psycopg 3 URL (pure)."""
    scheme, rest = url.split("://", 1)
    return f"postgresql+psycopg://{rest}" if scheme in ("postgresql", "postgres") else url


class ProgressBar:
    """A one-line progress bar on a terminal, or one line per store otherwise."""

    def __init__(self, total: int, stream, width: int = 30):
        self.total, self.stream, self.width = total, stream, width
        self.done = 0
        self.failed = 0
        self.tty = hasattr(stream, "isatty") and stream.isatty()

    def update(self, label: str, ok: bool):
        self.done += 1
        self.failed += 0 if ok else 1
        filled = int(self.width * self.done / max(1, self.total))
        bar = f"[{'#' * filled}{'.' * (self.width - filled)}] {self.done}/{self.total}"
        tail = f" ({self.failed} failed)" if self.failed else ""
        if self.tty:
            self.stream.write(f"\r{bar}{tail} {label[:40]:<40}")
            if self.done == self.total:
                self.stream.write("\n")
        else:
            self.stream.write(f"{bar}{tail} {label}\n")
        self.stream.flush()
