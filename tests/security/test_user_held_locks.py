"""Issue 19, part 4: no lock a user can hold delays a revocation or the hub.

Any database role may take any advisory lock key, and a user's session may lock its
own tables and its own role's catalogue row (``ALTER ROLE ... PASSWORD`` in an open
transaction). Before the fix the hub serialised its work with advisory locks
(``enertef:user:NAME``, ``enertef:team:TEAM``, ``enertef:setup``) and altered the role
before ending its sessions, so a user holding one of these hung their own deletion,
suspension, rotation and team removal while their credentials kept working, and hung
``enertef-hub check`` and every new hub process.

Each test plays the user: a session logged in with the user's own credentials (the
team login for the team's store) takes one lock and keeps it, logging in again and
taking it again whenever the session is ended, as an attacker's loop would. A fresh
Workbench (what ``enertef-hub deprovision``/``check`` and a new hub process start
with) then does the action; it must finish within a few seconds and, for a
revocation, leave the login refused and the MinIO key dead.
"""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlsplit, urlunsplit

import psycopg
import pytest
from botocore.exceptions import ClientError
from psycopg import sql

from enertef_hub import reports
from enertef_hub.errors import ProvisioningError
from enertef_hub.workbench import Workbench
from tests.harness.names import unique_name
from tests.harness.postgres import connect_as, user_url
from tests.harness.s3 import s3_client

#: What "at once" means here; the hub's own bound on a lock wait is 10 s.
QUICK = 5.0
#: How long an action may run before the test fails instead of hanging.
GIVE_UP = 15.0


def libpq_target(tracking_uri: str) -> tuple[str, str]:
    """``(libpq URL, options)`` of an MLflow tracking URI (a team store's carries ``options``)."""
    parts = urlsplit(tracking_uri.replace("postgresql+psycopg://", "postgresql://"))
    options = parse_qs(parts.query).get("options", [""])[0]
    return urlunsplit(parts._replace(query="")), options


class HostileSession(threading.Thread):
    """A user's session that runs ``statements`` and keeps what they took.

    In an open transaction (``transaction=True``: idle in transaction) or, for
    session-level advisory locks, in autocommit. When the session is ended it logs in
    again at once and takes the lock again, until :meth:`stop`.
    """

    def __init__(self, url: str, options: str, statements: list, transaction: bool):
        super().__init__(daemon=True)
        self.url, self.options, self.statements, self.transaction = url, options, statements, transaction
        self.held = threading.Event()
        self._stopping = threading.Event()
        self.error: Exception | None = None

    def run(self):
        while not self._stopping.is_set():
            try:
                with psycopg.connect(self.url, options=self.options or None, autocommit=not self.transaction,
                                     connect_timeout=3) as conn:
                    for statement in self.statements:
                        conn.execute(statement)
                    self.held.set()
                    while not self._stopping.wait(0.05):
                        conn.execute("SELECT 1")  # notices at once when the session was ended
            except psycopg.Error as exc:
                self.error = exc
                self._stopping.wait(0.05)

    def stop(self):
        self._stopping.set()
        self.join(timeout=10)


@dataclass
class Victim:
    """A provisioned user who is a member of one team, with a table in each store."""

    name: str
    team: str
    environment: dict = field(repr=False)
    team_url: str = field(repr=False)  #: libpq URL of the user's login for the team's store
    team_options: str = ""  #: ``-c role=t_team -c search_path=t_team``
    schema: str = ""
    password: str = field(default="", repr=False)
    team_bucket: str = ""


@pytest.fixture
async def victim(workbench):
    name, team = unique_name("mallory"), unique_name("team")
    result = await workbench.provision(name, teams=[team])
    team_store = next(s for s in workbench.mlflow.of(result) if s.kind == "team")
    team_url, team_options = libpq_target(team_store.environment["MLFLOW_TRACKING_URI"])
    v = Victim(name, team, result.environment, team_url, team_options, result.resources.schema,
               urlsplit(user_url(result.environment)).password, f"team-{team}")
    with connect_as(v.environment) as conn:
        conn.execute("CREATE TABLE runs (v text)")
    with psycopg.connect(v.team_url, options=v.team_options, autocommit=True, connect_timeout=5) as conn:
        conn.execute("CREATE TABLE runs (v text)")
    yield v
    await workbench.deprovision(name, purge=True)


