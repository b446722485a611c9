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
import time
from contextlib import asynccontextmanager
from urllib.parse import parse_qsl, unquote, urlsplit

import psycopg
from psycopg import sql
from psycopg_pool import AsyncConnectionPool, PoolTimeout
from traitlets import Float, Integer, Unicode, default
from traitlets.config import LoggingConfigurable

from ..accounts import hub_lock
from ..errors import ConfigurationError, ProvisioningError, ServiceUnavailableError
from ..naming import (
    TeamResources,
    UserResources,
    is_user_role,
    make_team_login_pattern,
    make_team_login_role,
    make_team_members_pattern,
)
from . import pg_membership, pg_sweep


#: What two hub processes setting up a new database at the same moment can get.
_SETUP_RACES = (psycopg.errors.UniqueViolation, psycopg.errors.DuplicateObject,
                psycopg.errors.DuplicateSchema, psycopg.errors.DuplicateTable)


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

    lock_timeout = Float(
        10.0,
        config=True,
        help="""Most seconds any statement of the hub waits for a lock in PostgreSQL
        (``lock_timeout`` of every hub connection): another hub process's lock on the
        same user or team, or a lock a user's session holds on their store. Past it the
        hub gives up with a message that says so, instead of keeping a connection (and
        the admin, or the user's spawn) waiting for as long as the holder likes.
        Revocations do not depend on it: they cut the login, the sessions and the
        storage keys first, in a step that waits for nothing a user can hold.""",
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
                configure=self._configure_connection,
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

    async def _configure_connection(self, conn: psycopg.AsyncConnection):
        # Every wait for a lock has a bound; a block that needs another bound sets its own
        # (``set_config('lock_timeout', ..., true)``, e.g. the replay's mlflow_lock_wait).
        await conn.execute("SELECT set_config('lock_timeout', %s, false)", (self._lock_timeout_ms(),))

    def _lock_timeout_ms(self, most: float | None = None) -> str:
        seconds = self.lock_timeout if most is None else min(self.lock_timeout, most)
        return f"{max(1, round(seconds * 1000))}ms"

    def lock_wait_exceeded(self) -> ProvisioningError:
        """The error of a hub step that waited for a lock longer than ``lock_timeout``."""
        return ProvisioningError(
            f"A database lock this step needs was held for over {self.lock_timeout:g} s"
            " (PostgresProvisioner.lock_timeout), by another hub operation on the same user or"
            " team, or by a session holding a lock on a store; the step was rolled back."
            " Try again in a minute; if it keeps happening, an admin can look for the"
            " holder in pg_stat_activity and pg_locks of the MLflow database."
        )

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
            except psycopg.errors.LockNotAvailable:
                raise self.lock_wait_exceeded() from None
            except psycopg.errors.TransactionRollback as exc:
                # A deadlock or serialization failure with a concurrent change: the
                # database is there, and this attempt was rolled back whole.
                raise ProvisioningError(
                    f"The MLflow database rolled this change back because a concurrent change collided"
                    f" with it ({type(exc).__name__}). Nothing was changed; please try again.") from None
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
        for attempt in range(3):
            try:
                return await self._setup_once(conn)
            except _SETUP_RACES:
                # On a new database two hub processes made the registry's schema or lock
                # table at the same moment, before either held the lock: it is there now.
                if attempt == 2:
                    raise

    async def _setup_once(self, conn: psycopg.AsyncConnection):
        if self._setup_done:
            return
        async with self._setup_lock:
            if self._setup_done:
                return
            async with conn.transaction():
                # Serialises set-up between several hub processes and the CLI, with a lock
                # only the hub can take (an advisory lock, which any role may take, let a
                # user hang every new hub process and `enertef-hub check`).
                for statement in make_lock_table_statements(self.registry_schema):
                    await conn.execute(statement)
                await hub_lock(conn, self.registry_schema, "setup", "")
                cur = await conn.execute("SELECT rolsuper, current_setting('server_version_num')::int"
                                         " FROM pg_roles WHERE rolname = current_user")
                is_superuser, version = await cur.fetchone()
                self._is_superuser = bool(is_superuser)
                bounded, why = judge_server_release(version)
                if not bounded:
                    self.log.warning("%s", why)
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

    @asynccontextmanager
    async def store_connection(self, tracking_uri: str):
        """A connection logged in as a store's own role: the login and options of
        ``tracking_uri`` (a user's, or a team member's acting as the team), at the
        host and database of ``admin_url``.

        For work in a store that must run with the store's rights and nothing more (the
        replay of MLflow's tables): whatever the store's owner made can then act only
        as that role. Raises ServiceUnavailableError when PostgreSQL cannot be reached.
        """
        self._check_config()
        store = urlsplit(tracking_uri)
        options = dict(parse_qsl(store.query)).get("options")
        admin = urlsplit(self.admin_url)
        try:
            conn = await psycopg.AsyncConnection.connect(
                host=admin.hostname or "localhost", port=admin.port or 5432, dbname=admin.path.lstrip("/"),
                user=unquote(store.username or ""), password=unquote(store.password or ""),
                options=options, autocommit=True, connect_timeout=max(1, int(self.connect_timeout)),
                application_name="enertef-hub")
        except psycopg.OperationalError as exc:
            raise self._unreachable(exc) from None
        async with conn:
            yield conn

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
        # Sessions first: one that changed its own password in an open transaction
        # holds the role's catalogue row, and ALTER ROLE would wait for it.
        await self.end_sessions(conn, resources.role)
        # Her team logins share her password: they stop with her own login.
        for role in [resources.role, *await self.team_logins_of(conn, resources.role)]:
            await conn.execute(sql.SQL("ALTER ROLE {role} NOLOGIN PASSWORD NULL").format(role=sql.Identifier(role)))
        return await pg_sweep.sweep(conn, resources.role, resources.schema, members_allowed=False)

    async def cut_access(self, conn: psycopg.AsyncConnection, resources: UserResources) -> int:
        """A revocation's first step: alice and her team logins can no longer log in, and
        their sessions are ended, committed at once (see :meth:`cut_logins`)."""
        return await self.cut_logins(conn, [resources.role, *await self.team_logins_of(conn, resources.role)])

    async def cut_logins(self, conn: psycopg.AsyncConnection, roles: list[str]) -> int:
        """NOLOGIN, no password and no open session for ``roles``, committed now, before
        anything else of a revocation. Call outside a transaction. Returns how many
        sessions were ended.

        Waits for nothing a user can hold: no hub lock is taken, and the sessions are
        ended before ``ALTER ROLE``, since a session that changed its own password in an
        open transaction holds the role's catalogue row. A session opened in between
        (possible until the NOLOGIN is committed) could take that row again: each
        attempt waits at most a second, and is repeated for at most
        ``lock_timeout``. Sessions that logged in before the commit are ended after it.
        """
        cur = await conn.execute("SELECT rolname FROM pg_roles WHERE rolname = ANY(%s) ORDER BY 1",
                                 ([r for r in roles if r],))
        existing = [row[0] for row in await cur.fetchall()]
        if not existing:
            return 0
        deadline = time.monotonic() + self.lock_timeout
        ended = 0
        while True:
            try:
                async with conn.transaction():
                    await conn.execute("SELECT set_config('lock_timeout', %s, true)", (self._lock_timeout_ms(1.0),))
                    ended += await self._end_sessions_of(conn, existing)
                    for role in existing:
                        await conn.execute(
                            sql.SQL("ALTER ROLE {} NOLOGIN PASSWORD NULL").format(sql.Identifier(role)))
                break
            except (psycopg.errors.LockNotAvailable, psycopg.errors.InternalError_):
                # InternalError_: "tuple concurrently updated", a hub provisioning changed
                # the role meanwhile; the next attempt sees its change.
                if time.monotonic() >= deadline:
                    raise
        return ended + await self._end_sessions_of(conn, existing)

    async def _end_sessions_of(self, conn: psycopg.AsyncConnection, roles: list[str]) -> int:
        async with self.member_of(conn, *roles):
            return sum([await pg_sweep.terminate_sessions(conn, role) for role in roles])

    async def end_sessions(self, conn: psycopg.AsyncConnection, role: str) -> int:
        """End every open session of ``role`` (rotation: the old password's sessions go too);
        for a user's role also those of their team logins, which share its password.

        pg_terminate_backend needs membership in the sessions' role.
        """
        roles = [role, *(await self.team_logins_of(conn, role) if is_user_role(role) else [])]
        return await self._end_sessions_of(conn, roles)

    async def set_team_logins_password(self, conn: psycopg.AsyncConnection, resources: UserResources,
                                       password: str):
        """Give alice's team logins that may log in her (new) password (after a rotation)."""
        cur = await conn.execute("SELECT rolname FROM pg_roles WHERE rolname ~ %s AND rolcanlogin",
                                 (make_team_login_pattern(resources.role),))
        for (role,) in await cur.fetchall():
            await conn.execute(sql.SQL("ALTER ROLE {} PASSWORD {}").format(sql.Identifier(role), sql.Literal(password)))

    async def audit_candidates(self, conn: psycopg.AsyncConnection) -> set[str]:
        """Schemas and roles in which a sweep may find something (one catalogue pass, for ``check``)."""
        return await pg_sweep.flagged_names(conn)

    async def audit_user(self, conn: psycopg.AsyncConnection, resources: UserResources) -> list[str]:
        """What a sweep of alice's store would change now (``enertef-hub check``)."""
        return [a.description for a in await pg_sweep.plan_sweep(
            conn, resources.role, resources.schema, members_allowed=False)]

    async def audit_team(self, conn: psycopg.AsyncConnection, team: TeamResources) -> list[str]:
        """What a sweep of a team's store would change now (``enertef-hub check``)."""
        return [a.description for a in await pg_sweep.plan_sweep(
            conn, team.role, team.schema, members_allowed=make_team_members_pattern(team))]

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

    async def grant_team(self, conn: psycopg.AsyncConnection, team: TeamResources, member: UserResources,
                         password: str):
        """Give alice her login role for the team's store (``m_team1_alice``), a member of the
        team role and of nothing else; her own role is never a member of the team role.

        Code that another member left in the team's schema (a trigger, a rule, a policy)
        runs in alice's session as the team; if it switches back to the session's login
        (``SET ROLE NONE``) it is ``m_team1_alice``, which holds only what the team
        holds: never alice's own store (issue 19). ``password``: alice's own.
        """
        login = make_team_login_role(team.team, member)
        ident = sql.Identifier(login)
        cur = await conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (login,))
        # (PostgreSQL 16: only a superuser may name SUPERUSER in ALTER ROLE, even to deny it.)
        attributes = "" if await cur.fetchone() else (
            " NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS INHERIT")
        await conn.execute(
            sql.SQL("{verb} ROLE {role} LOGIN PASSWORD {pw}{attributes} CONNECTION LIMIT {limit}").format(
                verb=sql.SQL("ALTER" if not attributes else "CREATE"), role=ident, pw=sql.Literal(password),
                attributes=sql.SQL(attributes), limit=sql.Literal(self.role_connection_limit)))
        await conn.execute(sql.SQL("GRANT {group}, {team} TO {login}").format(
            group=sql.Identifier(self.users_group_role), team=sql.Identifier(team.role), login=ident))
        await conn.execute(sql.SQL("ALTER ROLE {login} SET search_path = {schema}").format(
            login=ident, schema=sql.Literal(team.schema)))
        await self._end_own_role_membership(conn, team, member)

    async def _end_own_role_membership(self, conn: psycopg.AsyncConnection, team: TeamResources,
                                       member: UserResources) -> int:
        """Releases before issue 19 made alice's own role a member of the team role: revoke
        it, and end her sessions (one acting as the team keeps its rights). Returns how many
        sessions were ended; none if there was no such membership. In or outside a transaction."""
        cur = await conn.execute(
            "SELECT 1 FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.roleid"
            " JOIN pg_roles u ON u.oid = m.member WHERE r.rolname = %s AND u.rolname = %s",
            (team.role, member.role))
        if await cur.fetchone() is None:
            return 0
        async with conn.transaction():
            await conn.execute(sql.SQL("REVOKE {team} FROM {member}").format(
                team=sql.Identifier(team.role), member=sql.Identifier(member.role)))
        return await self.end_sessions(conn, member.role)

    async def team_member_usable(self, conn: psycopg.AsyncConnection, team: TeamResources,
                                 member: UserResources) -> bool:
        """Whether the team's schema exists, owned by its role, and alice's team login may log
        in, is a member of the team role, and her own role is not: what
        :meth:`ensure_team_store` and :meth:`grant_team` make, checked with index lookups
        and no write (every returning member's spawn)."""
        cur = await conn.execute(
            "SELECT EXISTS (SELECT 1 FROM pg_namespace n JOIN pg_roles t ON t.oid = n.nspowner"
            "               WHERE n.nspname = %(schema)s AND t.rolname = %(team)s)"
            " AND EXISTS (SELECT 1 FROM pg_auth_members m JOIN pg_roles t ON t.oid = m.roleid"
            "             JOIN pg_roles u ON u.oid = m.member"
            "             WHERE t.rolname = %(team)s AND u.rolname = %(login)s AND u.rolcanlogin)"
            " AND NOT EXISTS (SELECT 1 FROM pg_auth_members m JOIN pg_roles t ON t.oid = m.roleid"
            "                 JOIN pg_roles u ON u.oid = m.member WHERE t.rolname = %(team)s AND u.rolname = %(member)s)",
            {"schema": team.schema, "team": team.role, "member": member.role,
             "login": make_team_login_role(team.team, member)},
        )
        return bool((await cur.fetchone())[0])

    async def cut_team_access(self, conn: psycopg.AsyncConnection, team: TeamResources, member: UserResources) -> int:
        """A team removal's first step: alice's team login can no longer log in and its
        sessions are ended, committed at once (:meth:`cut_logins`); :meth:`revoke_team`
        does the rest. Call outside a transaction."""
        ended = await self.cut_logins(conn, [make_team_login_role(team.team, member)])
        return ended + await self._end_own_role_membership(conn, team, member)

    async def revoke_team(self, conn: psycopg.AsyncConnection, team: TeamResources, member: UserResources) -> list[str]:
        """Take alice out of the team: her team login can no longer log in, its sessions end,
        and it is dropped; then the team's store is swept.

        What her login owns (objects made without acting as the team) goes to the team
        role first. While a member she could act as the team; the sweep
        (:mod:`.pg_sweep`) takes back the grants, default privileges, ``SECURITY
        DEFINER`` functions, triggers, rules, policies and objects elsewhere that she
        could have made with it, and what the team was granted outside its store.
        Returns what it changed.
        """
        done = []
        login = make_team_login_role(team.team, member)
        cur = await conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (login,))
        if await cur.fetchone() is not None:
            ident = sql.Identifier(login)
            await conn.execute(sql.SQL("ALTER ROLE {} NOLOGIN PASSWORD NULL").format(ident))
            await self.end_sessions(conn, login)
            async with self.member_of(conn, login, team.role):
                await conn.execute(sql.SQL("REASSIGN OWNED BY {} TO {}").format(ident, sql.Identifier(team.role)))
                await conn.execute(sql.SQL("DROP OWNED BY {}").format(ident))
            await conn.execute(sql.SQL("DROP ROLE {}").format(ident))
            done.append(f"team login {login} dropped")
        await self._end_own_role_membership(conn, team, member)
        return done + await pg_sweep.sweep(conn, team.role, team.schema,
                                           members_allowed=make_team_members_pattern(team))

    async def team_logins_of(self, conn: psycopg.AsyncConnection, member_role: str) -> list[str]:
        """The team login roles (``m_<team>_alice``) of the user whose role is ``member_role``
        (``u_alice``), from the catalogue."""
        cur = await conn.execute("SELECT rolname FROM pg_roles WHERE rolname ~ %s ORDER BY 1",
                                 (make_team_login_pattern(member_role),))
        return [row[0] for row in await cur.fetchall()]

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


