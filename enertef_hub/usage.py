"""Who holds how much: sizes in PostgreSQL and MinIO, bucket quotas, PostgreSQL's soft limit.

MinIO enforces a *hard bucket quota* itself (its admin API, ``mc admin bucket quota``):
a write that would take a bucket past its quota fails with MinIO's own error
``XMinioAdminBucketQuotaExceeded`` ("Bucket quota exceeded"). Every user's bucket and
every team's bucket gets one at each spawn, from the settings below.

PostgreSQL has no per-schema quota, so a store's size is only *reported* against
a soft limit (``enertef-hub usage`` flags stores over it); an admin decides.

On one machine the report also has what each running server uses now (memory, CPU
and processes, read from its cgroup: :mod:`.cgroups`) and each home's size on disk,
flagged above ``Quotas.home_soft_limit``; :func:`home_quota_status` says whether the
home file system could enforce quotas itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import stat
import time
from datetime import datetime, timezone

from traitlets import Dict, Unicode, validate
from traitlets.config import LoggingConfigurable
from traitlets import TraitError

from .provisioners import pg_reads

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]i?B?|B)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "B": 1, "K": 1000, "M": 1000**2, "G": 1000**3, "T": 1000**4,
          "KI": 1024, "MI": 1024**2, "GI": 1024**3, "TI": 1024**4}


def parse_size(text: str | int) -> int:
    """Bytes of a size such as ``"2GiB"``, ``"500MB"``, ``"1024"`` or ``0`` (pure). 0 means no limit."""
    if isinstance(text, int):
        return text
    match = _SIZE.match(str(text))
    if not match:
        raise ValueError(f"{text!r} is not a size: write e.g. 2GiB, 500MiB, 1GB or a number of bytes")
    unit = (match.group(2) or "").upper().removesuffix("B")
    return int(float(match.group(1)) * _UNITS[unit])


def format_size(size: int | None) -> str:
    """``1.5 GiB``-style text for a byte count (pure)."""
    if size is None:
        return "-"
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError


class Quotas(LoggingConfigurable):
    """Bucket quotas (enforced by MinIO) and the PostgreSQL soft limit (reported)."""

    user_bucket_quota = Unicode(
        "2GiB",
        config=True,
        help="""Hard quota of each user's bucket, enforced by MinIO: an upload that would
        take the bucket past it fails with MinIO's ``XMinioAdminBucketQuotaExceeded``.
        A size such as ``2GiB``, ``500MiB`` or ``1GB``; ``0`` for no quota. Overridable
        per user or per group in ``user_bucket_quota_overrides``. Applied at each spawn.""",
    )

    team_bucket_quota = Unicode(
        "10GiB",
        config=True,
        help="""Hard quota of each team's bucket (``team-<name>``), enforced by MinIO
        like ``user_bucket_quota``; ``0`` for no quota. Overridable per team in
        ``team_bucket_quota_overrides``.""",
    )

    user_bucket_quota_overrides = Dict(
        config=True,
        help="""Per-user or per-group exceptions to ``user_bucket_quota``:
        ``{"alice": "20GiB", "group:phd": "10GiB"}``. A user's own entry wins;
        otherwise the largest quota among the groups (``group:<JupyterHub group>``)
        the user belongs to; otherwise the default.""",
    )

    team_bucket_quota_overrides = Dict(
        config=True,
        help="""Per-team exceptions to ``team_bucket_quota``: ``{"vision": "50GiB"}``.""",
    )

    home_soft_limit = Unicode(
        "10GiB",
        config=True,
        help="""Size of a user's home (single machine: the disk space its files take)
        above which ``enertef-hub usage`` and the admins' accounts page flag it. Nothing is
        refused: see docs/single-machine.md for file-system quotas. ``0`` disables the flag.""",
    )

    postgres_soft_limit = Unicode(
        "1GiB",
        config=True,
        help="""Size of one MLflow store (a user's or team's schema, tables with their
        indexes) above which ``enertef-hub usage`` flags it. PostgreSQL has no per-schema
        quota, so nothing is refused: the admin decides. ``0`` disables the flag.""",
    )

    @validate("user_bucket_quota", "team_bucket_quota", "postgres_soft_limit", "home_soft_limit")
    def _valid_size(self, proposal):
        try:
            parse_size(proposal["value"])
        except ValueError as exc:
            raise TraitError(f"Quotas.{proposal['trait'].name}: {exc}") from None
        return proposal["value"]

    @validate("user_bucket_quota_overrides", "team_bucket_quota_overrides")
    def _valid_overrides(self, proposal):
        for key, value in proposal["value"].items():
            try:
                parse_size(value)
            except ValueError as exc:
                raise TraitError(f"Quotas.{proposal['trait'].name}[{key!r}]: {exc}") from None
        return proposal["value"]

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._applied: dict[str, int] = {}  #: bucket -> quota this process set or found

    def user_quota(self, username: str, groups=()) -> int:
        """Bytes of ``username``'s bucket quota (0: none), given the user's JupyterHub groups."""
        overrides = self.user_bucket_quota_overrides
        if username in overrides:
            return parse_size(overrides[username])
        from_groups = [parse_size(overrides[f"group:{g}"]) for g in groups if f"group:{g}" in overrides]
        if from_groups:
            return 0 if 0 in from_groups else max(from_groups)
        return parse_size(self.user_bucket_quota)

    def team_quota(self, team: str) -> int:
        """Bytes of ``team``'s bucket quota (0: none)."""
        return parse_size(self.team_bucket_quota_overrides.get(team, self.team_bucket_quota))

    # -- applying them -----------------------------------------------------------------

    async def ensure(self, minio, bucket_quotas: dict[str, int]):
        """Give each bucket its quota (``{bucket: bytes}``, 0 clears it); only what differs is sent.

        What this process applied is remembered, so a returning user's spawn costs no
        admin call (a quota changed by hand is put back at the next hub start).
        """
        todo = {b: size for b, size in bucket_quotas.items() if self._applied.get(b) != size}
        if todo:
            await minio.set_bucket_quotas(todo)
            self._applied.update(todo)


