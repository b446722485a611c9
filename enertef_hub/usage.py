"""Who holds how much: sizes in PostgreSQL and MinIO, bucket quotas, PostgreSQL's soft limit.

MinIO enforces a *hard bucket quota* itself (its admin API, ``mc admin bucket quota``):
a write that would take a bucket past its quota fails with MinIO's own error
``XMinioAdminBucketQuotaExceeded`` ("Bucket quota exceeded"). Every user's bucket and
every team's bucket gets one at each spawn, from the settings below.

PostgreSQL has no per-schema quota, so a store's size is only *reported* against
a soft limit (``enertef-hub usage`` flags stores over it); an admin decides.
"""

from __future__ import annotations

import contextlib
import re
from datetime import datetime, timezone

from traitlets import Dict, Unicode, validate
from traitlets.config import LoggingConfigurable
from traitlets import TraitError

from .naming import make_team_resources, make_user_resources
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

    postgres_soft_limit = Unicode(
        "1GiB",
        config=True,
        help="""Size of one MLflow store (a user's or team's schema, tables with their
        indexes) above which ``enertef-hub usage`` flags it. PostgreSQL has no per-schema
        quota, so nothing is refused: the admin decides. ``0`` disables the flag.""",
    )

    @validate("user_bucket_quota", "team_bucket_quota", "postgres_soft_limit")
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
            await minio._run(self._ensure, minio, todo)

    def _ensure(self, minio, bucket_quotas: dict[str, int]):
        _, admin = minio._get_clients()
        for bucket, size in bucket_quotas.items():
            if bucket_quota(admin, bucket) != size:
                admin.bucket_quota_set(bucket, size)
            self._applied[bucket] = size


def bucket_quota(admin, bucket: str) -> int:
    """The bucket's hard quota in bytes as MinIO has it (0: none)."""
    import json

    text = admin.bucket_quota_get(bucket)
    try:
        return int(json.loads(text or "{}").get("quota") or 0)
    except (ValueError, AttributeError):
        return 0


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


def bucket_usage(minio, bucket: str) -> tuple[int | None, int | None, datetime | None, int]:
    """``(bytes, objects, last write, quota)`` of a bucket by listing it; Nones if it is absent."""
    s3, admin = minio._get_clients()
    if not s3.bucket_exists(bucket):
        return None, None, None, 0
    size = count = 0
    last = None
    for obj in s3.list_objects(bucket, recursive=True):
        size += obj.size or 0
        count += 1
        if obj.last_modified and (last is None or obj.last_modified > last):
            last = obj.last_modified
    return size, count, last, bucket_quota(admin, bucket)


async def collect_usage(workbench) -> list[dict]:
    """One row per user incarnation that still holds data (active or kept) and per team."""
    quotas: Quotas = workbench.quotas
    soft = parse_size(quotas.postgres_soft_limit)
    rows = []
    async with workbench.postgres.connection() as conn:
        accounts = [a for a in await workbench._registry.list_all(conn) if a["state"] != "purged"]
        teams = await workbench._registry.team_members(conn)
        entries = []
        for a in accounts:
            res = make_user_resources(a["username"], a["incarnation"])
            entries.append(("user", a["username"], a["incarnation"], a["state"], res.schema, res.bucket,
                            a.get("updated_at") or a.get("created_at"), None))
        for team in sorted(teams):
            res = make_team_resources(team)
            entries.append(("team", team, None, "team", res.schema, res.bucket, None, sorted(teams[team])))
        for kind, name, incarnation, state, schema, bucket, changed, members in entries:
            pg_bytes, last_run = await store_size(conn, schema, workbench.postgres.reader_of)
            rows.append({"kind": kind, "name": name, "incarnation": incarnation, "state": state,
                         "schema": schema, "bucket": bucket, "postgres_bytes": pg_bytes,
                         "postgres_over_soft_limit": bool(soft) and pg_bytes > soft,
                         "_times": [t for t in (changed, last_run) if t], "members": members})
    for row in rows:
        size, count, last_write, quota = await workbench.minio._run(bucket_usage, workbench.minio, row["bucket"])
        times = row.pop("_times") + ([last_write] if last_write else [])
        row.update(minio_bytes=size, objects=count, bucket_quota=quota or None,
                   last_activity=max(times).isoformat(timespec="seconds") if times else None)
        if row["members"] is None:
            del row["members"]
    return rows


def format_usage(rows: list[dict], soft_limit: str) -> str:
    """The usage table a person reads (``enertef-hub usage``)."""
    header = f"{'kind':5} {'name':20} {'inc':>3} {'state':8} {'postgres':>10} {'minio':>10} {'objects':>8} {'quota':>10}  last activity"
    lines = [header]
    for r in rows:
        flag = "!" if r["postgres_over_soft_limit"] else " "
        lines.append(
            f"{r['kind']:5} {r['name'][:20]:20} {r['incarnation'] or '':>3} {r['state']:8}"
            f" {format_size(r['postgres_bytes']):>9}{flag} {format_size(r['minio_bytes']):>10}"
            f" {'-' if r['objects'] is None else r['objects']:>8} {format_size(r['bucket_quota']) if r['bucket_quota'] else 'none':>10}"
            f"  {r['last_activity'] or '-'}")
    if any(r["postgres_over_soft_limit"] for r in rows):
        lines.append(f"! store larger than the PostgreSQL soft limit ({soft_limit}, Quotas.postgres_soft_limit)")
    return "\n".join(lines)
