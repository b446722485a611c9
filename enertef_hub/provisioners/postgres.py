"""PostgreSQL: one login role and one schema per user, the MLflow store.

Isolation is the database's own: each user's schema is owned by the user's role,
no privilege on it is granted to anyone else, ``public`` is closed, and the MLflow
database accepts connections only from members of one group role. Another user's
role gets ``permission denied for schema`` on anything of alice's.

Every DDL statement of one provisioning runs in the caller's transaction, so a
failure (here or in MinIO afterwards) rolls all of it back: no half-made role or
schema is ever left behind. Identifiers and literals are composed with
``psycopg.sql`` only.
"""

from __future__ import annotations

import asyncio
import os
from contextlib import asynccontextmanager
from urllib.parse import urlsplit

import psycopg
from psycopg import sql
from psycopg_pool import AsyncConnectionPool, PoolTimeout
from traitlets import Float, Integer, Unicode, default
from traitlets.config import LoggingConfigurable

from ..errors import ConfigurationError, ServiceUnavailableError
from ..naming import TeamResources, UserResources
from . import pg_membership, pg_sweep


class PostgresProvisioner(LoggingConfigurable):
    """Creates, repairs, revokes and purges users' MLflow stores in PostgreSQL."""

    admin_url = Unicode(
        config=True,
        help="""URL of the PostgreSQL database that holds every user's MLflow store,
        with the credentials of the admin role the hub uses, e.g.
        ``postgresql://enertef_admin:PASSWORD@postgres:5432/mlflow``.

        The role needs CREATEROLE and must own the database; it need not be a
        superuser. Defaults to the ``ENERTEF_POSTGRES_ADMIN_URL`` environment
        variable. Never passed to users' servers.""",
    )

    @default("admin_url")
    def _admin_url_default(self):
        return os.environ.get("ENERTEF_POSTGRES_ADMIN_URL", "")

    user_host = Unicode(
        config=True,
        help="""``host:port`` at which users' servers reach PostgreSQL, when it differs
        from the host in ``admin_url`` (e.g. the hub uses a cluster-internal name and
        user pods another). Empty: the host and port of ``admin_url``.""",
    )

    users_group_role = Unicode(
        "enertef_users",
        config=True,
        help="""NOLOGIN group role of which every user role is a member. Only this
        role may connect to the MLflow database (CONNECT is revoked from PUBLIC).""",
    )

    registry_schema = Unicode(
        "enertef",
        config=True,
        help="""Schema, in the MLflow database, where the hub keeps its account
        registry (incarnations, credential generations, teams). No user role can
        read it.""",
    )

    pool_max_size = Integer(
        10,
        config=True,
        help="""Most connections the hub keeps open to PostgreSQL. Provisioning of many
        users at once queues for these instead of opening one connection each.""",
    )

    connect_timeout = Float(
        5.0,
        config=True,
        help="""Seconds to wait for a PostgreSQL connection before telling the user
        the database is unreachable.""",
    )

    role_connection_limit = Integer(
        20,
        config=True,
        help="""CONNECTION LIMIT of each user's role, so one user's runaway processes
        cannot take every connection of the server. -1 for no limit.""",
    )

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._pool: AsyncConnectionPool | None = None
        self._pool_loop: asyncio.AbstractEventLoop | None = None
        self._setup_done = False
        self._setup_lock: asyncio.Lock | None = None
        self._slots: asyncio.Semaphore | None = None
        self._is_superuser = False

    # -- connection handling -------------------------------------------------

    @property
    def display_address(self) -> str:
        """``host:port/database`` of the admin URL, safe to show (no credentials)."""
        parts = urlsplit(self.admin_url)
        return f"{parts.hostname or 'localhost'}:{parts.port or 5432}{parts.path or ''}"

    def _check_config(self):
        if not self.admin_url:
            raise ConfigurationError(
                "PostgresProvisioner.admin_url is not set: set it in the hub's"
                " configuration or the ENERTEF_POSTGRES_ADMIN_URL environment variable."
            )

    def _unreachable(self, exc: BaseException) -> ServiceUnavailableError:
        # The driver's message may quote the URL; only the host is shown to users.
        return ServiceUnavailableError(
            f"The MLflow database (PostgreSQL at {self.display_address}) is unreachable"
            f" ({type(exc).__name__}). Nothing was changed. Ask an admin to check that"
            " PostgreSQL is running, then start your server again."
        )

    async def _get_pool(self) -> AsyncConnectionPool:
        loop = asyncio.get_running_loop()
        if self._pool is None or self._pool_loop is not loop:
            self._check_config()
            # A pool is bound to the event loop that opened it (the hub has one; the
            # CLI and tests may run several loops one after another).
            self._pool = AsyncConnectionPool(
                self.admin_url,
                min_size=1,
                max_size=self.pool_max_size,
                timeout=self.connect_timeout,
                kwargs={"autocommit": True, "connect_timeout": max(1, int(self.connect_timeout)),
                        "application_name": "enertef-hub"},
                check=AsyncConnectionPool.check_connection,
                open=False,
                name="enertef-admin",
            )
            await self._pool.open(wait=False)
            self._pool_loop = loop
            self._setup_done = False
            self._setup_lock = asyncio.Lock()
            # Callers queue here, not in the pool: the pool's timeout then measures
            # only how long PostgreSQL takes to answer, so "unreachable" is reported
            # quickly while a storm of spawns just waits its turn.
            self._slots = asyncio.Semaphore(self.pool_max_size)
        return self._pool

    @asynccontextmanager
    async def connection(self):
        """An admin connection from the pool (autocommit; use ``conn.transaction()``).

        Raises ServiceUnavailableError when PostgreSQL cannot be reached.
        """
        pool = await self._get_pool()
        async with self._slots:
            try:
                async with pool.connection() as conn:
                    await self._ensure_setup(conn)
                    yield conn
            except (PoolTimeout, psycopg.OperationalError) as exc:
                raise self._unreachable(exc) from None

    async def close(self):
        """Close the connection pool (the CLI and tests call this before exiting)."""
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    async def peak_connections(self) -> dict:
        """Connection statistics of the pool (for the benchmark and ``status``)."""
        pool = await self._get_pool()
        return pool.get_stats()

    # -- one-time setup --------------------------------------------------------

    async def _ensure_setup(self, conn: psycopg.AsyncConnection):
        if self._setup_done:
            return
        async with self._setup_lock:
            if self._setup_done:
                return
            async with conn.transaction():
                # Serialises set-up between several hub processes and the CLI.
                await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended('enertef:setup', 0))")
                cur = await conn.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
                self._is_superuser = bool((await cur.fetchone())[0])
                for statement in make_setup_statements(self.registry_schema, self.users_group_role):
                    await conn.execute(statement)
                if not self._is_superuser:
                    # Earlier releases kept the admin a member of every store role.
                    left = await pg_membership.revoke_leftovers(conn)
                    if left:
                        self.log.info("The admin role is no longer a member of %d store roles", len(left))
                await conn.execute(
                    sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(
                        sql.Identifier(conn.info.dbname)
                    )
                )
                await conn.execute(
                    sql.SQL("GRANT CONNECT, TEMPORARY ON DATABASE {} TO {}").format(
                        sql.Identifier(conn.info.dbname), sql.Identifier(self.users_group_role)
                    )
                )
            self._setup_done = True

    # -- acting on a store as a member of its role -----------------------------

    def member_of(self, conn: psycopg.AsyncConnection, *roles: str):
        """Async context manager: the admin is a member of ``roles`` for the block only.

        Within a transaction (a savepoint inside the caller's) and revoked before it
        ends; see :mod:`.pg_membership`. A superuser admin gets no grant.
        """
        return pg_membership.temporary_membership(conn, *roles)

    def reader_of(self, conn: psycopg.AsyncConnection, *roles: str):
        """Async context manager like :meth:`member_of`, for a block that only reads:
        it is rolled back, the grant with it (see :mod:`.pg_membership`)."""
        return pg_membership.reading_membership(conn, *roles)

    def lent_membership(self, role: str):
        """Async context manager: the admin is a member of ``role`` (committed) for the block.

        For a process connecting as the admin with ``-c role=<role>``
        (``enertef-hub upgrade-stores``).
        """
        self._check_config()
        return pg_membership.lent_membership(self.admin_url, role, max(1, int(self.connect_timeout)))

    # -- per-user DDL (inside the caller's transaction) ----------------------

    def user_uri(self, resources: UserResources, password: str, options: str = "") -> str:
        """The SQLAlchemy URI a user's server uses for MLflow (pure)."""
        parts = urlsplit(self.admin_url)
        host = self.user_host or f"{parts.hostname}:{parts.port or 5432}"
        return make_user_uri(resources.role, password, host, parts.path.lstrip("/"), options)

    async def ensure_user_store(self, conn: psycopg.AsyncConnection, resources: UserResources, password: str):
        """Create or repair alice's role and schema and set her password (idempotent)."""
        role = sql.Identifier(resources.role)
        cur = await conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (resources.role,))
        if await cur.fetchone() is None:
            await conn.execute(
                sql.SQL(
                    "CREATE ROLE {role} LOGIN PASSWORD {pw} NOSUPERUSER NOCREATEDB"
                    " NOCREATEROLE NOREPLICATION NOBYPASSRLS INHERIT CONNECTION LIMIT {limit}"
                ).format(role=role, pw=sql.Literal(password), limit=sql.Literal(self.role_connection_limit))
            )
        else:
            await conn.execute(
                sql.SQL("ALTER ROLE {role} LOGIN PASSWORD {pw} CONNECTION LIMIT {limit}").format(
                    role=role, pw=sql.Literal(password), limit=sql.Literal(self.role_connection_limit)
                )
            )
        await conn.execute(
            sql.SQL("GRANT {group} TO {role}").format(group=sql.Identifier(self.users_group_role), role=role)
        )
        await self._ensure_owned_schema(conn, resources.schema, resources.role)
        await conn.execute(
            sql.SQL("ALTER ROLE {role} SET search_path = {schema}").format(
                role=role, schema=sql.Literal(resources.schema)
            )
        )

    async def _ensure_owned_schema(self, conn: psycopg.AsyncConnection, schema: str, owner: str):
        """Create ``schema`` owned by role ``owner``, or give it back to ``owner``."""
        role = sql.Identifier(owner)
        cur = await conn.execute(
            "SELECT pg_get_userbyid(nspowner) FROM pg_namespace WHERE nspname = %s", (schema,))
        row = await cur.fetchone()
        if row is not None and row[0] == owner:
            return  # the usual case at a repeat provisioning: nothing to grant or change
        # PostgreSQL 15+: a CREATEROLE admin must be a member of a role to create a
        # schema owned by it, and of the current owner to re-own it; only for now.
        async with self.member_of(conn, owner, *(row or ())):
            await conn.execute(
                sql.SQL("CREATE SCHEMA IF NOT EXISTS {schema} AUTHORIZATION {role}").format(
                    schema=sql.Identifier(schema), role=role
                )
            )
            # The schema could have been re-owned by hand; its owner must own it for
            # MLflow to create and migrate its tables.
            await conn.execute(
                sql.SQL("ALTER SCHEMA {schema} OWNER TO {role}").format(schema=sql.Identifier(schema), role=role)
            )

    async def revoke_user(self, conn: psycopg.AsyncConnection, resources: UserResources) -> list[str]:
        """Stop alice from logging in, at once, and close every path she opened into her store.

        No password, NOLOGIN, her sessions ended; then the sweep
        (:mod:`.pg_sweep`): grants she gave others or ``PUBLIC`` on her schema,
        roles she granted her role to, her default privileges and ``SECURITY
        DEFINER`` functions are taken back, and whatever she owns outside her
        schema goes to that schema's owner. Her data stays. Returns what the
        sweep changed.
        """
        cur = await conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (resources.role,))
        if await cur.fetchone() is None:
            return []
        await conn.execute(
            sql.SQL("ALTER ROLE {role} NOLOGIN PASSWORD NULL").format(role=sql.Identifier(resources.role))
        )
        await self.end_sessions(conn, resources.role)
        return await pg_sweep.sweep(conn, resources.role, resources.schema, members_allowed=False)

    async def end_sessions(self, conn: psycopg.AsyncConnection, role: str) -> int:
        """End every open session of ``role`` (rotation: the old password's sessions go too).

        pg_terminate_backend needs membership in the sessions' role.
        """
        async with self.member_of(conn, role):
            return await pg_sweep.terminate_sessions(conn, role)

    async def audit_candidates(self, conn: psycopg.AsyncConnection) -> set[str]:
        """Schemas and roles in which a sweep may find something (one catalogue pass, for ``check``)."""
        return await pg_sweep.flagged_names(conn)

    async def audit_user(self, conn: psycopg.AsyncConnection, resources: UserResources) -> list[str]:
        """What a sweep of alice's store would change now (``enertef-hub check``)."""
        return [a.description for a in await pg_sweep.plan_sweep(
            conn, resources.role, resources.schema, members_allowed=False)]

    async def audit_team(self, conn: psycopg.AsyncConnection, team: TeamResources) -> list[str]:
        """What a sweep of a team's store would change now (``enertef-hub check``)."""
        return [a.description for a in await pg_sweep.plan_sweep(conn, team.role, team.schema, members_allowed=True)]

    async def purge_user(self, conn: psycopg.AsyncConnection, resources: UserResources):
        """Delete alice's schema with all her MLflow data, and her role."""
        await self.revoke_user(conn, resources)
        cur = await conn.execute(
            "SELECT pg_get_userbyid(nspowner) FROM pg_namespace WHERE nspname = %s", (resources.schema,))
        owner = await cur.fetchone()
        cur = await conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (resources.role,))
        role_exists = await cur.fetchone() is not None
        # Dropping needs membership in the schema's owner and in the role; taken
        # back before the role itself is dropped.
        async with self.member_of(conn, resources.role, *(owner or ())):
            await conn.execute(
                sql.SQL("DROP SCHEMA IF EXISTS {schema} CASCADE").format(schema=sql.Identifier(resources.schema))
            )
            if role_exists:
                await conn.execute(sql.SQL("DROP OWNED BY {role}").format(role=sql.Identifier(resources.role)))
        if role_exists:
            await conn.execute(sql.SQL("DROP ROLE {role}").format(role=sql.Identifier(resources.role)))

    # -- teams (inside the caller's transaction) ------------------------------------

    async def ensure_team_store(self, conn: psycopg.AsyncConnection, team: TeamResources):
        """Create or repair a team's NOLOGIN group role and the schema it owns."""
        role = sql.Identifier(team.role)
        await conn.execute(
            sql.SQL(
                "DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = {name}) THEN"
                " CREATE ROLE {role} NOLOGIN; END IF; END $$"
            ).format(name=sql.Literal(team.role), role=role)
        )
        await self._ensure_owned_schema(conn, team.schema, team.role)

    async def grant_team(self, conn: psycopg.AsyncConnection, team: TeamResources, member: UserResources):
        """Make alice a member of the team's role: she may ``SET ROLE`` to it and write as the team."""
        await conn.execute(
            sql.SQL("GRANT {team} TO {member}").format(
                team=sql.Identifier(team.role), member=sql.Identifier(member.role)
            )
        )

    async def team_member_usable(self, conn: psycopg.AsyncConnection, team: TeamResources,
                                 member: UserResources) -> bool:
        """Whether the team's schema exists, owned by its role, and alice's role is a member
        of it: what :meth:`ensure_team_store` and :meth:`grant_team` make, checked with
        index lookups and no write (every returning member's spawn)."""
        cur = await conn.execute(
            "SELECT EXISTS (SELECT 1 FROM pg_namespace n JOIN pg_roles t ON t.oid = n.nspowner"
            "               WHERE n.nspname = %(schema)s AND t.rolname = %(team)s)"
            " AND EXISTS (SELECT 1 FROM pg_auth_members m JOIN pg_roles t ON t.oid = m.roleid"
            "             JOIN pg_roles u ON u.oid = m.member WHERE t.rolname = %(team)s AND u.rolname = %(member)s)",
            {"schema": team.schema, "team": team.role, "member": member.role},
        )
        return bool((await cur.fetchone())[0])

    async def revoke_team(self, conn: psycopg.AsyncConnection, team: TeamResources, member: UserResources) -> list[str]:
        """Take alice out of the team's role, end her sessions, and sweep the team's store.

        A session that already switched to the team role would keep its privileges
        after REVOKE, so her open sessions are ended: revocation is immediate. While
        a member she could act as the team role; the sweep (:mod:`.pg_sweep`) takes
        back the grants, default privileges, ``SECURITY DEFINER`` functions and
        objects elsewhere that she could have made with it. Returns what it changed.
        """
        cur = await conn.execute(
            "SELECT 1 FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.roleid"
            " JOIN pg_roles u ON u.oid = m.member WHERE r.rolname = %s AND u.rolname = %s",
            (team.role, member.role),
        )
        if await cur.fetchone() is not None:
            await conn.execute(
                sql.SQL("REVOKE {team} FROM {member}").format(
                    team=sql.Identifier(team.role), member=sql.Identifier(member.role)
                )
            )
            await self.end_sessions(conn, member.role)
        return await pg_sweep.sweep(conn, team.role, team.schema, members_allowed=True)

    async def store_usable(self, conn: psycopg.AsyncConnection, resources: UserResources) -> bool:
        """Whether alice's role may log in and her schema exists: the check of every repeat spawn.

        Two index lookups. (:meth:`store_state` also counts the schema's tables, a scan
        of ``pg_class``, which grows with every store: ~33 ms at a few thousand.)
        """
        cur = await conn.execute(
            "SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = %(role)s AND rolcanlogin)"
            " AND EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = %(schema)s)",
            {"role": resources.role, "schema": resources.schema},
        )
        return bool((await cur.fetchone())[0])

    async def store_state(self, conn: psycopg.AsyncConnection, resources: UserResources) -> dict:
        """What exists of alice's store (for ``status``)."""
        cur = await conn.execute(
            """
            SELECT r.rolcanlogin,
                   n.oid IS NOT NULL,
                   (SELECT count(*) FROM pg_class c WHERE c.relnamespace = n.oid AND c.relkind = 'r'),
                   EXISTS (SELECT 1 FROM pg_class c WHERE c.relnamespace = n.oid AND c.relname = 'alembic_version'
                           AND c.relkind IN ('r', 'p'))
            FROM (SELECT 1) AS one
            LEFT JOIN pg_roles r ON r.rolname = %(role)s
            LEFT JOIN pg_namespace n ON n.nspname = %(schema)s
            """,
            {"role": resources.role, "schema": resources.schema},
        )
        can_login, has_schema, tables, has_mlflow = await cur.fetchone()
        return {
            "role": resources.role,
            "role_exists": can_login is not None,
            "can_login": bool(can_login),
            "schema": resources.schema,
            "schema_exists": bool(has_schema),
            "tables": int(tables or 0),
            "mlflow_tables": bool(has_mlflow),
        }


