"""MinIO: one user, one policy and one bucket per user; one group per team.

A user's MinIO credentials reach only the user's own bucket (and, with teams, the
team buckets through MinIO groups). MinIO has no transactions, so
:meth:`MinioProvisioner.ensure_user` returns what it created and
:meth:`MinioProvisioner.undo` removes exactly that when a later step fails.

minio-py is synchronous; the async methods run it in a worker thread so the hub's
event loop never waits on HTTP.
"""

from __future__ import annotations

import asyncio
import json
import os
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from urllib.parse import urlsplit

import urllib3
from minio import Minio, MinioAdmin
from minio.credentials import StaticProvider
from minio.deleteobjects import DeleteObject
from minio.error import MinioAdminException, S3Error
from traitlets import Bool, Float, Unicode, default
from traitlets.config import LoggingConfigurable

from ..errors import ConfigurationError, ProvisioningError, ServiceUnavailableError
from ..naming import TeamResources, UserResources
from .minio_admin import FastMinioAdmin


#: Bump when the policies below change: a user whose policy lacks this marker gets
#: the current one at the next spawn (MinIO keeps the statement ids we set).
POLICY_VERSION = "enertefv2"

#: What a user (and a team) may do in their own bucket: objects, nothing about the bucket.
OBJECT_ACTIONS = [
    "s3:GetBucketLocation", "s3:ListBucket", "s3:ListBucketVersions", "s3:ListBucketMultipartUploads",
    "s3:GetObject", "s3:GetObjectVersion", "s3:PutObject", "s3:DeleteObject", "s3:DeleteObjectVersion",
    "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts",
    "s3:GetObjectTagging", "s3:PutObjectTagging", "s3:DeleteObjectTagging",
]

#: Bucket settings that would let a user open their bucket to others (a bucket
#: policy makes it anonymous), send its events or copies elsewhere, or make data
#: expire: denied unless ``MinioProvisioner.allow_bucket_settings``.
BUCKET_SETTING_ACTIONS = [
    "s3:PutBucketPolicy", "s3:DeleteBucketPolicy", "s3:PutLifecycleConfiguration",
    "s3:PutBucketNotification", "s3:PutReplicationConfiguration", "s3:ResetBucketReplicationState",
    "s3:PutBucketVersioning", "s3:PutBucketObjectLockConfiguration", "s3:PutEncryptionConfiguration",
    "s3:PutBucketTagging", "s3:PutBucketCors", "s3:DeleteBucket", "s3:ForceDeleteBucket",
    "s3:BypassGovernanceRetention", "s3:PutObjectRetention", "s3:PutObjectLegalHold",
]

#: Credentials a user could make for themselves that outlive a revocation of their
#: own key: denied unless ``MinioProvisioner.allow_service_accounts``.
SERVICE_ACCOUNT_ACTIONS = ["admin:CreateServiceAccount", "admin:UpdateServiceAccount"]


