"""Admin reports on a running system: ``enertef-hub check`` and its revocation audit.

They only read (the catalogue, MinIO's admin API) and change nothing; what they find
is for an admin to look at. Kept apart from :class:`~.workbench.Workbench`, whose job
is each account's lifecycle: a report looks at every account and team at once.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from .provisioners.postgres import judge_server_release

if TYPE_CHECKING:
    from .workbench import Workbench


async def audit(workbench: Workbench) -> list[str]:
    """Everything the revocation sweeps would remove now, in every store and bucket.

    Grants, default privileges, ``SECURITY DEFINER`` functions, foreign-owned
    objects and role memberships in users' and teams' schemas; bucket policies
    and other bucket settings; users' service accounts. Empty on a clean system.
    """
    postgres, minio = workbench.postgres, workbench.minio
    findings = []
    async with postgres.connection() as conn:
        holdings = await workbench.holdings(conn)
        users, teams = holdings.users_with_data(), holdings.teams
        # One pass over the catalogue first; the detailed plan only where it found something.
        flagged = await postgres.audit_candidates(conn)
        for user in users:
            if flagged & {user.resources.schema, user.resources.role}:
                findings += [f"user {user.username}: {f}" for f in await postgres.audit_user(conn, user.resources)]
        for team in teams:
            if flagged & {team.resources.schema, team.resources.role}:
                findings += [f"team {team.team}: {f}" for f in await postgres.audit_team(conn, team.resources)]
    # Bucket policies (what makes a bucket anonymous); a sweep also removes
    # lifecycle, notification and replication settings, which only an admin
    # (or allow_bucket_settings) can make.
    owners = {user.resources.bucket: f"user {user.username}" for user in users}
    owners.update({team.resources.bucket: f"team {team.team}" for team in teams})
    for bucket in await minio.buckets_with_policy(sorted(owners)):
        findings.append(f"{owners[bucket]}: bucket {bucket}: bucket policy")
    # One admin call lists every user's service accounts and STS credentials.
    keys = await minio.access_keys()
    for user in users:
        findings += [f"user {user.username}: {kind} {key}" for kind, key in keys.get(user.resources.minio_user, [])]
    return findings


async def check(workbench: Workbench) -> list[tuple[str, bool | None, str]]:
    """Connectivity and configuration checks: ``(what, ok, detail)`` rows (ok None: a finding to look at)."""
    postgres, minio = workbench.postgres, workbench.minio
    rows = []
    rows.append(("secret key", len(workbench.secret_key) >= 32,
                 "set" if len(workbench.secret_key) >= 32 else "ENERTEF_SECRET_KEY missing or too short"))
    try:
        started = time.perf_counter()
        async with postgres.connection() as conn:
            cur = await conn.execute(
                "SELECT current_user, version(), r.rolsuper OR r.rolcreaterole,"
                " r.rolsuper OR d.datdba = r.oid, current_setting('server_version_num')::int"
                " FROM pg_roles r, pg_database d"
                " WHERE r.rolname = current_user AND d.datname = current_database()"
            )
            user, version, can_create_roles, owns_database, version_num = await cur.fetchone()
        rows.append(("postgresql", True, f"{postgres.display_address} as {user}:"
                     f" {version.split(',')[0]} ({(time.perf_counter() - started) * 1000:.1f} ms)"))
        rows.append(("postgresql release", *judge_server_release(version_num)))
        rows.append(("postgresql privileges", can_create_roles and owns_database,
                     "CREATEROLE and owner of the MLflow database" if can_create_roles and owns_database
                     else f"{user} needs CREATEROLE and must own the database"
                          f" (ALTER ROLE {user} CREATEROLE; ALTER DATABASE ... OWNER TO {user})"))
    except Exception as exc:
        rows.append(("postgresql", False, str(exc)))
    try:
        started = time.perf_counter()
        version = await minio.check()
        rows.append(("minio", True, f"{minio.endpoint}: {version}"
                     f" ({(time.perf_counter() - started) * 1000:.1f} ms)"))
    except Exception as exc:
        rows.append(("minio", False, str(exc)))
    try:
        findings = await audit(workbench)
        rows.append(("revocation audit", True if not findings else None,
                     "nothing a revocation sweep would remove" if not findings else
                     f"{len(findings)} found (removed by the next revocation of their user or team):\n    "
                     + "\n    ".join(findings)))
    except Exception as exc:
        rows.append(("revocation audit", False, str(exc)))
    return rows