# -- the usage report ------------------------------------------------------------------


async def store_size(conn, schema: str, member_of=None) -> tuple[int, datetime | None]:
    """Bytes of a schema's tables (with indexes and TOAST), and its latest MLflow run time.

    Sizes come from the catalogue; reading the runs needs the privileges of the
    schema's owner: ``member_of(conn, role)`` (``PostgresProvisioner.reader_of``) gives
    the admin role membership in it for that read only. None: the connection has them.
    The read runs nothing the store's owner made (:mod:`.provisioners.pg_reads`): a
    ``runs`` table that is not MLflow's plain table gives no time.
    """
    cur = await conn.execute(
        "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c"
        " JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relkind IN ('r', 'm')",
        (schema,),
    )
    size = int((await cur.fetchone())[0])
    cur = await conn.execute(
        "SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = %s AND c.relname = 'runs' AND c.relkind IN ('r', 'p')", (schema,))
    last = None
    if await cur.fetchone() is not None:
        async with (member_of(conn, schema) if member_of else contextlib.nullcontext()):  # role = schema name
            millis = await pg_reads.read_latest_run_millis(conn, schema)
        if isinstance(millis, int) and millis:
            last = datetime.fromtimestamp(millis / 1000, timezone.utc)
    return size, last


async def collect_usage(workbench) -> list[dict]:
    """One row per user incarnation that still holds data (active or kept) and per team."""
    quotas: Quotas = workbench.quotas
    soft = parse_size(quotas.postgres_soft_limit)
    rows = []
    async with workbench.postgres.connection() as conn:
        holdings = await workbench.holdings(conn)
        entries = []
        for user in holdings.users_with_data():
            entries.append(("user", user.username, user.incarnation, user.state, user.resources.schema,
                            user.resources.bucket, user.row.get("updated_at") or user.row.get("created_at"), None))
        for team in holdings.teams:
            entries.append(("team", team.team, None, "team", team.resources.schema, team.resources.bucket, None,
                            list(team.members)))
        for kind, name, incarnation, state, schema, bucket, changed, members in entries:
            pg_bytes, last_run = await store_size(conn, schema, workbench.postgres.reader_of)
            rows.append({"kind": kind, "name": name, "incarnation": incarnation, "state": state,
                         "schema": schema, "bucket": bucket, "postgres_bytes": pg_bytes,
                         "postgres_over_soft_limit": bool(soft) and pg_bytes > soft,
                         "_times": [t for t in (changed, last_run) if t], "members": members})
    servers, homes = await asyncio.to_thread(
        local_usage, workbench.config, [r["name"] for r in rows if r["kind"] == "user" and r["state"] == "active"])
    home_soft = parse_size(quotas.home_soft_limit)
    for row in rows:
        if row["kind"] == "user" and row["state"] == "active":
            row["server"] = servers.get(row["name"])
            home = homes.get(row["name"])
            row.update(home_bytes=home, home_over_soft_limit=bool(home_soft) and home is not None and home > home_soft)
    for row in rows:
        size, count, last_write, quota = await workbench.minio.bucket_usage(row["bucket"])
        times = row.pop("_times") + ([last_write] if last_write else [])
        row.update(minio_bytes=size, objects=count, bucket_quota=quota or None,
                   last_activity=max(times).isoformat(timespec="seconds") if times else None)
        if row["members"] is None:
            del row["members"]
    return rows