def make_lock_table_statements(registry_schema: str) -> list:
    """The registry's schema and its table of the hub's locks (``accounts.hub_lock``), idempotent.

    A row per user, team and the set-up; a transaction holds one by locking its row.
    The schema is closed to every user role (``make_setup_statements``).
    """
    schema = sql.Identifier(registry_schema)
    return [
        sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(schema),
        sql.SQL(
            """CREATE TABLE IF NOT EXISTS {}.locks (
                kind text NOT NULL,
                name text NOT NULL,
                PRIMARY KEY (kind, name)
            )"""
        ).format(schema),
    ]


#: Oldest PostgreSQL whose CREATEROLE is bounded (``server_version_num``).
OLDEST_BOUNDED_RELEASE = 160000


def judge_server_release(version_num: int) -> tuple[bool, str]:
    """Whether a PostgreSQL release (``server_version_num``) is supported, and why (pure).

    Before 16, a CREATEROLE role may grant any non-superuser role, predefined ones
    included: the hub's admin role could give itself ``pg_execute_server_program`` and
    run programs as the database server's OS user. From 16 on, it may grant only the
    roles it holds with ADMIN OPTION (those it created).
    """
    shown = f"{version_num // 10000}.{version_num % 10000}"
    if version_num >= OLDEST_BOUNDED_RELEASE:
        return True, f"{shown} (CREATEROLE is bounded: the admin role can grant only the roles it made)"
    return False, (f"PostgreSQL {shown} is not supported: before 16 the hub's CREATEROLE admin role can grant"
                   " itself any predefined role (pg_execute_server_program, pg_read_server_files, ...),"
                   " which makes it a superuser in all but name. Upgrade PostgreSQL to 16 or newer.")


def make_setup_statements(registry_schema: str, users_group_role: str) -> list:
    """SQL run once per hub start: registry tables, the users' group role, a closed ``public``."""
    schema = sql.Identifier(registry_schema)
    return [
        sql.SQL(
            "DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = {name}) THEN"
            " CREATE ROLE {role} NOLOGIN; END IF; END $$"
        ).format(name=sql.Literal(users_group_role), role=sql.Identifier(users_group_role)),
        *make_lock_table_statements(registry_schema),
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
        # Set when an admin restores a kept incarnation for its person to sign up again
        # with; the sign-up consumes it (see Workbench.end_leftover_account).
        sql.SQL("ALTER TABLE {}.accounts ADD COLUMN IF NOT EXISTS restored_for_signup boolean NOT NULL"
                " DEFAULT false").format(schema),
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
