"""Memory, CPU and process limits of users' servers on one machine, set up in the kernel's cgroups.

This module's one job is the side effects of limits: reading this machine's cgroup
mounts and ``/proc``, making and removing each server's group and writing its
limits there, moving the server into it, ending what is left at stop, and reading
what a group uses. What the limits are and what to write or run for them is decided
by the pure :mod:`enertef_hub.resource_limits`; kept apart so those rules are tested
anywhere, and this module is tested for real (as root, with real processes in real
cgroups).

Each user's server runs in a control group of its own (cgroup), below one parent
group for all users; the kernel enforces the limits written there. Three backends,
chosen by :func:`detect_backend`:

- ``systemd`` where systemd runs (PID 1): the server is launched through
  ``systemd-run --scope`` in a transient scope ``enertef-<user>.scope`` of the slice
  ``enertef.slice``, with ``MemoryMax=``, ``CPUQuota=``, ``TasksMax=``;
- ``cgroup2``: the unified hierarchy, written directly (``memory.max``, ``cpu.max``,
  ``pids.max``);
- ``cgroup1``: the v1 controllers ``memory``, ``cpu``, ``cpuacct``, ``pids``, each its
  own hierarchy, written directly (``memory.limit_in_bytes``, ``cpu.cfs_quota_us``,
  ``pids.max``).

With the cgroup file systems the groups are made below the hub's own cgroup in
each hierarchy (a hub started at the root: ``/sys/fs/cgroup/memory/enertef/alice``),
so a hub in a container keeps its users inside the container's limits. The server
process joins its group between fork and exec (the spawner's ``preexec_fn``), so no
child it starts can be outside.
"""

from __future__ import annotations

import asyncio
import errno
import os
import shutil
import time
from pathlib import Path

from .resource_limits import (
    BACKENDS,
    CPU_PERIOD_US,
    V1_CONTROLLERS,
    Limits,
    Mounts,
    Usage,
    Write,
    choose_backend,
    make_systemd_run_prefix,
    make_systemd_slice_command,
    make_systemd_unit,
    make_v1_parent_writes,
    make_v1_writes,
    make_v2_parent_writes,
    make_v2_subtree_control,
    make_v2_writes,
    parse_flat_keyed,
    parse_limit_value,
    parse_memory_total,
    parse_mountinfo,
    parse_proc_cgroup,
)
from .sysaccounts import stop_then_kill


class CgroupError(RuntimeError):
    """A limit could not be set up or removed; the message says what and what to do."""


# ------------------------------------------------------------------ what the machine has


def memory_total() -> int:
    """Bytes of this machine's memory (``MemTotal`` of ``/proc/meminfo``)."""
    try:
        return parse_memory_total(Path("/proc/meminfo").read_text())
    except ValueError as exc:
        raise CgroupError(str(exc)) from None


def systemd_running(run_dir: str = "/run/systemd/system") -> bool:
    """True when systemd is the init system and runs (``sd_booted()``'s test) and systemd-run is here."""
    return os.path.isdir(run_dir) and shutil.which("systemd-run") is not None


def read_mounts() -> Mounts:
    """This machine's cgroup mounts."""
    return parse_mountinfo(Path("/proc/self/mountinfo").read_text())


def detect_backend() -> tuple[str, str]:
    """``(backend, why)`` for this machine: systemd, cgroup2, cgroup1, or none (and why)."""
    mounts = read_mounts()
    controllers: set[str] = set()
    if mounts.v2 is not None:
        try:
            controllers = set(Path(mounts.v2, "cgroup.controllers").read_text().split())
        except OSError:
            pass
    return choose_backend(mounts, systemd_running(), controllers, os.geteuid(),
                          writable=lambda path: os.access(path, os.W_OK))


# ---------------------------------------------------------------------------- groups


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="ascii") as f:
            return f.read()
    except OSError:
        return None


def _write(path: str, value: str):
    try:
        with open(path, "w", encoding="ascii") as f:
            f.write(value)
    except OSError as exc:
        raise CgroupError(f"could not write {value} to {path}: {exc.strerror or exc}") from None


