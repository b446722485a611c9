"""Memory, CPU and process limits of users' servers on one machine, enforced by the kernel.

Each user's server runs in a control group of its own (cgroup), below one parent
group for all users; the kernel enforces the limits written there:

- **memory**: past its limit a group's memory is reclaimed, then the kernel's OOM
  killer ends the *largest process of that group* (typically the kernel that
  allocated): never the hub, PostgreSQL, or another user. Swap is counted in the
  limit, so it cannot be used to go past it. The users' parent group is limited to
  the machine's memory minus what is reserved for the hub and its services, so even
  all users together cannot push them into the machine's own OOM killer.
- **CPU**: a hard cap in cores (CFS quota), and equal weights, so users busy at once
  share the cores evenly and, all together, weigh as one process against the hub's.
- **processes**: a cap on processes and threads (a fork bomb stops there).

Three backends, chosen by :func:`detect_backend`:

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

The module keeps pure builders (``make_*``: what to write where, the command line)
apart from the code that touches the machine (:class:`CgroupV1`, :class:`CgroupV2`,
:class:`SystemdScopes`), so the builders of every backend are tested anywhere.
"""

from __future__ import annotations

import asyncio
import errno
import hashlib
import os
import re
import shutil
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

GIB = 1024**3
MIB = 1024**2

#: CFS scheduling period (µs) for CPU quotas: the kernel's default, as systemd and Docker use.
CPU_PERIOD_US = 100_000
#: The kernel's smallest CFS quota (µs).
MIN_CPU_QUOTA_US = 1_000
#: v1 ``cpu.shares`` / v2 ``cpu.weight`` of every user's group: equal, the kernel's default.
CPU_SHARES_V1 = 1024
CPU_WEIGHT_V2 = 100

#: v1 controllers a user's group is made in (those mounted); cpuacct only measures.
V1_CONTROLLERS = ("memory", "cpu", "cpuacct", "pids")
#: v2 controllers the users' parent enables for its children.
V2_CONTROLLERS = ("memory", "cpu", "pids")

BACKENDS = ("systemd", "cgroup2", "cgroup1", "none")
LIMIT_KEYS = ("mem_limit", "cpu_limit", "pids_limit")