def advisory(key: str) -> str:
    return f"SELECT pg_advisory_lock(hashtextextended('{key}', 0))"


#: The locks a user can take: ``(statements, in a transaction)`` from the user's session
#: in their own store (``team=False``) or in the team's (``team=True``, for team removal).
def user_locks(kind: str, v: Victim, team: bool):
    schema = f"t_{v.team}" if team else v.schema
    return {
        # The advisory keys the hub used before issue 19 (any role may take any key).
        "user advisory key": ([advisory(f"enertef:user:{v.name}")], False),
        "team advisory key": ([advisory(f"enertef:team:{v.team}")], False),
        "set-up advisory key": ([advisory("enertef:setup")], False),
        # A table of their store, locked and left idle in transaction.
        "store table": ([sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(
            sql.Identifier(schema, "runs"))], True),
        # Their login's catalogue row: a role may change its own password; until the
        # transaction ends, ALTER ROLE of that role waits.
        "own role row": (["SET ROLE NONE", sql.SQL("ALTER ROLE SESSION_USER PASSWORD {}").format(
            sql.Literal(v.password))], True),
    }[kind]


LOCKS = ["user advisory key", "team advisory key", "set-up advisory key", "store table", "own role row"]


def login_refused(url: str, options: str = "") -> bool:
    try:
        psycopg.connect(url, options=options or None, autocommit=True, connect_timeout=5).close()
    except psycopg.Error:
        return True
    return False


def key_dead(environment: dict, bucket: str) -> bool:
    try:
        s3_client(environment).list_objects_v2(Bucket=bucket)
    except ClientError:
        return True
    return False


async def timed(what: str, lock: str, coroutine):
    """Run ``coroutine``; its seconds. Fails (instead of hanging) past GIVE_UP."""
    started = time.monotonic()
    try:
        result = await asyncio.wait_for(coroutine, GIVE_UP)
    except TimeoutError:
        pytest.fail(f"{what} was still waiting after {GIVE_UP} s while the user held the {lock}")
    return time.monotonic() - started, result


async def hold_then(victim: Victim, lock: str, team: bool, action):
    """While the victim holds ``lock``, run ``action(fresh Workbench)``; its seconds and result."""
    statements, transaction = user_locks(lock, victim, team)
    url, options = (victim.team_url, victim.team_options) if team else (user_url(victim.environment), "")
    hostile = HostileSession(url, options, statements, transaction)
    hostile.start()
    try:
        assert hostile.held.wait(10), f"the user could not take the {lock}: {hostile.error}"
        wb = Workbench()  # as a new `enertef-hub` process or a new hub would start
        try:
            return await timed(action.__name__, lock, action(wb))
        finally:
            await asyncio.wait_for(wb.close(), 10)
    finally:
        hostile.stop()


@pytest.mark.parametrize("lock", LOCKS)
@pytest.mark.parametrize("purge", [False, True], ids=["deprovision", "deprovision --purge"])
async def test_deletion_is_not_delayed_by_a_users_lock(victim, lock, purge):
    async def deprovision(wb):
        return await wb.deprovision(victim.name, purge=purge)

    seconds, done = await hold_then(victim, lock, False, deprovision)
    assert seconds < QUICK, f"deletion took {seconds:.1f} s"
    assert done["revoked"] == [1]
    assert login_refused(user_url(victim.environment))
    assert login_refused(victim.team_url, victim.team_options)
    assert key_dead(victim.environment, victim.environment["ENERTEF_BUCKET"])