def _apply(directory: str, writes: list[Write]):
    for w in writes:
        path = os.path.join(directory, w.file)
        if w.optional and not os.path.exists(path):
            continue
        _write(path, w.value)


def join_fn(procs_files: list[str]):
    """A function that moves the calling process into the groups of ``procs_files``.

    Made for ``Popen(preexec_fn=...)``: it runs in the child between fork and exec, as
    root, before the child drops to the user, so the server is in its group from its
    first instruction. Only ``os`` calls on prepared strings (no locks after fork).
    """
    files = [p.encode() for p in procs_files]

    def join():
        pid = str(os.getpid()).encode()
        for path in files:
            fd = os.open(path, os.O_WRONLY)
            try:
                os.write(fd, pid)
            finally:
                os.close(fd)

    return join


class Backend:
    """What a backend does; the spawner calls these, in this order, for one server's group.

    - :meth:`prepare` before the launch: set up the parent and the group with its
      limits (a group left by a crashed hub is emptied and made anew); returns the
      ``cgroup.procs`` files the server joins in its ``preexec_fn``.
    - :meth:`command_prefix`: words before the server's command (systemd-run).
    - :meth:`release` after the server stopped: end what is left in the group and
      remove it.
    - :meth:`usage` and :meth:`groups`: read what running groups use.
    """

    name = "none"

    def __init__(self, parent: str = "enertef"):
        self.parent = parent.strip("/") or "enertef"

    async def prepare(self, group: str, limits: Limits, users_memory: int | None) -> list[str]:
        return []

    def command_prefix(self, group: str, limits: Limits, uid: int | None, gid: int | None) -> list[str]:
        return []

    async def release(self, group: str, timeout: float = 10.0) -> list[int]:
        """End every process left in the group and remove it; returns pids that survived."""
        return []

    def groups(self) -> list[str]:
        """Names of the users' groups that exist now."""
        return []

    def usage(self, group: str) -> Usage | None:
        return None

    def processes(self, group: str) -> list[int]:
        return []


class _DirectoryBackend(Backend):
    """What the two cgroup file-system backends share: directories of groups and their processes."""

    def group_dirs(self, group: str) -> list[str]:
        raise NotImplementedError

    def processes(self, group: str) -> list[int]:
        pids: set[int] = set()
        for directory in self.group_dirs(group):
            text = _read(os.path.join(directory, "cgroup.procs")) or ""
            pids.update(int(p) for p in text.split() if p.isdigit())
        return sorted(pids)

    def _kill_group(self, group: str) -> bool:
        """End the group's processes at once if the kernel can (v2 ``cgroup.kill``); False if not."""
        return False

    async def end_processes(self, group: str, timeout: float = 10.0) -> list[int]:
        """Kill every process of the group, round after round; the pids alive after ``timeout``."""
        deadline = time.monotonic() + timeout
        self._kill_group(group)
        while True:
            pids = self.processes(group)
            if not pids or time.monotonic() > deadline:
                return pids
            stop_then_kill(pids)
            await asyncio.sleep(0.02)

    async def release(self, group: str, timeout: float = 10.0) -> list[int]:
        left = await self.end_processes(group, timeout)
        if left:
            return left
        deadline = time.monotonic() + timeout
        for directory in self.group_dirs(group):
            while True:
                try:
                    os.rmdir(directory)
                    break
                except FileNotFoundError:
                    break
                except OSError as exc:
                    # Right after the last process exits the kernel may still hold the group.
                    if exc.errno != errno.EBUSY or time.monotonic() > deadline:
                        raise CgroupError(f"could not remove {directory}: {exc.strerror}") from None
                    await asyncio.sleep(0.02)
        return []

    async def _fresh(self, group: str):
        """Make sure no group of this name is left from before (a hub that crashed or was killed)."""
        if not any(os.path.isdir(d) for d in self.group_dirs(group)):
            return
        left = await self.release(group)
        if left:
            raise CgroupError(f"processes {left} of an earlier server are still in group {group} and"
                              " could not be ended; end them and start the server again")


