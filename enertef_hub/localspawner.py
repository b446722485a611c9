"""EnerTEFLocalSpawner: the workbench on one machine, without Kubernetes.

When the hub runs as root, each hub user's server runs as a system account of its
own (``jupyter-alice``, created on first spawn with a private home), as JupyterHub's
LocalProcessSpawner and The Littlest JupyterHub do: one user cannot read another's
home, processes or environment. The ``jupyter-`` prefix means a hub user can never
be mapped onto an existing account such as ``root`` or ``postgres``.

``run_as_hub_user`` runs every server as the hub's own OS user instead. That gives
no isolation between users and exists only for tests and development.

Each server runs within memory, CPU and process limits enforced by the kernel
(:mod:`enertef_hub.cgroups`; the rules in :mod:`enertef_hub.resource_limits`):
JupyterHub's ``mem_limit`` and ``cpu_limit``, our ``pids_limit``, per user or group
through ``limit_overrides``.
"""

from __future__ import annotations

import asyncio
import json
import os
import pwd
import re
import shutil
import stat
import sys
import time
from pathlib import Path

from jupyterhub.spawner import LocalProcessSpawner, set_user_setuid
from jupyterhub.traitlets import ByteSpecification
from tornado import web
from traitlets import Bool, Dict, Integer, TraitError, Unicode, default, validate

from . import cgroups, resource_limits, sysaccounts
from .errors import ConfigurationError, ProvisioningError
from .events import as_data
from .naming import make_system_username
from .provisioners.seeding import SCRIPTS_DIRNAME, make_source_digest
from .spawnermixin import EnerTEFSpawnerMixin
from .workbench import ProvisionResult


#: Niceness of the notebook-scripts merge, which runs alongside the user's server start.
SEEDING_NICENESS = 10


def default_notebook_scripts() -> str:
    """The ``notebook-scripts/`` folder shipped beside the package (source checkouts)."""
    candidate = Path(__file__).resolve().parent.parent / "notebook-scripts"
    return str(candidate) if candidate.is_dir() else ""


def make_home_dir(home_root: str, username: str, run_as_hub_user: bool = False) -> str:
    """A hub user's home on this machine: ``{home_root}/jupyter-alice`` (pure).

    ``{home_root}/alice`` when every server runs as the hub's own user (development).
    """
    return os.path.join(home_root, username if run_as_hub_user else make_system_username(username))


class LaunchWithinLimits(LocalProcessSpawner):
    """LocalProcessSpawner whose launch first sets up the server's resource limits.

    It sits between provisioning (:class:`EnerTEFSpawnerMixin`'s ``start``) and
    JupyterHub's own ``start``, so limits are set up only for a spawn that got that far,
    right before the process starts. :meth:`enter_limits` returns words to put before
    the server's command (``systemd-run --scope ...``), or none.
    """

    async def enter_limits(self) -> list[str]:
        return []

    async def start(self):
        prefix = await self.enter_limits()
        if not prefix:
            return await super().start()
        # JupyterHub's start reads self.cmd once, before its first await.
        cmd = self.cmd
        self.cmd = [*prefix, *cmd]
        try:
            return await super().start()
        finally:
            self.cmd = cmd