def format_usage(rows: list[dict], soft_limit: str) -> str:
    """The usage table a person reads (``enertef-hub usage``)."""
    header = (f"{'kind':5} {'name':20} {'inc':>3} {'state':8} {'postgres':>10} {'minio':>10} {'objects':>8}"
              f" {'quota':>10} {'home':>10}  {'memory now':>21} {'cpu now':>12}  last activity")
    lines = [header]
    for r in rows:
        flag = "!" if r["postgres_over_soft_limit"] else " "
        home_flag = "!" if r.get("home_over_soft_limit") else " "
        lines.append(
            f"{r['kind']:5} {r['name'][:20]:20} {r['incarnation'] or '':>3} {r['state']:8}"
            f" {format_size(r['postgres_bytes']):>9}{flag} {format_size(r['minio_bytes']):>10}"
            f" {'-' if r['objects'] is None else r['objects']:>8} {format_size(r['bucket_quota']) if r['bucket_quota'] else 'none':>10}"
            f" {format_size(r.get('home_bytes')):>9}{home_flag} {format_memory(r.get('server')):>21}"
            f" {format_cpu(r.get('server')):>12}  {r['last_activity'] or '-'}")
    if any(r["postgres_over_soft_limit"] for r in rows):
        lines.append(f"! store larger than the PostgreSQL soft limit ({soft_limit}, Quotas.postgres_soft_limit)")
    if any(r.get("home_over_soft_limit") for r in rows):
        lines.append("! home larger than its soft limit (Quotas.home_soft_limit)")
    if any((r.get("server") or {}).get("oom_kills") for r in rows):
        lines.append("* the kernel ended processes of this server at its memory limit (OOM kills since it started)")
    return "\n".join(lines)


# -- servers and homes on one machine ------------------------------------------------------


def format_memory(server: dict | None) -> str:
    """``1.2 GiB / 6.0 GiB`` of a running server (``-``: not running here) (pure)."""
    if not server or server.get("memory") is None:
        return "-"
    limit = format_size(server["memory_limit"]) if server.get("memory_limit") else "no limit"
    return f"{format_size(server['memory'])} / {limit}{'*' if server.get('oom_kills') else ''}"


def format_cpu(server: dict | None) -> str:
    """``0.35 / 1 CPU`` of a running server: cores in use now, and its cap (pure)."""
    if not server or server.get("cpu_cores") is None:
        return "-"
    cap = f"{server['cpu_limit']:g}" if server.get("cpu_limit") else "-"
    return f"{server['cpu_cores']:.2f} / {cap} CPU"


def _local_settings(config) -> dict:
    """The single-machine spawner's settings the report needs, from the hub's config."""
    section = config.EnerTEFLocalSpawner if config is not None else {}
    return {"backend": section.get("cgroup_backend", "auto"), "parent": section.get("cgroup_parent", "enertef"),
            "home_root": section.get("home_root", "/home"), "run_as_hub_user": section.get("run_as_hub_user", False)}


def server_usage(config, usernames=None, interval: float = 0.3) -> dict[str, dict]:
    """What each user's running servers use now, read from their cgroups: ``{username: {...}}``.

    Memory in bytes (without reclaimable file cache), CPU in cores over ``interval``
    seconds, processes, the limits, and the OOM kills since the server started. A
    user with named servers gets their sums. Empty where no cgroup backend works
    (Kubernetes, or a hub not run as root). Blocks ``interval`` seconds.
    """
    from . import cgroups
    from .errors import ConfigurationError
    from .localspawner import make_limits_backend

    settings = _local_settings(config)
    try:
        backend = make_limits_backend(settings["backend"], settings["parent"])
    except ConfigurationError:
        return {}
    groups = backend.groups()
    if usernames is not None:
        wanted = set(usernames)
        groups = [g for g in groups if g.split("-", 1)[0] in wanted]
    per_user: dict[str, dict] = {}
    for group, usage in cgroups.sample_usage(backend, groups, interval).items():
        user = group.split("-", 1)[0]
        found = usage.as_dict()
        del found["group"]
        if user not in per_user:
            per_user[user] = found
            continue
        total = per_user[user]
        for key in ("memory", "cpu_seconds", "cpu_cores", "pids", "oom_kills"):
            if found[key] is not None:
                total[key] = (total[key] or 0) + found[key]
    return per_user