class CgroupV1(_DirectoryBackend):
    """cgroup v1: one group per controller hierarchy (memory, cpu, cpuacct, pids), written directly."""

    name = "cgroup1"

    def __init__(self, parent: str = "enertef", mounts: Mounts | None = None, own: dict[str, str] | None = None):
        super().__init__(parent)
        self.mounts = mounts if mounts is not None else read_mounts()
        if own is None:
            own = parse_proc_cgroup(Path("/proc/self/cgroup").read_text())[0]
        #: controller -> the users' parent directory in its hierarchy (co-mounted
        #: controllers, e.g. ``cpu,cpuacct``, share one).
        self.parents: dict[str, str] = {
            controller: os.path.join(mount, own.get(controller, "/").lstrip("/"), self.parent)
            for controller, mount in self.mounts.v1.items() if controller in V1_CONTROLLERS}

    def _hierarchies(self) -> dict[str, list[str]]:
        """Parent directory -> the controllers it carries."""
        found: dict[str, list[str]] = {}
        for controller, parent in self.parents.items():
            found.setdefault(parent, []).append(controller)
        return found

    def group_dirs(self, group: str) -> list[str]:
        return [os.path.join(parent, group) for parent in self._hierarchies()]

    def _dir(self, controller: str, group: str) -> str | None:
        parent = self.parents.get(controller)
        return os.path.join(parent, group) if parent else None

    async def prepare(self, group: str, limits: Limits, users_memory: int | None) -> list[str]:
        if "memory" not in self.parents:
            raise CgroupError("the memory controller is not mounted (/sys/fs/cgroup/memory)")
        parent_writes = make_v1_parent_writes(users_memory)
        for parent, controllers in self._hierarchies().items():
            os.makedirs(parent, exist_ok=True)
            if "memory" in controllers:
                try:
                    _apply(parent, parent_writes["memory"])
                except CgroupError:
                    # The users already hold more than a lowered total: their own limits
                    # still apply, and the total takes effect as they free memory.
                    pass
        await self._fresh(group)
        writes = make_v1_writes(limits)
        procs = []
        for parent, controllers in self._hierarchies().items():
            directory = os.path.join(parent, group)
            try:
                os.mkdir(directory)
            except OSError as exc:
                raise CgroupError(f"could not make {directory}: {exc.strerror}") from None
            for controller in controllers:
                _apply(directory, writes[controller])
            procs.append(os.path.join(directory, "cgroup.procs"))
        return procs

    def groups(self) -> list[str]:
        try:
            return sorted(e.name for e in os.scandir(self.parents["memory"]) if e.is_dir())
        except (OSError, KeyError):
            return []

    def usage(self, group: str) -> Usage | None:
        memory_dir = self._dir("memory", group)
        current = _read(os.path.join(memory_dir, "memory.usage_in_bytes")) if memory_dir else None
        if current is None:
            return None
        stat = parse_flat_keyed(_read(os.path.join(memory_dir, "memory.stat")) or "")
        oom = parse_flat_keyed(_read(os.path.join(memory_dir, "memory.oom_control")) or "")
        usage = Usage(group, memory=max(0, int(current) - stat.get("total_inactive_file", 0)),
                      memory_limit=parse_limit_value(_read(os.path.join(memory_dir, "memory.limit_in_bytes")) or ""),
                      oom_kills=oom.get("oom_kill"))
        cpuacct = self._dir("cpuacct", group)
        if cpuacct and (ns := _read(os.path.join(cpuacct, "cpuacct.usage"))) is not None:
            usage.cpu_seconds = int(ns) / 1e9
        cpu = self._dir("cpu", group)
        if cpu and (quota := _read(os.path.join(cpu, "cpu.cfs_quota_us"))) is not None:
            period = int(_read(os.path.join(cpu, "cpu.cfs_period_us")) or CPU_PERIOD_US)
            usage.cpu_limit = int(quota) / period if int(quota) > 0 else None
        pids = self._dir("pids", group)
        if pids and (count := _read(os.path.join(pids, "pids.current"))) is not None:
            usage.pids = int(count)
            usage.pids_limit = parse_limit_value(_read(os.path.join(pids, "pids.max")) or "")
        return usage