class EnerTEFLocalSpawner(EnerTEFSpawnerMixin, LaunchWithinLimits):
    """Local-process spawner that provisions each user's MLflow store, bucket and home."""

    home_root = Unicode(
        "/home",
        config=True,
        help="""Directory under which users' homes are created: ``{home_root}/jupyter-alice``
        for system users, ``{home_root}/alice`` with ``run_as_hub_user``.""",
    )

    run_as_hub_user = Bool(
        False,
        config=True,
        help="""Run every user's server as the hub's own OS user, with homes under
        ``home_root``. No isolation between users: only for tests and development.
        When False (the default) the hub must run as root and each user gets a
        system account ``jupyter-<name>``.""",
    )

    notebook_scripts_dir = Unicode(
        config=True,
        help="""Folder whose files are merged into each user's ``~/notebook-scripts`` at
        every spawn (user edits are kept). Default: ``notebook-scripts/`` of the
        source checkout; empty disables seeding.""",
    )

    @default("notebook_scripts_dir")
    def _notebook_scripts_dir_default(self):
        return os.environ.get("ENERTEF_NOTEBOOK_SCRIPTS", "") or default_notebook_scripts()

    # -- resource limits -------------------------------------------------------------

    @default("mem_limit")
    def _mem_limit_default(self):
        # JupyterHub's Spawner.mem_limit, enforced here; unset upstream, which on one
        # machine would let one kernel take every byte.
        return resource_limits.default_memory_limit(cgroups.memory_total())

    pids_limit = Integer(
        4096,
        allow_none=True,
        config=True,
        help="""Most processes and threads a user's server may have at once, all it
        starts included (kernels, terminals, their children); past it, creating one
        more fails (``fork: Resource temporarily unavailable``, Python's
        ``BlockingIOError``), so a fork bomb stops there and the server keeps running.
        0 or None: no limit. Per user or group: ``limit_overrides``. Like
        ``Spawner.mem_limit`` (default: a quarter of the machine's memory) and
        ``Spawner.cpu_limit`` (default: none), enforced by the kernel through cgroups
        (``cgroup_backend``).""",
    )

    limit_overrides = Dict(
        config=True,
        help="""Per-user or per-group exceptions to ``mem_limit``, ``cpu_limit`` and
        ``pids_limit``: ``{"alice": {"mem_limit": "16G"}, "group:phd": {"mem_limit": "8G",
        "cpu_limit": 2, "pids_limit": 8192}}`` (JupyterHub groups). For each limit, the
        user's own entry wins; otherwise the most generous among the user's groups
        (0 or None, no limit, beats any); otherwise the spawner's setting. Read at each
        spawn: a change applies from the user's next server start.""",
    )

    cgroup_backend = Unicode(
        "auto",
        config=True,
        help="""How limits are enforced: ``systemd`` (a transient scope per server in
        ``<cgroup_parent>.slice``, through ``systemd-run --scope``; where systemd runs),
        ``cgroup2`` or ``cgroup1`` (the cgroup file system written directly), ``none``
        (no limits: the hub log warns), or ``auto``, the first of these the machine
        has. Every backend needs the hub to run as root; ``auto`` without root is
        ``none``. A backend named here that the machine lacks makes spawns fail.""",
    )

    cgroup_parent = Unicode(
        "enertef",
        config=True,
        help="""Name of the group all users' servers are in: with ``cgroup1``/``cgroup2``
        a directory below the hub's own cgroup (``/sys/fs/cgroup/memory/enertef/alice`` for a
        hub at the root), with systemd the slice ``enertef.slice``. Two hubs on one machine
        need different names.""",
    )

    system_reserved_memory = ByteSpecification(
        None,  # computed from the machine's memory (below)
        config=True,
        help="""Memory kept for the hub, PostgreSQL, MinIO and the system: all users'
        servers together are limited to the machine's memory minus this, so they cannot
        push the machine into its own OOM killer (which could pick the hub or PostgreSQL).
        Default: 10 % of the machine's memory, at least 2 GiB and at most half. 0: no
        limit for all users together.""",
    )

    @default("system_reserved_memory")
    def _system_reserved_memory_default(self):
        return resource_limits.default_reserved_memory(cgroups.memory_total())

    @validate("limit_overrides")
    def _valid_limit_overrides(self, proposal):
        for key, entry in proposal["value"].items():
            try:
                resource_limits.parse_limit_entry(entry)
            except ValueError as exc:
                raise TraitError(f"EnerTEFLocalSpawner.limit_overrides[{key!r}]: {exc}") from None
        return proposal["value"]

    @validate("cgroup_backend")
    def _valid_cgroup_backend(self, proposal):
        if proposal["value"] not in (*resource_limits.BACKENDS, "auto"):
            raise TraitError(f"EnerTEFLocalSpawner.cgroup_backend: {proposal['value']!r} is none of"
                             f" auto, {', '.join(resource_limits.BACKENDS)}")
        return proposal["value"]

    @validate("cgroup_parent")
    def _valid_cgroup_parent(self, proposal):
        if not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}", proposal["value"]):
            raise TraitError("EnerTEFLocalSpawner.cgroup_parent: a name of letters, digits, '_', '.'"
                             f" and '-' (got {proposal['value']!r})")
        return proposal["value"]

    #: The limits of the current (or last) spawn, and the cgroup.procs files its process joins.
    limits: resource_limits.Limits | None = None
    _cgroup_procs: list = []
    _systemd_launch: bool = False

    #: Digest of the notebook scripts as last merged in full into this user's home (kept
    #: in the hub's database with the spawner's state, across stops and hub restarts).
    seeded_scripts_digest: str = ""

    def load_state(self, state):
        super().load_state(state)
        self.seeded_scripts_digest = state.get("enertef_seeded_scripts", "")

    def get_state(self):
        state = super().get_state()
        if self.seeded_scripts_digest:
            state["enertef_seeded_scripts"] = self.seeded_scripts_digest
        return state

    @property
    def system_username(self) -> str:
        """The OS account that runs this user's server."""
        if self.run_as_hub_user:
            return pwd.getpwuid(os.getuid()).pw_name
        return make_system_username(self.user.name)

    @property
    def home_dir(self) -> str:
        """This user's home directory."""
        return make_home_dir(self.home_root, self.user.name, self.run_as_hub_user)

    @property
    def cgroup_name(self) -> str:
        """The name of this server's group below ``cgroup_parent``."""
        return resource_limits.make_group_name(self.user.name, self.name or "")

    def effective_limits(self) -> resource_limits.Limits:
        """This user's limits: the spawner's settings, then ``limit_overrides``."""
        base = resource_limits.Limits(memory=self.mem_limit or None, cpu=self.cpu_limit or None,
                                      pids=self.pids_limit or None)
        groups = [g.name for g in getattr(self.user, "groups", []) or []]
        return resource_limits.resolve_limits(base, self.limit_overrides, self.user.name, groups)

    def limits_backend(self) -> cgroups.Backend:
        """The backend enforcing limits on this machine (``cgroup_backend``)."""
        return make_limits_backend(self.cgroup_backend, self.cgroup_parent, self.log)

    def users_memory(self) -> int | None:
        """Bytes all users' servers together may use (None: no such limit)."""
        if not self.system_reserved_memory:
            return None
        return max(cgroups.memory_total() - self.system_reserved_memory, 256 * resource_limits.MIB)

    async def enter_limits(self) -> list[str]:
        """Set up this server's group with its limits, before the process starts."""
        self.limits = limits = self.effective_limits()
        self._cgroup_procs, self._systemd_launch = [], False
        try:
            backend = self.limits_backend()
            if backend.name == "none":
                return []
            self._cgroup_procs = await backend.prepare(self.cgroup_name, limits, self.users_memory())
            uid = gid = None
            if not self.run_as_hub_user:
                entry = pwd.getpwnam(self.system_username)
                uid, gid = entry.pw_uid, entry.pw_gid
            prefix = backend.command_prefix(self.cgroup_name, limits, uid, gid)
        except cgroups.CgroupError as exc:
            self.log.error("Limits of %s's server could not be set up: %s", self.user.name, exc)
            raise ConfigurationError(
                f"Your server's memory and CPU limits could not be set up ({exc}), so it was not"
                " started. Ask an admin: the hub log has the details (EnerTEFLocalSpawner.cgroup_backend).")
        self._systemd_launch = bool(prefix)
        self.log.info("Server of %s runs with %s (%s, group %s)", self.user.name, limits.describe(),
                      backend.name, self.cgroup_name)
        return prefix

    async def leave_limits(self):
        """End whatever is left in this server's group and remove it (the server has stopped)."""
        try:
            backend = self.limits_backend()
            left = await backend.release(self.cgroup_name)
        except (cgroups.CgroupError, ConfigurationError) as exc:
            # Not fatal for the stop: the next spawn empties and remakes the group.
            self.log.error("Group %s of %s's server not removed: %s", self.cgroup_name, self.user.name, exc)
            return
        if left:
            self.log.error("Processes %s in group %s of %s survived SIGKILL", left, self.cgroup_name, self.user.name)

    async def stop(self, now=False):
        await super().stop(now=now)
        # Kernels, terminals and what they started go with the server, as on Kubernetes
        # (the pod) and with systemd (the scope): nothing keeps counting against the
        # user's limits, or runs on, unseen.
        await self.leave_limits()

    def get_env(self):
        env = super().get_env()
        # What the server is told (jupyter-resource-usage shows MEM_LIMIT): the
        # limits in force, overrides included.
        limits = self.limits or self.effective_limits()
        env.pop("MEM_LIMIT", None)
        env.pop("CPU_LIMIT", None)
        if limits.memory:
            env["MEM_LIMIT"] = str(limits.memory)
        if limits.cpu:
            env["CPU_LIMIT"] = str(limits.cpu)
        return env

    # -- the hook of the mixin --------------------------------------------------------

    async def prepare_home(self, result: ProvisionResult):
        if self.run_as_hub_user:
            os.makedirs(self.home_dir, mode=0o700, exist_ok=True)
        else:
            if os.geteuid() != 0:
                raise ConfigurationError(
                    "EnerTEFLocalSpawner needs the hub to run as root to give each user a"
                    " system account; for development set EnerTEFLocalSpawner.run_as_hub_user = True."
                )
            await self._ensure_system_user()
        if self.notebook_scripts_dir:
            digest = make_source_digest(Path(self.notebook_scripts_dir))
            if digest and digest == self.seeded_scripts_digest and self._scripts_folder_exists():
                # Nothing shipped changed since the last full merge, so a merge would
                # change nothing (edits and deletions are the user's): skip its ~0.3 s
                # of CPU, which competes with the server's start on a small machine.
                return
            # The server does not need the scripts to start: merge them meanwhile.
            self._enertef_progress(35, "Updating your notebook scripts…")
            self.run_alongside_server(self._seed_home(digest))

    async def _run(self, *cmd: str, as_user: bool = False) -> str:
        kwargs = {}
        if as_user and not self.run_as_hub_user:
            kwargs["preexec_fn"] = set_user_setuid(self.system_username)
        proc = await asyncio.create_subprocess_exec(
            *cmd, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": self.home_dir, "LANG": "C.UTF-8"},
            cwd=self.home_dir if as_user else None, **kwargs,
        )
        output, _ = await proc.communicate()
        text = output.decode(errors="replace").strip()
        if proc.returncode != 0:
            raise ProvisioningError(f"{cmd[0]} failed for {self.user.name}: {text[-500:]}")
        return text

    async def _ensure_system_user(self):
        name = self.system_username
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            # An explicit uid: above every uid a deleted account's process or file still holds.
            uid = sysaccounts.choose_uid()
            self.log.info("Creating system user %s (uid %d) for %s", name, uid, self.user.name)
            os.makedirs(self.home_root, exist_ok=True)
            await self._run("useradd", "--create-home", "--home-dir", self.home_dir, "--shell", "/bin/bash",
                            "--uid", str(uid), "--user-group", "--comment", f"JupyterHub user {self.user.name}",
                            name)
        else:
            if not os.path.isdir(self.home_dir):
                # The account outlived its home (e.g. an older deletion that failed half way).
                self.log.warning("System user %s has no home: making a new, empty one", name)
                os.makedirs(self.home_dir, mode=0o700)
                os.chown(self.home_dir, entry.pw_uid, entry.pw_gid)
        # Private home: other users' servers must not read it.
        os.chmod(self.home_dir, 0o700)

    def _scripts_folder_exists(self) -> bool:
        try:  # lstat: a symlink in its place is not the folder (the merge refuses it anyway)
            return stat.S_ISDIR(os.lstat(os.path.join(self.home_dir, SCRIPTS_DIRNAME)).st_mode)
        except OSError:
            return False

    async def _seed_home(self, digest: str = ""):
        """Merge the notebook scripts into the home; a problem there is reported, never fatal.

        ``digest`` (of the shipped scripts) is remembered when every file could be
        merged, so the next spawn skips an identical merge.

        Seeding runs as the user, never as root: the home is user-controlled, and a
        root process writing there could be tricked by a symlink. Python runs in
        isolated mode (``-I``): the working directory (the home), ``PYTHON*``
        variables and the user's site-packages stay off ``sys.path``, so nothing the
        user puts in their home can stand in for our module. Its output is parsed
        as one JSON object and only ever logged quoted, so it can never pass for a
        lifecycle event in the hub log.
        """
        become_user = None if self.run_as_hub_user else set_user_setuid(self.system_username, chdir=False)

        def preexec():
            # It runs while the server starts: let the server have the CPU first.
            os.nice(SEEDING_NICENESS)
            if become_user is not None:
                become_user()

        try:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-I", "-m", "enertef_hub.provisioners.seeding", "--json",
                "--source", self.notebook_scripts_dir, "--home", self.home_dir,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, stdin=asyncio.subprocess.DEVNULL,
                env={"PATH": "/usr/bin:/bin", "HOME": self.home_dir, "LANG": "C.UTF-8"}, cwd="/", preexec_fn=preexec,
            )
            try:
                output, _ = await asyncio.wait_for(proc.communicate(), 60)
            except asyncio.TimeoutError:
                proc.kill()
                await proc.wait()
                output = b""
        except OSError as exc:
            output = str(exc).encode()
        report = _parse_seed_report(output)
        if report is None:
            self.log.warning("Seeding the home of %s failed; output: %s", self.user.name,
                             as_data(output.decode(errors="replace")[-500:]))
            self._enertef_progress(45, "Your notebook scripts were not updated (the copy step failed);"
                                       " your server starts anyway. Ask an admin if this persists.")
        elif not report["seeded"]:
            self.log.warning("Home of %s not seeded: %s", self.user.name, as_data(report["error"]))
            self._enertef_progress(45, f"Your notebook scripts were not updated: {report['error'][:300]}"
                                       " Your server starts anyway.")
        else:
            self.log.info("Seeded home of %s: %s", self.user.name, as_data(json.dumps(report["counts"])))
            # With a refused file the merge must run again: the user may move it away.
            self.seeded_scripts_digest = "" if report["refused"] else digest
            if report["refused"]:
                skipped = ", ".join(report["refused"][:10])
                self._enertef_progress(45, f"Notebook scripts: skipped {len(report['refused'])} file(s) because a"
                                           f" symlink or something that is not a regular file is in the way"
                                           f" ({skipped}). Rename it to get the current version.")

    async def end_user_processes(self) -> list[int]:
        """End every process of this user's system account (withdrawn approval, deletion).

        Returns the pids still alive afterwards. Never touches the hub's own
        account (``run_as_hub_user``).
        """
        if self.run_as_hub_user:
            return []
        try:
            uid = pwd.getpwnam(self.system_username).pw_uid
        except KeyError:
            return []
        left = await sysaccounts.end_processes(uid)
        if left:
            self.log.error("Processes %s of %s (uid %d) survived SIGKILL", left, self.system_username, uid)
        return left

    async def delete_forever(self):
        """The user was deleted in the Hub: archive or purge their home.

        A later account with the same name must not find the old files, so a kept
        home is moved aside (``jupyter-alice.deleted-<time>``, owned by root) and the
        system account removed; with ``Workbench.purge_on_delete`` it is deleted.
        """
        home = self.home_dir
        await self.leave_limits()
        if not self.run_as_hub_user:
            # Nothing of the account may outlive it: a detached process would keep
            # its uid and could later act as (and read) a new account given that uid.
            left = await self.end_user_processes()
            if left:
                raise web.HTTPError(
                    500, f"User {self.user.name} was not fully deleted: processes {left} of system user"
                    f" {self.system_username} could not be ended. Their access to the MLflow store and"
                    " storage is already revoked; end those processes and delete the user again.")
            self._remove_leftovers()
        if os.path.isdir(home):
            await self._archive_or_purge_home(home)
        if not self.run_as_hub_user:
            try:
                pwd.getpwnam(self.system_username)
            except KeyError:
                return
            try:
                await self._run("userdel", self.system_username)
            except ProvisioningError as exc:
                raise web.HTTPError(
                    500, f"User {self.user.name} was not fully deleted: removing system user"
                    f" {self.system_username} failed ({exc}). Delete the user again once that is fixed.") from None

    def _remove_leftovers(self):
        """Remove the account's SysV IPC objects and /run/lock entries (enertef_hub.sysaccounts):
        they outlive its processes and would belong to whoever gets the uid next."""
        try:
            uid = pwd.getpwnam(self.system_username).pw_uid
        except KeyError:
            return
        left = sysaccounts.remove_leftovers(uid)
        if left:
            raise web.HTTPError(
                500, f"User {self.user.name} was not fully deleted: {', '.join(left[:10])} of system user"
                f" {self.system_username} could not be removed. Their access to the MLflow store and"
                " storage is already revoked; remove those (ipcrm, rm) and delete the user again.")
        self.log.info("No SysV IPC object or /run/lock entry of %s (uid %d) is left", self.system_username, uid)

    async def _archive_or_purge_home(self, home: str):
        if self.workbench.purge_on_delete:
            shutil.rmtree(home)
            self.log.info("Deleted home %s of deleted user %s", home, self.user.name)
        else:
            archive = f"{home}.deleted-{time.strftime('%Y%m%dT%H%M%S')}"
            os.rename(home, archive)
            if os.geteuid() == 0:
                # A new system account could reuse the old uid: hand the files to root.
                await self._run("chown", "-R", "root:root", archive)
                os.chmod(archive, 0o700)
            self.log.info("Archived home of deleted user %s to %s", self.user.name, archive)

    # -- LocalProcessSpawner, for a user who is not the hub user's name ---------------

    def make_preexec_fn(self, name):
        home = self.home_dir
        # Into the server's group first, while still root: then everything the server
        # ever starts is in it (no window between start and move for a child to escape).
        join = cgroups.join_fn(self._cgroup_procs) if self._cgroup_procs else (lambda: None)
        if self.run_as_hub_user or self._systemd_launch:
            # systemd-run drops to the user itself (--uid/--gid), after joining its scope.
            def preexec():
                join()
                os.chdir(home)
            return preexec
        become_user = set_user_setuid(self.system_username)

        def preexec():
            join()
            become_user()
        return preexec

    def get_args(self):
        args = super().get_args()
        if self.run_as_hub_user and os.geteuid() == 0:
            # Development as root: jupyter-server refuses to run as root unless told.
            args = [*args, "--ServerApp.allow_root=True"]
        return args

    def user_env(self, env):
        env["USER"] = self.system_username
        env["HOME"] = self.home_dir
        env["SHELL"] = "/bin/bash"
        return env

    async def move_certs(self, paths):
        if self.run_as_hub_user:
            return paths
        return await super().move_certs(paths)