def make_bucket_policy(buckets: list[str], *, allow_bucket_settings: bool = False,
                       allow_service_accounts: bool = False) -> dict:
    """IAM policy of a user or team: object operations on ``buckets`` only (pure).

    Explicit denies, not just the absence of an allow: a deny also wins over any
    other policy MinIO may combine with this one (a team group's, a session policy).
    MinIO has no IAM action for STS ``AssumeRole`` of its own users, so STS
    credentials cannot be denied here; every revocation removes them instead.
    """
    resources = []
    for bucket in buckets:
        resources += [f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"]
    statements = [{"Sid": f"{POLICY_VERSION}objects", "Effect": "Allow",
                   "Action": ["s3:*"] if allow_bucket_settings else OBJECT_ACTIONS, "Resource": resources}]
    if not allow_bucket_settings:
        statements.append({"Sid": f"{POLICY_VERSION}settings", "Effect": "Deny",
                           "Action": BUCKET_SETTING_ACTIONS, "Resource": ["arn:aws:s3:::*"]})
    if not allow_service_accounts:
        statements.append({"Sid": f"{POLICY_VERSION}credentials", "Effect": "Deny",
                           "Action": SERVICE_ACCOUNT_ACTIONS})
    return {"Version": "2012-10-17", "Statement": statements}


class MinioProvisioner(LoggingConfigurable):
    """Creates, repairs, revokes and purges users' and teams' MinIO access."""

    endpoint = Unicode(
        config=True,
        help="""URL of the MinIO S3 API the hub administers, e.g. ``http://minio:9000``.
        Defaults to the ``ENERTEF_MINIO_ENDPOINT`` environment variable.""",
    )

    @default("endpoint")
    def _endpoint_default(self):
        return os.environ.get("ENERTEF_MINIO_ENDPOINT", "")

    user_endpoint = Unicode(
        config=True,
        help="""URL of the MinIO S3 API as users' servers reach it (``AWS_ENDPOINT_URL``
        and ``MLFLOW_S3_ENDPOINT_URL``). Empty: the same as ``endpoint``.""",
    )

    access_key = Unicode(
        config=True,
        help="""Access key of a MinIO admin (root user or a user with admin policy).
        Defaults to ``ENERTEF_MINIO_ACCESS_KEY``. Never passed to users' servers.""",
    )

    @default("access_key")
    def _access_key_default(self):
        return os.environ.get("ENERTEF_MINIO_ACCESS_KEY", "")

    secret_key = Unicode(
        config=True,
        help="""Secret key of the MinIO admin. Defaults to ``ENERTEF_MINIO_SECRET_KEY``.
        Never logged, never passed to users' servers.""",
    )

    @default("secret_key")
    def _secret_key_default(self):
        return os.environ.get("ENERTEF_MINIO_SECRET_KEY", "")

    region = Unicode(
        "us-east-1",
        config=True,
        help="""S3 region name given to users' servers (``AWS_DEFAULT_REGION``); MinIO's
        default is ``us-east-1``.""",
    )

    timeout = Float(
        5.0,
        config=True,
        help="""Seconds to wait for MinIO to connect, and for each answer, before
        telling the user it is unreachable. Admin requests are small, so a MinIO that
        takes longer is treated as down.""",
    )

    allow_bucket_settings = Bool(
        False,
        config=True,
        help="""Let users (and teams) change the settings of their own bucket: bucket
        policy, lifecycle, notification, replication, versioning, object lock, tags,
        and delete the bucket. False (default): users may only read, write, list and
        delete objects. Allowing it lets a user make their bucket anonymous (readable
        and writable without credentials); revocations still remove bucket policies.""",
    )

    allow_service_accounts = Bool(
        False,
        config=True,
        help="""Let users create MinIO service accounts (access keys) for themselves.
        False (default): denied by their policy. Every revocation (deletion, withdrawn
        approval, rotation) removes a user's service accounts either way.""",
    )

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._clients: tuple[Minio, MinioAdmin] | None = None
        self._http: urllib3.PoolManager | None = None  #: made with the clients, shared by every S3 client
        # Policies this process found at the current version: see _policy_known_current.
        self._current_policies: set[str] = set()

    # -- clients -----------------------------------------------------------------

    @property
    def public_endpoint(self) -> str:
        """The S3 URL users' servers use."""
        return self.user_endpoint or self.endpoint

    def _get_clients(self) -> tuple[Minio, MinioAdmin]:
        if self._clients is None:
            if not (self.endpoint and self.access_key and self.secret_key):
                raise ConfigurationError(
                    "MinIO is not configured: set MinioProvisioner.endpoint, access_key and"
                    " secret_key (or ENERTEF_MINIO_ENDPOINT, ENERTEF_MINIO_ACCESS_KEY,"
                    " ENERTEF_MINIO_SECRET_KEY)."
                )
            parts = urlsplit(self.endpoint)
            secure = parts.scheme == "https"
            # Fail fast when MinIO is down: one retry, short timeouts (minio-py's
            # default retries for minutes, which would hang a spawn).
            http = urllib3.PoolManager(
                timeout=urllib3.Timeout(connect=self.timeout, read=self.timeout),
                maxsize=32,
                # Retry a refused connection once, never a request MinIO may have acted on.
                retries=urllib3.Retry(total=1, connect=1, read=0, status=0, backoff_factor=0.1),
            )
            self._http = http
            s3 = self._client_as(self.access_key, self.secret_key)
            admin = FastMinioAdmin(
                endpoint=parts.netloc, credentials=StaticProvider(self.access_key, self.secret_key),
                secure=secure, http_client=http,
            )
            self._clients = (s3, admin)
        return self._clients

    def _client_as(self, access_key: str, secret_key: str) -> Minio:
        """An S3 client with these credentials (the admin's, or a user's), on the one
        connection pool made by :meth:`_get_clients`."""
        parts = urlsplit(self.endpoint)
        return Minio(parts.netloc, access_key=access_key, secret_key=secret_key,
                     secure=parts.scheme == "https", region=self.region, http_client=self._http)

    async def _run(self, func, *args):
        try:
            return await asyncio.to_thread(func, *args)
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise ServiceUnavailableError(
                f"The object storage (MinIO at {self.endpoint}) is unreachable"
                f" ({type(exc).__name__}). Nothing was changed. Ask an admin to check that"
                " MinIO is running, then start your server again."
            ) from None
        except (S3Error, MinioAdminException) as exc:
            raise ProvisioningError(
                f"The object storage (MinIO at {self.endpoint}) refused a request:"
                f" {_describe(exc)}. Ask an admin to run `enertef-hub check`."
            ) from None

    # -- users ---------------------------------------------------------------------

    async def user_is_ready(self, resources: UserResources, secret: str) -> bool:
        """True if alice's MinIO user works with ``secret`` on her bucket, under the current policy.

        The check of every repeat spawn, in one S3 call made as alice (a HEAD of her
        bucket): it succeeds only if her user exists, is enabled, has this very secret
        and a policy reaching the bucket, and the bucket exists, which is what her
        server needs. Whether her policy is the current version (not an older
        release's, nor made under other ``allow_*`` settings) is asked of MinIO once
        per hub process and policy, alongside: only the hub writes policies (theirs
        deny it to users), and a new release or new settings is a new hub process.
        """
        self._get_clients()  # made here, not by two threads racing
        works, policy_current = await asyncio.gather(
            self._run(self._works_as_user, resources, secret),
            self._policy_known_current(resources.policy, [resources.bucket]))
        return works and policy_current

    def _works_as_user(self, resources: UserResources, secret: str) -> bool:
        try:
            return self._client_as(resources.minio_user, secret).bucket_exists(resources.bucket)
        except S3Error:
            return False  # unknown, disabled, another secret, no policy: provisioning repairs it

    async def _policy_known_current(self, name: str, buckets: list[str]) -> bool:
        """:meth:`_policy_is_current`, asked of MinIO once per process and policy (see
        :meth:`user_is_ready` for why once is enough)."""
        if name in self._current_policies:
            return True
        _, admin = self._get_clients()
        if not await self._run(self._policy_is_current, admin, name, buckets):
            return False
        self._current_policies.add(name)
        return True

    def make_policy(self, buckets: list[str]) -> dict:
        """The policy of a user or team reaching ``buckets``, as the settings say."""
        return make_bucket_policy(buckets, allow_bucket_settings=self.allow_bucket_settings,
                                  allow_service_accounts=self.allow_service_accounts)

    def _policy_is_current(self, admin: MinioAdmin, name: str, buckets: list[str]) -> bool:
        text = self._admin_lookup(admin.policy_info, name, "XMinioAdminNoSuchPolicy")
        if text is None:
            return False
        try:
            statements = json.loads(text).get("Statement") or []
        except (ValueError, AttributeError):
            return False
        wanted = {st.get("Sid") for st in self.make_policy(buckets)["Statement"]}
        return {st.get("Sid") for st in statements if isinstance(st, dict)} == wanted

    async def ensure_user(self, resources: UserResources, secret: str) -> list[tuple[str, str]]:
        """Create or repair alice's bucket, policy and user; return what was created."""
        return await self._run(self._ensure_user, resources, secret)

    def _ensure_user(self, resources: UserResources, secret: str) -> list[tuple[str, str]]:
        s3, admin = self._get_clients()
        created: list[tuple[str, str]] = []
        try:
            if not s3.bucket_exists(resources.bucket):
                s3.make_bucket(resources.bucket)
                created.append(("bucket", resources.bucket))
            if not self._policy_exists(admin, resources.policy):
                created.append(("policy", resources.policy))
            admin.policy_add(resources.policy, policy=self.make_policy([resources.bucket]))
            if not self._user_info(admin, resources.minio_user):
                created.append(("user", resources.minio_user))
            # Creates the user, or sets the (derived) secret and re-enables it.
            admin.user_add(resources.minio_user, secret)
            admin.policy_set(resources.policy, user=resources.minio_user)
        except BaseException:
            self._undo(created)
            raise
        return created

    async def undo(self, created: list[tuple[str, str]]):
        """Remove what :meth:`ensure_user` created (a later step of the provisioning failed)."""
        await self._run(self._undo, created)

    def _undo(self, created: list[tuple[str, str]]):
        s3, admin = self._get_clients()
        for kind, name in reversed(created):
            try:
                if kind == "user":
                    admin.user_remove(name)
                elif kind == "policy":
                    admin.policy_remove(name)
                elif kind == "bucket":
                    s3.remove_bucket(name)  # only ever empty: we just made it
            except Exception as exc:  # undo is best effort; the next spawn repairs
                self.log.warning("Could not undo MinIO %s %s: %s", kind, name, _describe(exc))

    async def revoke_user(self, resources: UserResources) -> list[str]:
        """Remove alice's MinIO user and every key she made; keep her bucket.

        Her own key, her service accounts and her STS credentials stop working at
        once: the service accounts are deleted one by one and her STS credentials
        revoked (MinIO has no IAM action to forbid a user's ``AssumeRole``, and
        removing a user leaves its STS credentials in place, ready to work again
        for a re-created user of the same name). A later provisioning creates the
        user again, as new. Returns what was removed.
        """
        return await self._run(self._revoke_user, resources)

    def _revoke_user(self, resources: UserResources) -> list[str]:
        _, admin = self._get_clients()
        removed = []
        # Also when the user is gone already: its STS credentials may still be there.
        admin.revoke_sts(resources.minio_user)
        if self._user_info(admin, resources.minio_user):
            for key in self._service_accounts(admin, resources.minio_user):
                admin.delete_service_account(key)
                removed.append(f"service account {key}")
            admin.user_remove(resources.minio_user)
            removed.append(f"user {resources.minio_user}")
        if self._policy_exists(admin, resources.policy):
            admin.policy_remove(resources.policy)
        return removed

    async def sweep_bucket(self, bucket: str, *, dry_run: bool = False) -> list[str]:
        """Remove what a user may have set on ``bucket`` to open it to others.

        A bucket policy (e.g. anonymous read/write), lifecycle rules (which could
        expire kept data), event notifications and replication. Returns what was
        found (and, unless ``dry_run``, removed): ``enertef-hub check`` uses the
        dry run to audit a running system.
        """
        return await self._run(self._sweep_bucket, bucket, dry_run)

    def _sweep_bucket(self, bucket: str, dry_run: bool) -> list[str]:
        s3, _ = self._get_clients()
        if not s3.bucket_exists(bucket):
            return []
        found = []
        if _or_none(s3.get_bucket_policy, bucket, "NoSuchBucketPolicy"):
            found.append(f"bucket {bucket}: bucket policy")
            if not dry_run:
                s3.delete_bucket_policy(bucket)
        if _or_none(s3.get_bucket_lifecycle, bucket, "NoSuchLifecycleConfiguration"):
            found.append(f"bucket {bucket}: lifecycle rules")
            if not dry_run:
                s3.delete_bucket_lifecycle(bucket)
        notification = _or_none(s3.get_bucket_notification, bucket, "")
        if notification is not None and (notification.cloud_func_config_list or notification.queue_config_list
                                         or notification.topic_config_list):
            found.append(f"bucket {bucket}: event notifications")
            if not dry_run:
                s3.delete_bucket_notification(bucket)
        if _or_none(s3.get_bucket_replication, bucket, "ReplicationConfigurationNotFoundError"):
            found.append(f"bucket {bucket}: replication")
            if not dry_run:
                s3.delete_bucket_replication(bucket)
        return found

    async def buckets_with_policy(self, buckets: list[str]) -> list[str]:
        """Which of ``buckets`` have a bucket policy (for ``check``: one request per bucket, 8 at a time)."""
        return await self._run(self._buckets_with_policy, buckets)

    def _buckets_with_policy(self, buckets: list[str]) -> list[str]:
        s3, _ = self._get_clients()
        existing = {b.name for b in s3.list_buckets()}
        wanted = [b for b in buckets if b in existing]
        with ThreadPoolExecutor(max_workers=8) as pool:
            found = pool.map(lambda b: _or_none(s3.get_bucket_policy, b, "NoSuchBucketPolicy"), wanted)
            return [bucket for bucket, policy in zip(wanted, found) if policy]

    async def access_keys(self) -> dict[str, list[tuple[str, str]]]:
        """Every user's service accounts and STS credentials: user -> [(kind, access key)] (for ``check``)."""
        return await self._run(self._access_keys)

    def _access_keys(self) -> dict[str, list[tuple[str, str]]]:
        _, admin = self._get_clients()
        keys: dict[str, list[tuple[str, str]]] = {}
        for user, info in admin.list_access_keys().items():
            for kind, field in (("service account", "serviceAccounts"), ("STS credential", "stsKeys")):
                keys.setdefault(user, []).extend((kind, k["accessKey"]) for k in info.get(field) or [])
        return keys

    def _service_accounts(self, admin: MinioAdmin, access_key: str) -> list[str]:
        try:
            text = admin.list_service_account(access_key)
        except MinioAdminException as exc:
            if _admin_code(exc) == "XMinioAdminNoSuchUser":
                return []
            raise
        accounts = json.loads(text or "{}").get("accounts") or []
        return sorted(a["accessKey"] for a in accounts if a.get("accessKey"))

    async def purge_user(self, resources: UserResources):
        """Revoke alice and delete her bucket with every object in it."""
        await self.revoke_user(resources)
        await self._run(self._delete_bucket, resources.bucket)

    def _delete_bucket(self, bucket: str):
        s3, _ = self._get_clients()
        if not s3.bucket_exists(bucket):
            return
        objects = (DeleteObject(o.object_name, o.version_id)
                   for o in s3.list_objects(bucket, recursive=True, include_version=True))
        for error in s3.remove_objects(bucket, objects):
            raise ProvisioningError(f"Could not delete {error.name} from bucket {bucket}: {error.message}")
        s3.remove_bucket(bucket)

    async def user_state(self, resources: UserResources) -> dict:
        """What exists of alice's MinIO access (for ``status``)."""
        return await self._run(self._user_state, resources)

    def _user_state(self, resources: UserResources) -> dict:
        s3, admin = self._get_clients()
        info = self._user_info(admin, resources.minio_user)
        bucket_exists = s3.bucket_exists(resources.bucket)
        objects = sum(1 for _ in s3.list_objects(resources.bucket, recursive=True)) if bucket_exists else 0
        return {
            "minio_user": resources.minio_user,
            "minio_user_status": (info or {}).get("status", "absent"),
            "policies": _policies(info or {}),
            "bucket": resources.bucket,
            "bucket_exists": bucket_exists,
            "objects": objects,
        }

    # -- teams ------------------------------------------------------------------------

    async def ensure_team(self, team: TeamResources):
        """Create or repair a team's bucket and the policy its group gets."""
        await self._run(self._ensure_team, team)

    def _ensure_team(self, team: TeamResources):
        s3, admin = self._get_clients()
        if not s3.bucket_exists(team.bucket):
            s3.make_bucket(team.bucket)
        admin.policy_add(team.policy, policy=self.make_policy([team.bucket]))

    async def set_team_member(self, team: TeamResources, access_key: str, member: bool):
        """Put a user in, or take them out of, the team's group (effective at once)."""
        await self._run(self._set_team_member, team, access_key, member)

    def _set_team_member(self, team: TeamResources, access_key: str, member: bool):
        _, admin = self._get_clients()
        if member:
            # Creates the group on its first member (MinIO has no empty groups).
            admin.group_add(team.group, [access_key])
            admin.policy_set(team.policy, group=team.group)
        elif access_key in (self._group_info(admin, team.group).get("members") or []):
            admin.group_remove(team.group, [access_key])

    async def team_member_is_ready(self, team: TeamResources, access_key: str) -> bool:
        """True if the team's bucket exists and its enabled group, with the team's current
        policy, has ``access_key`` as a member: what :meth:`ensure_team` and
        :meth:`set_team_member` make, checked (every returning member's spawn) without
        writing. The policy's version is asked once per process, as in :meth:`user_is_ready`.
        """
        s3, admin = self._get_clients()
        group, bucket_exists, policy_current = await asyncio.gather(
            self._run(self._group_info, admin, team.group), self._run(s3.bucket_exists, team.bucket),
            self._policy_known_current(team.policy, [team.bucket]))
        return (bucket_exists and policy_current and group.get("status") == "enabled"
                and access_key in (group.get("members") or [])
                and team.policy in (group.get("policy") or "").split(","))

    async def team_state(self, team: TeamResources) -> dict:
        """Members and bucket of a team (for ``status`` and tests)."""
        return await self._run(self._team_state, team)

    def _team_state(self, team: TeamResources) -> dict:
        s3, admin = self._get_clients()
        info = self._group_info(admin, team.group)
        return {"group": team.group, "members": sorted(info.get("members") or []),
                "policy": info.get("policy", ""), "bucket_exists": s3.bucket_exists(team.bucket)}

    async def check(self) -> str:
        """Round trip to the admin API; returns the server's version (for ``check``)."""
        return await self._run(self._check)

    def _check(self) -> str:
        _, admin = self._get_clients()
        info = json.loads(admin.info())
        servers = info.get("servers") or [{}]
        return servers[0].get("version", "unknown")

    # -- bucket quotas and sizes (for usage.Quotas and the usage reports) --------------

    async def set_bucket_quotas(self, quotas: dict[str, int]) -> None:
        """Give each bucket its hard quota in bytes (``{bucket: bytes}``, 0 clears it);
        a bucket that has that quota already is left alone."""
        await self._run(self._set_bucket_quotas, quotas)

    def _set_bucket_quotas(self, quotas: dict[str, int]) -> None:
        _, admin = self._get_clients()
        for bucket, size in quotas.items():
            if _bucket_quota(admin, bucket) != size:
                admin.bucket_quota_set(bucket, size)

    async def bucket_usage(self, bucket: str) -> tuple[int | None, int | None, datetime | None, int]:
        """``(bytes, objects, last write, quota)`` of a bucket by listing it; Nones if it is absent."""
        return await self._run(self._bucket_usage, bucket)

    def _bucket_usage(self, bucket: str) -> tuple[int | None, int | None, datetime | None, int]:
        s3, admin = self._get_clients()
        if not s3.bucket_exists(bucket):
            return None, None, None, 0
        size = count = 0
        last = None
        for obj in s3.list_objects(bucket, recursive=True):
            size += obj.size or 0
            count += 1
            if obj.last_modified and (last is None or obj.last_modified > last):
                last = obj.last_modified
        return size, count, last, _bucket_quota(admin, bucket)

    async def data_usage(self) -> dict:
        """MinIO's data-usage scanner's figures for every bucket (minutes behind the latest writes).

        One admin call; the answer covers every bucket (~1 MB of JSON at 1,500), so it
        is parsed in the worker thread, not on the hub's event loop.
        """
        def read() -> dict:
            admin = self._get_clients()[1]  # named so the chart test's scan finds the call
            return json.loads(admin.get_data_usage_info())

        return await self._run(read)

    # -- helpers ----------------------------------------------------------------------

    @staticmethod
    def _admin_lookup(call, name: str, missing: str):
        """``call(name)``, or None when MinIO answers with the ``missing`` error code."""
        try:
            return call(name)
        except MinioAdminException as exc:
            if _admin_code(exc) == missing:
                return None
            raise

    def _user_info(self, admin: MinioAdmin, access_key: str) -> dict | None:
        info = self._admin_lookup(admin.user_info, access_key, "XMinioAdminNoSuchUser")
        return None if info is None else json.loads(info)

    def _policy_exists(self, admin: MinioAdmin, name: str) -> bool:
        return self._admin_lookup(admin.policy_info, name, "XMinioAdminNoSuchPolicy") is not None

    def _group_info(self, admin: MinioAdmin, group: str) -> dict:
        info = self._admin_lookup(admin.group_info, group, "XMinioAdminNoSuchGroup")
        return {} if info is None else json.loads(info)


def _or_none(call, bucket: str, missing: str):
    """``call(bucket)``, or None when S3 answers with the ``missing`` error code."""
    try:
        return call(bucket)
    except S3Error as exc:
        if exc.code == missing or (missing and exc.code.startswith("NoSuch")):
            return None
        raise


def _policies(info: dict) -> list[str]:
    names = info.get("policyName") or ""
    return [p for p in names.split(",") if p]


def _admin_code(exc: MinioAdminException) -> str:
    try:
        return json.loads(exc._body).get("Code", "")
    except (ValueError, AttributeError):
        return ""


def _describe(exc: BaseException) -> str:
    if isinstance(exc, S3Error):
        return f"{exc.code}: {exc.message}"
    if isinstance(exc, MinioAdminException):
        try:
            body = json.loads(exc._body)
            return f"{body.get('Code')}: {body.get('Message')}"
        except ValueError:
            return f"HTTP {exc._code}"
    return type(exc).__name__


def _bucket_quota(admin: MinioAdmin, bucket: str) -> int:
    """The bucket's hard quota in bytes as MinIO has it (0: none)."""
    text = admin.bucket_quota_get(bucket)
    try:
        return int(json.loads(text or "{}").get("quota") or 0)
    except (ValueError, AttributeError):
        return 0