class CgroupV2(_DirectoryBackend):
    """cgroup v2: one group in the unified hierarchy, written directly."""

    name = "cgroup2"

    def __init__(self, parent: str = "enertef", mounts: Mounts | None = None, own: str | None = None):
        super().__init__(parent)
        self.mounts = mounts if mounts is not None else read_mounts()
        if self.mounts.v2 is None:
            raise CgroupError("no cgroup2 file system is mounted")
        if own is None:
            own = parse_proc_cgroup(Path("/proc/self/cgroup").read_text())[1] or "/"
        self.base = os.path.join(self.mounts.v2, own.lstrip("/"))
        self.parent_dir = os.path.join(self.base, self.parent)

    def group_dirs(self, group: str) -> list[str]:
        return [os.path.join(self.parent_dir, group)]

    def _kill_group(self, group: str) -> bool:
        path = os.path.join(self.parent_dir, group, "cgroup.kill")  # Linux 5.14+
        if not os.path.exists(path):
            return False
        try:
            _write(path, "1")
        except CgroupError:
            return False
        return True

    async def prepare(self, group: str, limits: Limits, users_memory: int | None) -> list[str]:
        available = set((_read(os.path.join(self.base, "cgroup.controllers")) or "").split())
        if "memory" not in available:
            raise CgroupError(f"the memory controller is not enabled for {self.base}")
        line = make_v2_subtree_control(available)
        os.makedirs(self.parent_dir, exist_ok=True)
        for directory in (self.base, self.parent_dir):
            try:
                _write(os.path.join(directory, "cgroup.subtree_control"), line)
            except CgroupError as exc:
                raise CgroupError(f"{exc} (cgroup v2 lets a group with processes of its own enable"
                                  " controllers for children only at the root: run the hub in a group"
                                  " whose parent it may manage, or under systemd)") from None
        try:
            _apply(self.parent_dir, make_v2_parent_writes(users_memory))
        except CgroupError:
            pass  # users hold more than a lowered total: it takes effect as they free memory
        await self._fresh(group)
        directory = os.path.join(self.parent_dir, group)
        try:
            os.mkdir(directory)
        except OSError as exc:
            raise CgroupError(f"could not make {directory}: {exc.strerror}") from None
        _apply(directory, make_v2_writes(limits))
        return [os.path.join(directory, "cgroup.procs")]

    def groups(self) -> list[str]:
        try:
            return sorted(e.name for e in os.scandir(self.parent_dir) if e.is_dir())
        except OSError:
            return []

    def usage(self, group: str) -> Usage | None:
        return read_v2_usage(os.path.join(self.parent_dir, group), group)


def read_v2_usage(directory: str, group: str) -> Usage | None:
    """What a v2 group uses (its directory), or None when it does not exist."""
    current = _read(os.path.join(directory, "memory.current"))
    if current is None:
        return None
    stat = parse_flat_keyed(_read(os.path.join(directory, "memory.stat")) or "")
    events = parse_flat_keyed(_read(os.path.join(directory, "memory.events")) or "")
    cpu = parse_flat_keyed(_read(os.path.join(directory, "cpu.stat")) or "")
    usage = Usage(group, memory=max(0, int(current) - stat.get("inactive_file", 0)),
                  memory_limit=parse_limit_value(_read(os.path.join(directory, "memory.max")) or ""),
                  oom_kills=events.get("oom_kill"))
    if "usage_usec" in cpu:
        usage.cpu_seconds = cpu["usage_usec"] / 1e6
    quota = (_read(os.path.join(directory, "cpu.max")) or "max").split()
    if quota and quota[0].isdigit():
        usage.cpu_limit = int(quota[0]) / int(quota[1] if len(quota) > 1 else CPU_PERIOD_US)
    if (count := _read(os.path.join(directory, "pids.current"))) is not None:
        usage.pids = int(count)
        usage.pids_limit = parse_limit_value(_read(os.path.join(directory, "pids.max")) or "")
    return usage