_BYTE_UNITS = {"K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}


class CgroupError(RuntimeError):
    """A limit could not be set up or removed; the message says what and what to do."""


# ----------------------------------------------------------------------- limits


@dataclass(frozen=True)
class Limits:
    """One server's limits. ``None``: no limit of that kind."""

    memory: int | None = None  #: bytes (memory and swap together)
    cpu: float | None = None  #: cores (0.5: half of one core)
    pids: int | None = None  #: processes and threads

    def describe(self) -> str:
        """``memory 2.0 GiB, CPU 1.5 cores, 4096 processes`` (pure)."""
        parts = [f"memory {self.memory / GIB:.1f} GiB" if self.memory else "memory unlimited",
                 f"CPU {self.cpu:g} cores" if self.cpu else "CPU uncapped",
                 f"{self.pids} processes" if self.pids else "processes unlimited"]
        return ", ".join(parts)


def parse_bytes(value) -> int | None:
    """Bytes of ``value`` as JupyterHub's ``mem_limit`` reads it (``"2G"``, ``"512M"``, an int;
    K/M/G/T are powers of 1024). 0 or None: no limit (pure)."""
    if value is None:
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        number = int(value)
    else:
        text = str(value).strip()
        match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([KMGT])?", text, re.IGNORECASE)
        if not match:
            raise ValueError(f"{value!r} is not a memory size: write e.g. 2G, 512M or a number of bytes")
        number = int(float(match.group(1)) * _BYTE_UNITS.get((match.group(2) or "").upper(), 1))
    if number < 0:
        raise ValueError(f"{value!r} is negative")
    return number or None


def parse_limit_entry(entry: dict) -> dict:
    """``{"mem_limit": "2G", "cpu_limit": 1, "pids_limit": 512}`` checked and in base units (pure).

    Keys may be left out; a value of 0 or None means "no limit of this kind".
    """
    if not isinstance(entry, dict):
        raise ValueError(f"{entry!r} is not a dict of {', '.join(LIMIT_KEYS)}")
    unknown = sorted(set(entry) - set(LIMIT_KEYS))
    if unknown:
        raise ValueError(f"unknown key(s) {', '.join(map(repr, unknown))}: use {', '.join(LIMIT_KEYS)}")
    parsed = {}
    if "mem_limit" in entry:
        parsed["mem_limit"] = parse_bytes(entry["mem_limit"])
    if "cpu_limit" in entry:
        cpu = entry["cpu_limit"]
        if cpu is not None and (isinstance(cpu, bool) or not isinstance(cpu, (int, float)) or cpu < 0):
            raise ValueError(f"cpu_limit {cpu!r} is not a number of cores (e.g. 0.5, 2)")
        parsed["cpu_limit"] = float(cpu) if cpu else None
    if "pids_limit" in entry:
        pids = entry["pids_limit"]
        if pids is not None and (isinstance(pids, bool) or not isinstance(pids, int) or pids < 0):
            raise ValueError(f"pids_limit {pids!r} is not a number of processes")
        parsed["pids_limit"] = pids or None
    return parsed


def resolve_limits(base: Limits, overrides: dict, username: str, groups=()) -> Limits:
    """The limits of ``username`` given ``overrides`` (``{"alice": {...}, "group:phd": {...}}``) (pure).

    For each kind of limit, the user's own entry wins; otherwise the most generous
    value among the user's groups that set it (no limit beats any limit); otherwise
    ``base``. The same rule as the bucket quota overrides (``Quotas``).
    """
    own = parse_limit_entry(overrides.get(username, {}))
    from_groups = [parse_limit_entry(overrides[f"group:{g}"]) for g in sorted(groups) if f"group:{g}" in overrides]
    values = {"mem_limit": base.memory, "cpu_limit": base.cpu, "pids_limit": base.pids}
    for key in LIMIT_KEYS:
        if key in own:
            values[key] = own[key]
            continue
        candidates = [entry[key] for entry in from_groups if key in entry]
        if candidates:
            values[key] = None if None in candidates else max(candidates)
    return Limits(memory=values["mem_limit"], cpu=values["cpu_limit"], pids=values["pids_limit"])


def memory_total(meminfo: str | None = None) -> int:
    """Bytes of the machine's memory (``MemTotal`` of ``/proc/meminfo``)."""
    if meminfo is None:
        meminfo = Path("/proc/meminfo").read_text()
    for line in meminfo.splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024
    raise CgroupError("/proc/meminfo has no MemTotal line")


def default_memory_limit(total: int) -> int:
    """A user's default memory limit: a quarter of the machine's memory, in whole MiB (pure)."""
    return total // 4 // MIB * MIB


def default_reserved_memory(total: int) -> int:
    """Memory kept for the hub and its services: 10 %, at least 2 GiB, at most half (pure)."""
    return min(max(2 * GIB, total // 10), total // 2) // MIB * MIB


def make_group_name(username: str, server_name: str = "") -> str:
    """The name of a server's group: the username, ``alice-<server>`` for a named server (pure).

    Usernames are letters and digits (naming.py), so the dash cannot make two users'
    names meet; a server name with other characters is replaced by a digest.
    """
    if not server_name:
        return username
    if re.fullmatch(r"[A-Za-z0-9_.]{1,64}", server_name) and server_name not in (".", ".."):
        return f"{username}-{server_name}"
    return f"{username}-{hashlib.sha256(server_name.encode()).hexdigest()[:16]}"


# ------------------------------------------------------------------ where the groups live


@dataclass
class Mounts:
    """Where the cgroup file systems are mounted, from ``/proc/self/mountinfo``."""

    v1: dict[str, str] = field(default_factory=dict)  #: controller -> mount point
    v2: str | None = None  #: mount point of the unified hierarchy


def parse_mountinfo(text: str) -> Mounts:
    """The cgroup mounts of a ``/proc/self/mountinfo`` text (pure).

    A v1 hierarchy may carry several controllers (``cpu,cpuacct``): each maps to it.
    """
    mounts = Mounts()
    for line in text.splitlines():
        left, sep, right = line.partition(" - ")
        if not sep:
            continue
        fields, tail = left.split(), right.split()
        if len(fields) < 5 or len(tail) < 3:
            continue
        mount_point, fstype, options = fields[4], tail[0], tail[2]
        if fstype == "cgroup2" and mounts.v2 is None:
            mounts.v2 = mount_point
        elif fstype == "cgroup":
            for option in options.split(","):
                if option in V1_CONTROLLERS and option not in mounts.v1:
                    mounts.v1[option] = mount_point
    return mounts


def parse_proc_cgroup(text: str) -> tuple[dict[str, str], str | None]:
    """A process's cgroups from ``/proc/PID/cgroup``: ``({v1 controller: path}, v2 path)`` (pure)."""
    v1, v2 = {}, None
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, path = parts
        if controllers == "":
            v2 = path
        for controller in controllers.split(","):
            if controller in V1_CONTROLLERS:
                v1[controller] = path
    return v1, v2


def choose_backend(mounts: Mounts, systemd_running: bool, v2_controllers: set[str], euid: int,
                   writable=lambda path: True) -> tuple[str, str]:
    """``(backend, why)`` for this machine (pure, given what was read; see :func:`detect_backend`).

    ``why`` says in a sentence why no backend fits when the answer is ``none``.
    """
    if euid != 0:
        return "none", "the hub does not run as root, so it cannot set up cgroups"
    if systemd_running:
        return "systemd", ""
    if mounts.v2 is not None and "memory" in v2_controllers and writable(mounts.v2):
        return "cgroup2", ""
    if "memory" in mounts.v1 and writable(mounts.v1["memory"]):
        return "cgroup1", ""
    if mounts.v2 is None and "memory" not in mounts.v1:
        return "none", "no cgroup file system with the memory controller is mounted (/sys/fs/cgroup)"
    return "none", "the cgroup file system is read-only here (a container without its own cgroups?)"


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


# -------------------------------------------------------------------------- builders


@dataclass(frozen=True)
class Write:
    """One value to write into one file of a group, in order."""

    file: str
    value: str
    optional: bool = False  #: skipped when the kernel does not have the file (e.g. no swap accounting)


def make_cpu_quota(cores: float | None) -> int | None:
    """CFS quota in µs per :data:`CPU_PERIOD_US` for ``cores`` (None: no cap) (pure)."""
    if not cores:
        return None
    return max(MIN_CPU_QUOTA_US, round(cores * CPU_PERIOD_US))


def make_v1_writes(limits: Limits) -> dict[str, list[Write]]:
    """What to write into a user's v1 groups, per controller, in order (pure).

    Memory: the swap-inclusive limit (``memsw``) is lifted first, because it may never
    be below ``limit_in_bytes`` (a reused group may hold an older, lower one); then
    both are set to the limit, so memory plus swap stays under it. The OOM killer
    stays on (``oom_control`` untouched): over the limit the kernel ends the group's
    largest process.
    """
    memory = str(limits.memory) if limits.memory else "-1"
    quota = make_cpu_quota(limits.cpu)
    return {
        "memory": [Write("memory.memsw.limit_in_bytes", "-1", optional=True),
                   Write("memory.limit_in_bytes", memory),
                   Write("memory.memsw.limit_in_bytes", memory, optional=True)],
        "cpu": [Write("cpu.cfs_period_us", str(CPU_PERIOD_US)),
                Write("cpu.cfs_quota_us", str(quota) if quota else "-1"),
                Write("cpu.shares", str(CPU_SHARES_V1))],
        "cpuacct": [],
        "pids": [Write("pids.max", str(limits.pids) if limits.pids else "max")],
    }


def make_v1_parent_writes(users_memory: int | None) -> dict[str, list[Write]]:
    """What to write into the users' parent v1 groups (pure): all users' memory together."""
    memory = str(users_memory) if users_memory else "-1"
    return {"memory": [Write("memory.use_hierarchy", "1", optional=True),
                       Write("memory.memsw.limit_in_bytes", "-1", optional=True),
                       Write("memory.limit_in_bytes", memory),
                       Write("memory.memsw.limit_in_bytes", memory, optional=True)]}


def make_v2_writes(limits: Limits) -> list[Write]:
    """What to write into a user's v2 group, in order (pure).

    No swap at all (``memory.swap.max`` 0), the v2 way of keeping swap from going past
    the memory limit; ``memory.oom.group`` 0 so the OOM killer ends the largest
    process, not every process of the group (the server survives its kernel).
    """
    quota = make_cpu_quota(limits.cpu)
    return [Write("memory.max", str(limits.memory) if limits.memory else "max"),
            Write("memory.swap.max", "0" if limits.memory else "max", optional=True),
            Write("memory.oom.group", "0", optional=True),
            Write("cpu.max", f"{quota if quota else 'max'} {CPU_PERIOD_US}"),
            Write("cpu.weight", str(CPU_WEIGHT_V2)),
            Write("pids.max", str(limits.pids) if limits.pids else "max")]


def make_v2_parent_writes(users_memory: int | None) -> list[Write]:
    """What to write into the users' v2 parent (pure): all users' memory together."""
    return [Write("memory.max", str(users_memory) if users_memory else "max")]


def make_v2_subtree_control(available: set[str]) -> str:
    """The ``cgroup.subtree_control`` line enabling our controllers among ``available`` (pure)."""
    return " ".join(f"+{c}" for c in V2_CONTROLLERS if c in available)


def make_systemd_unit(slice_name: str, group: str) -> str:
    """The transient scope of a server: ``enertef-alice.scope`` in ``enertef.slice`` (pure)."""
    return f"{slice_name.removesuffix('.slice')}-{group}.scope"


def make_systemd_properties(limits: Limits) -> list[str]:
    """systemd resource-control properties of a server's scope (pure)."""
    props = []
    if limits.memory:
        props += [f"MemoryMax={limits.memory}", "MemorySwapMax=0"]
    if limits.cpu:
        props.append(f"CPUQuota={make_cpu_quota(limits.cpu) * 100 // CPU_PERIOD_US}%")
    props.append(f"TasksMax={limits.pids if limits.pids else 'infinity'}")
    return props


def make_systemd_run_prefix(unit: str, slice_name: str, limits: Limits, uid: int | None = None,
                            gid: int | None = None) -> list[str]:
    """The ``systemd-run --scope`` words put before the server's command (pure).

    In scope mode systemd-run registers the scope, moves itself in, drops to the
    user's uid and gid (``--uid``/``--gid``, with the user's groups) and execs the
    command: the server keeps the pid the spawner started, and everything it starts
    is in the scope. ``--collect``: a scope whose server failed is not left behind.
    """
    words = ["systemd-run", "--scope", "--quiet", "--collect", f"--unit={unit}", f"--slice={slice_name}"]
    if uid is not None:
        words += [f"--uid={uid}", f"--gid={gid}"]
    for prop in make_systemd_properties(limits):
        words += ["--property", prop]
    return [*words, "--"]


def make_systemd_slice_command(slice_name: str, users_memory: int | None) -> list[str]:
    """``systemctl set-property`` of the users' slice: all users' memory together (pure)."""
    return ["systemctl", "set-property", "--runtime", slice_name,
            f"MemoryMax={users_memory if users_memory else 'infinity'}"]


# ----------------------------------------------------------------------------- usage


@dataclass
class Usage:
    """What a server's group uses now (None: not measured by this backend)."""

    group: str
    memory: int | None = None  #: bytes in use, without reclaimable file cache (as ``kubectl top``)
    memory_limit: int | None = None
    cpu_seconds: float | None = None  #: CPU time used since the group was made
    cpu_cores: float | None = None  #: cores in use now (over a short sample)
    cpu_limit: float | None = None
    pids: int | None = None
    pids_limit: int | None = None
    oom_kills: int | None = None  #: processes the kernel ended at the memory limit

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def parse_flat_keyed(text: str) -> dict[str, int]:
    """``key value`` lines (``memory.stat``, ``cpu.stat``, ``memory.events``) as ints (pure)."""
    values = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].lstrip("-").isdigit():
            values[parts[0]] = int(parts[1])
    return values


def parse_limit_value(text: str, unlimited_above: int = 2**62) -> int | None:
    """A limit file's value: ``max``, ``-1`` or a huge page-rounded number mean none (pure)."""
    text = text.strip()
    if text in ("max", "-1", "") or not text.lstrip("-").isdigit():
        return None
    value = int(text)
    return None if value < 0 or value >= unlimited_above else value


# ------------------------------------------------------------------- the side effects


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


def _kill_all(pids: list[int]):
    # Stop all first, then kill: a process forking while its siblings die is caught
    # stopped, and the next round kills what it made.
    for sig in (signal.SIGSTOP, signal.SIGKILL):
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass


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
            _kill_all(pids)
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