def home_size(path: str) -> int | None:
    """Disk space a home's files take, in bytes (None: no such folder).

    Counted as ``du`` does (allocated blocks; a hard-linked file once), without
    following symbolic links or crossing into another file system.
    """
    try:
        top = os.lstat(path)
    except OSError:
        return None
    if not stat.S_ISDIR(top.st_mode):
        return None
    total, seen, pending = top.st_blocks * 512, set(), [path]
    while pending:
        try:
            entries = list(os.scandir(pending.pop()))
        except OSError:
            continue  # gone meanwhile, or unreadable
        for entry in entries:
            try:
                info = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            if info.st_dev != top.st_dev:
                continue
            if info.st_nlink > 1 and not stat.S_ISDIR(info.st_mode):
                if (info.st_dev, info.st_ino) in seen:
                    continue
                seen.add((info.st_dev, info.st_ino))
            total += info.st_blocks * 512
            if stat.S_ISDIR(info.st_mode):
                pending.append(entry.path)
    return total


#: Home sizes measured lately: path -> (when, bytes). Walking a large home takes a while,
#: so the accounts page reuses a size for HOME_SIZE_MAX_AGE seconds.
_home_sizes: dict[str, tuple[float, int | None]] = {}
HOME_SIZE_MAX_AGE = 300.0


def home_sizes(config, usernames, max_age: float = 0.0) -> dict[str, int]:
    """Each user's home size in bytes (users without a home on this machine are left out)."""
    from .localspawner import make_home_dir

    settings = _local_settings(config)
    sizes = {}
    now = time.monotonic()
    for name in usernames:
        path = make_home_dir(settings["home_root"], name, settings["run_as_hub_user"])
        cached = _home_sizes.get(path)
        if cached is None or now - cached[0] > max_age:
            cached = _home_sizes[path] = (now, home_size(path))
        if cached[1] is not None:
            sizes[name] = cached[1]
    return sizes


def local_usage(config, usernames, max_age: float = 0.0) -> tuple[dict[str, dict], dict[str, int]]:
    """``(server_usage, home_sizes)`` of ``usernames`` on this machine (blocks; run in a thread)."""
    return server_usage(config, usernames), home_sizes(config, usernames, max_age)


#: Mount options that mean the file system enforces per-user or per-project quotas.
QUOTA_OPTIONS = {"usrquota", "usrjquota", "quota", "grpquota", "grpjquota", "prjquota", "pquota", "uquota"}


def parse_home_mount(mountinfo: str, path: str) -> tuple[str, str, set[str]]:
    """``(mount point, file system type, options)`` of the mount holding ``path`` (pure)."""
    best = ("/", "", set())
    for line in mountinfo.splitlines():
        left, sep, right = line.partition(" - ")
        fields, tail = left.split(), right.split()
        if not sep or len(fields) < 6 or len(tail) < 3:
            continue
        point = fields[4]
        inside = path == point or path.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= len(best[0]):
            best = (point, tail[0], set(fields[5].split(",")) | set(tail[2].split(",")))
    return best


def home_quota_status(config) -> str:
    """A sentence saying whether the homes' file system enforces quotas (single machine)."""
    home_root = _local_settings(config)["home_root"]
    try:
        with open("/proc/self/mountinfo", encoding="utf-8") as f:
            point, fstype, options = parse_home_mount(f.read(), os.path.realpath(home_root))
    except OSError:
        return "Whether the homes' file system has quotas is unknown here."
    if options & QUOTA_OPTIONS:
        return (f"Homes are on {fstype} at {point}, mounted with quotas "
                f"({', '.join(sorted(options & QUOTA_OPTIONS))}): set them with setquota.")
    return (f"Homes are on {fstype} at {point}, mounted without quotas: sizes are reported and"
            " flagged, nothing is refused.")