@pytest.mark.parametrize("lock", LOCKS)
async def test_withdrawn_approval_is_not_delayed_by_a_users_lock(victim, lock):
    async def suspend(wb):
        return await wb.suspend(victim.name)

    seconds, done = await hold_then(victim, lock, False, suspend)
    assert seconds < QUICK, f"suspension took {seconds:.1f} s"
    assert done["suspended"] == [1]
    assert login_refused(user_url(victim.environment))
    assert login_refused(victim.team_url, victim.team_options)
    assert key_dead(victim.environment, victim.environment["ENERTEF_BUCKET"])


@pytest.mark.parametrize("lock", LOCKS)
async def test_rotation_is_not_delayed_by_a_users_lock(victim, lock):
    async def rotate(wb):
        return await wb.rotate(victim.name)

    seconds, result = await hold_then(victim, lock, False, rotate)
    assert seconds < QUICK, f"rotation took {seconds:.1f} s"
    assert login_refused(user_url(victim.environment))  # the old password
    assert key_dead(victim.environment, victim.environment["ENERTEF_BUCKET"])  # the old key
    connect_as(result.environment).close()  # the new credentials work
    assert not key_dead(result.environment, result.environment["ENERTEF_BUCKET"])


@pytest.mark.parametrize("lock", LOCKS)
async def test_team_removal_is_not_delayed_by_a_members_lock(victim, lock):
    async def remove_from_team(wb):
        return await wb.teams.sync_user(victim.name, [], actor="test")

    seconds, teams = await hold_then(victim, lock, True, remove_from_team)
    assert seconds < QUICK, f"team removal took {seconds:.1f} s"
    assert teams == []
    assert login_refused(victim.team_url, victim.team_options)
    assert key_dead(victim.environment, victim.team_bucket)
    connect_as(victim.environment).close()  # their own store stays theirs


@pytest.mark.parametrize("lock", LOCKS)
async def test_check_is_not_delayed_by_a_users_lock(victim, lock):
    async def check(wb):
        return await reports.check(wb)

    seconds, rows = await hold_then(victim, lock, False, check)
    assert seconds < QUICK, f"`enertef-hub check` took {seconds:.1f} s"
    assert dict((what, ok) for what, ok, _detail in rows)["postgresql"] is True


@pytest.mark.parametrize("lock", LOCKS)
async def test_a_new_hub_process_is_not_delayed_by_a_users_lock(victim, lock):
    async def first_connection(wb):
        async with wb.postgres.connection() as conn:  # the set-up runs here
            await conn.execute("SELECT 1")

    seconds, _ = await hold_then(victim, lock, False, first_connection)
    assert seconds < QUICK, f"a new Workbench's first connection took {seconds:.1f} s"


# -- the hub's own waits: bounded, and said ---------------------------------------------------


def hold_hub_lock(admin_conn, kind: str, name: str):
    """``admin_conn`` takes the hub's lock on ``(kind, name)`` as another hub process would
    (inside ``with admin_conn.transaction():``)."""
    admin_conn.execute("INSERT INTO enertef.locks (kind, name) VALUES (%s, %s)"
                       " ON CONFLICT (kind, name) DO UPDATE SET kind = EXCLUDED.kind", (kind, name))


async def test_a_hub_lock_wait_is_bounded_and_said(admin_conn):
    name = unique_name("alice")
    wb = Workbench()
    wb.postgres.lock_timeout = 1.0
    try:
        with admin_conn.transaction():
            hold_hub_lock(admin_conn, "user", name)
            started = time.monotonic()
            with pytest.raises(ProvisioningError, match=r"over 1 s \(PostgresProvisioner.lock_timeout\)"):
                await asyncio.wait_for(wb.provision(name), GIVE_UP)
            assert time.monotonic() - started < QUICK
        assert (await wb.status(name))["state"] == "unknown"  # rolled back: nothing half-made
    finally:
        await wb.close()


