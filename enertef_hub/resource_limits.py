"""What a user's server may use on one machine, and what enforcing it takes, as plain values.

This module's one job is to decide, from plain inputs, everything about resource
limits that does not touch the machine: the limits themselves (:class:`Limits`,
read from JupyterHub's ``mem_limit``/``cpu_limit``, our ``pids_limit`` and the
per-user or per-group ``limit_overrides``), the defaults that keep the hub and its
services alive, the name of a server's group, which backend a machine gets (given
what was read from it), and what each backend writes or runs (the ``make_*``
builders), and how to read what a group uses. Nothing here reads or writes a file
or starts a process: :mod:`enertef_hub.cgroups` does that with these values. Kept
apart so the rules and the builders of every backend (systemd, cgroup v2, cgroup
v1) are tested anywhere, without root and whatever cgroups the machine has, as
KubeSpawner's ``objects.py`` is tested without a cluster.

What the kernel enforces, per server:

- **memory**: past its limit a group's memory is reclaimed, then the kernel's OOM
  killer ends the *largest process of that group* (typically the kernel that
  allocated): never the hub, PostgreSQL, or another user. Swap is counted in the
  limit, so it cannot be used to go past it. The users' parent group is limited to
  the machine's memory minus what is reserved for the hub and its services, so even
  all users together cannot push them into the machine's own OOM killer.
- **CPU**: a hard cap in cores (CFS quota), and equal weights, so users busy at once
  share the cores evenly and, all together, weigh as one process against the hub's.
- **processes**: a cap on processes and threads (a fork bomb stops there).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field

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


def parse_memory_total(meminfo: str) -> int:
    """Bytes of the machine's memory, from the ``MemTotal`` line of a ``/proc/meminfo`` text (pure)."""
    for line in meminfo.splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024
    raise ValueError("/proc/meminfo has no MemTotal line")


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
    """``(backend, why)`` for this machine (pure, given what was read; see :func:`enertef_hub.cgroups.detect_backend`).

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