class SystemdScopes(Backend):
    """systemd: each server in a transient scope of the users' slice, made by ``systemd-run --scope``."""

    name = "systemd"

    def __init__(self, parent: str = "enertef", mounts: Mounts | None = None):
        super().__init__(parent)
        self.slice = f"{self.parent}.slice"
        self.mounts = mounts if mounts is not None else read_mounts()

    def unit(self, group: str) -> str:
        return make_systemd_unit(self.slice, group)

    async def _systemctl(self, *args: str, check: bool = True) -> str:
        proc = await asyncio.create_subprocess_exec(
            *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
            stdin=asyncio.subprocess.DEVNULL)
        output, _ = await proc.communicate()
        text = output.decode(errors="replace").strip()
        if check and proc.returncode != 0:
            raise CgroupError(f"{' '.join(args)} failed: {text[-300:]}")
        return text

    async def prepare(self, group: str, limits: Limits, users_memory: int | None) -> list[str]:
        await self._systemctl(*make_systemd_slice_command(self.slice, users_memory))
        await self.release(group)  # a scope left from before would make systemd-run refuse the name
        return []

    def command_prefix(self, group: str, limits: Limits, uid: int | None, gid: int | None) -> list[str]:
        return make_systemd_run_prefix(self.unit(group), self.slice, limits, uid, gid)

    async def release(self, group: str, timeout: float = 10.0) -> list[int]:
        unit = self.unit(group)
        await self._systemctl("systemctl", "stop", unit, check=False)
        await self._systemctl("systemctl", "reset-failed", unit, check=False)
        return []

    def _dir(self) -> str | None:
        if self.mounts.v2 is not None and os.path.exists(os.path.join(self.mounts.v2, "cgroup.controllers")):
            return os.path.join(self.mounts.v2, self.slice)
        return None

    def groups(self) -> list[str]:
        prefix = self.slice.removesuffix(".slice") + "-"
        base = self._dir() or (os.path.join(self.mounts.v1["memory"], self.slice) if "memory" in self.mounts.v1 else "")
        try:
            names = [e.name for e in os.scandir(base) if e.is_dir()]
        except OSError:
            return []
        return sorted(n[len(prefix):-len(".scope")] for n in names if n.startswith(prefix) and n.endswith(".scope"))

    def usage(self, group: str) -> Usage | None:
        unit = self.unit(group)
        if (base := self._dir()) is not None:
            return read_v2_usage(os.path.join(base, unit), group)
        v1 = CgroupV1(parent=self.slice, mounts=self.mounts, own={})
        return v1.usage(unit)


def make_backend(name: str, parent: str = "enertef") -> Backend:
    """The backend called ``name`` (one of :data:`BACKENDS`) for groups below ``parent``."""
    if name == "cgroup1":
        return CgroupV1(parent)
    if name == "cgroup2":
        return CgroupV2(parent)
    if name == "systemd":
        return SystemdScopes(parent)
    if name == "none":
        return Backend(parent)
    raise CgroupError(f"unknown cgroup backend {name!r}: use one of {', '.join(BACKENDS)} or auto")


def sample_usage(backend: Backend, groups: list[str] | None = None, interval: float = 0.3) -> dict[str, Usage]:
    """What each group uses now; CPU in cores over ``interval`` seconds (blocks that long)."""
    names = backend.groups() if groups is None else groups
    first = {g: backend.usage(g) for g in names}
    if interval > 0 and any(u is not None and u.cpu_seconds is not None for u in first.values()):
        started = time.monotonic()
        time.sleep(interval)
        elapsed = time.monotonic() - started
        for g, before in first.items():
            after = backend.usage(g)
            if before is None or after is None:
                continue
            if before.cpu_seconds is not None and after.cpu_seconds is not None:
                after.cpu_cores = max(0.0, (after.cpu_seconds - before.cpu_seconds) / elapsed)
            first[g] = after
    return {g: u for g, u in first.items() if u is not None}
