"""The environment a user's server receives (pure builder).

Names are the ecosystem's own (``MLFLOW_TRACKING_URI``, ``AWS_*``) so MLflow, boto3
and the AWS CLI work with no configuration; ``ENERTEF_*`` add what has no standard
name. Only the user's own credentials ever appear here.
"""

from __future__ import annotations

#: Names of hub-side settings that must never reach a user's server, whatever a
#: spawner's ``env_keep`` or an operator's ``environment`` says.
ADMIN_ENV_NAMES = frozenset(
    {
        "ENERTEF_POSTGRES_ADMIN_URL",
        "ENERTEF_POSTGRES_SUPERUSER_URL",
        "ENERTEF_MINIO_ACCESS_KEY",
        "ENERTEF_MINIO_SECRET_KEY",
        "ENERTEF_SECRET_KEY",
        "ENERTEF_HUB_ADMIN_PASSWORD",
        "MINIO_ROOT_USER",
        "MINIO_ROOT_PASSWORD",
        "PGPASSWORD",
        "JUPYTERHUB_CRYPT_KEY",
        "CONFIGPROXY_AUTH_TOKEN",
    }
)


def make_user_environment(
    *,
    tracking_uri: str,
    bucket: str,
    access_key: str,
    secret_key: str,
    s3_endpoint: str,
    region: str,
    teams: list[str] | tuple[str, ...] = (),
) -> dict[str, str]:
    """Return the environment variables of one user's server."""
    return {
        "MLFLOW_TRACKING_URI": tracking_uri,
        "ENERTEF_MLFLOW_BACKEND_STORE_URI": tracking_uri,
        "ENERTEF_MLFLOW_ARTIFACT_ROOT": f"s3://{bucket}/mlflow",
        "ENERTEF_BUCKET": bucket,
        "ENERTEF_TEAMS": ",".join(sorted(teams)),
        "AWS_ACCESS_KEY_ID": access_key,
        "AWS_SECRET_ACCESS_KEY": secret_key,
        "AWS_ENDPOINT_URL": s3_endpoint,
        "MLFLOW_S3_ENDPOINT_URL": s3_endpoint,
        "AWS_DEFAULT_REGION": region,
    }


def without_admin_secrets(env: dict[str, str]) -> dict[str, str]:
    """Drop every hub-side secret from an environment about to reach a user's server."""
    return {k: v for k, v in env.items() if k not in ADMIN_ENV_NAMES}