def make_setup_statements(registry_schema: str, users_group_role: str) -> list:
    """SQL run once per hub start: registry tables, the users' group role, a closed ``public``."""
    schema = sql.Identifier(registry_schema)
    return [
        sql.SQL(
            "DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = {name}) THEN"
            " CREATE ROLE {role} NOLOGIN; END IF; END $$"
        ).format(name=sql.Literal(users_group_role), role=sql.Identifier(users_group_role)),
        sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(schema),
        sql.SQL("REVOKE ALL ON SCHEMA {} FROM PUBLIC").format(schema),
        # Users may not create anything in, or read anything from, ``public``.
        sql.SQL("REVOKE ALL ON SCHEMA public FROM PUBLIC"),
        sql.SQL(
            """CREATE TABLE IF NOT EXISTS {}.accounts (
                username text NOT NULL,
                incarnation integer NOT NULL CHECK (incarnation > 0),
                state text NOT NULL CHECK (state IN ('active', 'deleted', 'purged')),
                generation integer NOT NULL DEFAULT 1,
                ready_generation integer,
                created_at timestamptz NOT NULL DEFAULT now(),
                updated_at timestamptz NOT NULL DEFAULT now(),
                deleted_at timestamptz,
                PRIMARY KEY (username, incarnation)
            )"""
        ).format(schema),
        sql.SQL(
            "CREATE UNIQUE INDEX IF NOT EXISTS accounts_one_active ON {}.accounts (username)"
            " WHERE state = 'active'"
        ).format(schema),
        sql.SQL(
            """CREATE TABLE IF NOT EXISTS {}.team_members (
                team text NOT NULL,
                username text NOT NULL,
                PRIMARY KEY (team, username)
            )"""
        ).format(schema),
        sql.SQL("CREATE INDEX IF NOT EXISTS team_members_username ON {}.team_members (username)").format(schema),
    ]


def make_user_uri(role: str, password: str, host: str, database: str, options: str = "") -> str:
    """``postgresql+psycopg://role:password@host/database`` (pure).

    Roles and derived passwords are letters, digits and ``_`` only, so they need no
    quoting; ``options`` is an already URL-encoded libpq ``options`` value.
    """
    uri = f"postgresql+psycopg://{role}:{password}@{host}/{database}"
    return f"{uri}?options={options}" if options else uri