_warned_no_limits: set[str] = set()


def make_limits_backend(name: str, parent: str, log=None) -> cgroups.Backend:
    """The limits backend called ``name`` (``auto``: this machine's), for groups below ``parent``.

    ``auto`` on a machine without one gives the ``none`` backend and a warning in the
    log (once per process); a backend named explicitly that cannot work raises
    :class:`ConfigurationError`.
    """
    if name == "auto":
        name, why = cgroups.detect_backend()
        if name == "none" and log is not None and why not in _warned_no_limits:
            _warned_no_limits.add(why)
            log.warning("Users' servers run WITHOUT memory, CPU and process limits: %s"
                        " (EnerTEFLocalSpawner.cgroup_backend = 'auto').", why)
    elif name == "none" and log is not None and "none" not in _warned_no_limits:
        _warned_no_limits.add("none")
        log.warning("Users' servers run WITHOUT memory, CPU and process limits"
                    " (EnerTEFLocalSpawner.cgroup_backend = 'none').")
    try:
        return cgroups.make_backend(name, parent)
    except (cgroups.CgroupError, OSError) as exc:
        raise ConfigurationError(f"the cgroup backend {name!r} cannot work here: {exc}") from None


def _parse_seed_report(output: bytes) -> dict | None:
    """The seeding step's JSON report, checked field by field; None if it is anything else."""
    lines = output.decode(errors="replace").strip().splitlines()
    try:
        report = json.loads(lines[-1]) if lines else None
    except ValueError:
        return None
    if not isinstance(report, dict) or not isinstance(report.get("seeded"), bool):
        return None
    if not report["seeded"]:
        return {"seeded": False, "error": str(report.get("error", "unknown reason"))}
    counts, refused = report.get("counts"), report.get("refused")
    if not isinstance(counts, dict) or not isinstance(refused, list):
        return None
    return {"seeded": True, "counts": {str(k): int(v) for k, v in counts.items() if isinstance(v, int)},
            "refused": [str(r) for r in refused]}