@pytest.mark.parametrize("verb", ["deprovision", "suspend", "rotate"])
async def test_revocation_past_the_bound_stays_revoked_and_says_what_to_run(victim, admin_conn, verb):
    wb = Workbench()
    wb.postgres.lock_timeout = 1.0
    try:
        with admin_conn.transaction():
            hold_hub_lock(admin_conn, "user", victim.name)  # another hub operation on the user, taking long
            started = time.monotonic()
            with pytest.raises(ProvisioningError, match=rf"access is revoked .*Run `enertef-hub {verb} {victim.name}"):
                await asyncio.wait_for(getattr(wb, verb)(victim.name), GIVE_UP)
            assert time.monotonic() - started < QUICK
            # The access itself went first, and stays gone.
            assert login_refused(user_url(victim.environment))
            assert login_refused(victim.team_url, victim.team_options)
            assert key_dead(victim.environment, victim.environment["ENERTEF_BUCKET"])
        if verb == "rotate":
            # The new generation was recorded with the revocation: a spawn now makes new
            # credentials, never the old ones again.
            again = (await wb.provision(victim.name)).environment
            assert again["AWS_SECRET_ACCESS_KEY"] != victim.environment["AWS_SECRET_ACCESS_KEY"]
            assert login_refused(user_url(victim.environment))
        # Run again, as the message says: it finishes.
        done = await asyncio.wait_for(getattr(wb, verb)(victim.name), GIVE_UP)
        if verb == "deprovision":
            assert done["revoked"] == [1]
        elif verb == "suspend":
            assert done["suspended"] == [1]
        assert login_refused(user_url(victim.environment))
    finally:
        await wb.close()


async def test_team_sweep_past_the_bound_leaves_access_revoked_and_is_retried(workbench):
    """A teammate holds a lock the sweep needs (on a table alice made and opened to the
    team): her removal still ends her team access at once; the sweep is done by the next sync."""
    team = unique_name("team")
    alice = await workbench.provision(unique_name("alice"), teams=[team])
    bob = await workbench.provision(unique_name("bob"), teams=[team])

    def team_target(result):
        store = next(s for s in workbench.mlflow.of(result) if s.kind == "team")
        return libpq_target(store.environment["MLFLOW_TRACKING_URI"])

    (a_url, a_options), (b_url, b_options) = team_target(alice), team_target(bob)
    table = sql.Identifier(f"t_{team}", "alices")
    with psycopg.connect(a_url, options=a_options, autocommit=True) as conn:
        conn.execute("SET ROLE NONE")  # made as her own team login: the sweep must re-own it
        conn.execute(sql.SQL("CREATE TABLE {} (v text)").format(table))
        conn.execute(sql.SQL("GRANT ALL ON {} TO {}").format(table, sql.Identifier(f"t_{team}")))
    teammate = psycopg.connect(b_url, options=b_options, connect_timeout=5)
    teammate.execute(sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(table))  # and idle in transaction
    wb = Workbench()
    wb.postgres.lock_timeout = 1.0
    try:
        started = time.monotonic()
        assert await asyncio.wait_for(wb.teams.sync_user(alice.resources.username, [], "test"), GIVE_UP) == []
        assert time.monotonic() - started < QUICK
        assert login_refused(a_url, a_options)
        assert key_dead(alice.environment, f"team-{team}")
        async with wb.postgres.connection() as conn:  # still recorded: the next sync sweeps
            assert team in await wb.teams_of(alice.resources.username, conn)
        teammate.rollback()
        assert await wb.teams.sync_user(alice.resources.username, [], "test") == []
        async with wb.postgres.connection() as conn:
            assert team not in await wb.teams_of(alice.resources.username, conn)
        with psycopg.connect(b_url, options=b_options, autocommit=True) as conn:  # re-owned by the team
            assert conn.execute("SELECT tableowner FROM pg_tables WHERE schemaname = %s AND tablename = 'alices'",
                                (f"t_{team}",)).fetchone() == (f"t_{team}",)
    finally:
        teammate.close()
        await wb.close()
        for who in (alice, bob):
            await workbench.deprovision(who.resources.username, purge=True)
