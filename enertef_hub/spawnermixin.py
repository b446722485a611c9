"""What both spawners add to JupyterHub's: provisioning before the server starts.

The mixin overrides ``start``, ``get_env`` and ``progress`` rather than using the
deployer's hooks (``pre_spawn_hook``, ``modify_pod_hook``...), which stay free for
operators. A subclass fills in one hook, :meth:`EnerTEFSpawnerMixin.prepare_home`,
for what differs between Kubernetes and one machine.
"""

from __future__ import annotations

import asyncio
import inspect
import time

from .approval import spawn_allowed
from .environment import without_admin_secrets
from .errors import EnerTEFError, ProvisioningError
from .events import log_event
from .naming import InvalidNameError, normalize_team_name
from .preparation import run_in_background
from .store_upgrades import StoreUpgradeError
from .workbench import ProvisionResult, Workbench


#: Seconds work that follows a spawn (a new store's tables) waits for other servers to finish starting.
QUIET_WAIT_LIMIT = 30.0


class EnerTEFSpawnerMixin:
    """Provision the user's MLflow store and storage, then start the server with their environment.

    Subclasses may override:

    - :meth:`prepare_home` — runs after provisioning, before the server starts
      (the local spawner creates the system user and seeds the home there; on
      Kubernetes the notebook image seeds the home itself).
    """

    # Per-spawn state; class defaults until the first start().
    _enertef_env: dict = {}  #: the user's server environment from provisioning
    _enertef_events: list = []  #: progress events of the current spawn, in order
    _enertef_wakeup: asyncio.Event | None = None  #: set when an event is added
    _enertef_done: bool = True  #: provisioning of the current spawn is over
    _enertef_alongside: list = []  #: work of the current spawn that runs while the server starts
    _enertef_finished: bool = True  #: that work is over too
    _enertef_launched: asyncio.Event | None = None  #: set once the server is launched: that work begins
    _enertef_launching: bool = False  #: the current spawn got past provisioning to the spawner's own start

    @property
    def workbench(self) -> Workbench:
        """The hub's provisioning core (one per process, configured from the hub's config)."""
        return Workbench.instance(config=self.config, log=self.log)

    def _enertef_progress(self, progress: int, message: str):
        self._enertef_events.append({"progress": progress, "message": message})
        if self._enertef_wakeup is not None:
            self._enertef_wakeup.set()

    def team_names(self) -> list[str]:
        """The user's JupyterHub groups that are valid team names (others are logged and ignored)."""
        teams = []
        for group in getattr(self.user, "groups", []) or []:
            try:
                teams.append(normalize_team_name(group.name))
            except InvalidNameError as exc:
                self.log.warning("Group %r is not used as a team: %s", group.name, exc)
        return sorted(set(teams))

    def _fail_with(self, exc: BaseException, message: str) -> BaseException:
        """Say why this spawn failed, where the user will look; returns ``exc`` to raise.

        The spawn page's progress log shows ``message`` while the page is open. A page
        opened (or reloaded) after the failure is JupyterHub's "Spawn failed" page, which
        shows only an exception's ``jupyterhub_message``: without it the user would see
        no reason at all. Our messages are written for users and hold no secret.
        """
        self._enertef_progress(100, message)
        exc.jupyterhub_message = message
        return exc

    def _not_a_hub_failure(self):
        """Keep a failed provisioning out of JupyterHub's count of consecutive failed spawns.

        JupyterHub exits after ``consecutive_failure_limit`` failed spawns in a row
        (z2jh sets 5) because failing spawns usually mean a broken hub. A database or
        storage outage is not one: a restarted hub fails the same way, and on
        Kubernetes the hub pod would crash-loop, for every user, until the service is
        back. JupyterHub (5.5 and 6.x) adds one to the count kept in the settings of
        the handler that started the spawn once the spawn fails: take it off here,
        before. (A successful spawn finishing in between resets the count to 0 and
        this failure then counts 1: never more than one.)
        """
        settings = getattr(getattr(self, "handler", None), "settings", None)
        if settings is not None:
            settings["failure_count"] = settings.get("failure_count", 0) - 1

    async def prepare_home(self, result: ProvisionResult):
        """Hook: make the user's home ready (after provisioning, before the server starts).

        Work the server does not need before it starts (e.g. merging notebook scripts)
        goes to :meth:`run_alongside_server`, so it stays off the spawn's critical path.
        """

    def run_alongside_server(self, coro):
        """Run *coro* while the server starts; ``start()`` returns once it is done too.

        It begins once the spawner has launched the server (its own ``start()``
        returned): starting a subprocess from the hub blocks the hub's event loop for
        ~20 ms (a fork of a large process), which must not delay the launch. Its
        progress messages still reach the spawn page (the spawn is not over before
        ``start()`` returns). It must report its own problems: an exception is logged
        and does not fail the spawn. If the server fails to start, it is cancelled.
        """
        task = asyncio.ensure_future(self._after_launch(coro))
        # Cancelled before it began (the server failed to start): it never runs.
        task.add_done_callback(lambda _: coro.close() if inspect.getcoroutinestate(coro) == inspect.CORO_CREATED
                               else None)
        self._enertef_alongside.append(task)

    async def _after_launch(self, coro):
        await self._enertef_launched.wait()
        return await coro

    async def start(self):
        self._enertef_events = []
        self._enertef_wakeup = asyncio.Event()
        self._enertef_done = False
        self._enertef_finished = False
        self._enertef_alongside = []
        self._enertef_launched = asyncio.Event()
        self._enertef_launching = False
        try:
            if not spawn_allowed(getattr(self, "authenticator", None), self.user.name):
                # A token minted while approved, or an admin, must not bring a withdrawn user back.
                message = ("Your account is not approved (or its approval was withdrawn), so your"
                           " server cannot start. Ask an admin to approve it.")
                raise self._fail_with(ProvisioningError(message), message)
            self._enertef_progress(10, "Preparing your MLflow store and object storage…")
            try:
                prepared = await self.workbench.prepare(
                    self.user.name, teams=self.team_names(), actor="spawner", tables=False,
                    then=self._provisioned, progress=lambda message: self._enertef_progress(35, message))
            except StoreUpgradeError as exc:
                self._not_a_hub_failure()
                raise self._fail_with(exc, f"Could not upgrade your MLflow store: {exc}")
            except EnerTEFError as exc:
                self._not_a_hub_failure()
                raise self._fail_with(exc, f"Could not prepare your workbench: {exc}")
            except InvalidNameError as exc:
                self._not_a_hub_failure()
                raise self._fail_with(ProvisioningError(str(exc)), str(exc)) from None
            result, stores = prepared.result, prepared.stores
            if prepared.changed:
                self._enertef_progress(38, "MLflow store upgraded")
            self._enertef_progress(40, "Starting your server…")
            self._enertef_launching = True
        except BaseException:
            for task in self._enertef_alongside:
                task.cancel()
            self._enertef_finished = True
            raise
        finally:
            # The spawner's own progress (e.g. the pod's events) is shown from here on.
            self._enertef_done = True
            self._enertef_wakeup.set()
        try:
            started = await super().start()
            self._enertef_launched.set()
        except BaseException:
            for task in self._enertef_alongside:
                task.cancel()
            self._enertef_spawn_over()
            raise
        for outcome in await asyncio.gather(*self._enertef_alongside, return_exceptions=True):
            if isinstance(outcome, Exception):
                self.log.error("Spawn step of %s failed alongside the server: %r", self.user.name, outcome)
        if any(store.revision is None for store in stores):
            # A new store (a user whose approval did not prepare it, a new team) gets its
            # tables once the server is up (and no other is starting), not while it
            # starts: on a small machine the ~0.2-0.4 s of PostgreSQL work would compete
            # with the server's own start.
            run_in_background(self.user.name, "mlflow-tables", self._make_mlflow_tables_once_up(result, stores))
        self._enertef_spawn_over()
        return started

    async def _provisioned(self, result: ProvisionResult):
        """The spawn's own step between provisioning and MLflow's (``Workbench.prepare``'s ``then``)."""
        self._enertef_env = result.environment
        self._enertef_progress(30, f"MLflow store {result.resources.schema} and bucket"
                                   f" {result.resources.bucket} ready")
        await self.prepare_home(result)

    async def _make_mlflow_tables_once_up(self, result: ProvisionResult, stores):
        """Give new stores MLflow's tables once this spawn's server is up (nothing if it never is).

        A store's MLflow lock (taken here and by the server's MLflow store plugin,
        :mod:`enertef_hub.notebook.mlflow_store`) orders this with the user's first
        MLflow call: whichever comes second finds the tables made. If the spawn fails,
        or the hub stops first, the next spawn makes them (or MLflow itself at first use).
        """
        if not await self._server_up():
            return
        await self._no_server_starting()
        started = time.perf_counter()
        try:
            made = await self.workbench.mlflow.ensure(result, stores)
        except EnerTEFError as exc:
            # Not fatal: MLflow creates its tables itself on first use, only slower.
            self.log.warning("MLflow tables of %s not prepared: %s", self.user.name, exc)
            return
        except Exception:  # noqa: BLE001 - background work: nobody else would hear of it
            self.log.exception("MLflow tables of %s not prepared", self.user.name)
            return
        if made:
            log_event(self.log, "store-tables", self.user.name, "spawner", stores=[store.schema for store in made],
                      seconds=round(time.perf_counter() - started, 4))

    async def _server_up(self, interval: float = 0.05) -> bool:
        """Wait until JupyterHub has found this spawn's server up; False if the spawn ended otherwise.

        JupyterHub keeps the spawn pending until the server answers (or the spawn
        failed and the server was stopped); only a flag on the hub's event loop is
        read, so waiting costs nothing.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.http_timeout + self.start_timeout
        while self.pending == "spawn" and loop.time() < deadline:
            await asyncio.sleep(interval)
        return bool(self.ready)

    async def _no_server_starting(self, interval: float = 0.1):
        """Wait until no server of this hub is starting, or ``QUIET_WAIT_LIMIT`` seconds at most.

        In a storm of first spawns (a class logging in at once) the tables of the
        first servers up would otherwise take CPU from the servers still starting.
        JupyterHub's own count of pending spawns is used (the one behind
        ``concurrent_spawn_limit``). Past the limit, the work goes ahead anyway: under a
        steady stream of spawns there is no quiet moment to wait for.
        """
        users = (getattr(self.user, "settings", None) or {}).get("users")
        if not hasattr(users, "count_active_users"):
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + QUIET_WAIT_LIMIT
        while users.count_active_users().get("spawn_pending", 0) and loop.time() < deadline:
            await asyncio.sleep(interval)

    def _enertef_spawn_over(self):
        """Our part of the spawn is over, including what ran alongside the server."""
        self._enertef_finished = True
        self._enertef_wakeup.set()

    def get_env(self):
        env = super().get_env()
        env.update(self._enertef_env)
        return without_admin_secrets(env)

    async def progress(self):
        # Provisioning's messages, then the spawner's own (KubeSpawner: the pod's events),
        # then the messages of work that ran alongside the server start.
        sent = 0
        for over in ("_enertef_done", None, "_enertef_finished"):
            if over is None:
                # Only a spawn that reached the spawner's own start has progress of its
                # own: one that failed before has no pod, and KubeSpawner's progress
                # would show the previous pod's events, or wait for a start that never
                # comes (and start its event watch in a stream JupyterHub cancels).
                if self._enertef_launching:
                    async for event in super().progress():
                        yield event
                continue
            while True:
                while sent < len(self._enertef_events):
                    yield self._enertef_events[sent]
                    sent += 1
                if self._enertef_wakeup is None or getattr(self, over):
                    break
                await self._enertef_wakeup.wait()
                self._enertef_wakeup.clear()
