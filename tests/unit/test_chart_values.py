"""The Helm values under chart-values/: valid for their charts, consistent with each other.

The z2jh values are rendered by a real ``helm template`` of the released chart
(``../shared/z2jh-4.4.0/chart/``), which validates them against the chart's own values
schema; the rendered objects and the promises the values make
(which Secret feeds the hub, what user pods may reach, how big every volume is) are
checked against the manifests and scripts that must keep them.
"""

from __future__ import annotations

import json
import re

import jsonschema
import kubernetes_validate
import pytest
import yaml

from tests.harness import z2jh

REPO = z2jh.REPO
VALUES = REPO / "chart-values"
K8S_VERSION = z2jh.pinned_k8s_version()  # the k3s that scripts/start.sh pins

HUB_ENV = ("ENERTEF_POSTGRES_ADMIN_URL", "ENERTEF_MINIO_ENDPOINT", "ENERTEF_MINIO_ACCESS_KEY",
           "ENERTEF_MINIO_SECRET_KEY", "ENERTEF_SECRET_KEY")
SECRET_HUB_ENV = tuple(name for name in HUB_ENV if name != "ENERTEF_MINIO_ENDPOINT")


def load(name: str) -> dict:
    return yaml.safe_load((VALUES / name).read_text())


def manifests(name: str) -> list[dict]:
    return [doc for doc in yaml.safe_load_all((VALUES / "manifests" / name).read_text()) if doc]


@pytest.fixture(scope="module")
def z2jh_values() -> dict:
    return load("jupyterhub.yaml")


@pytest.fixture(scope="module")
def start_sh() -> str:
    return (REPO / "scripts" / "start.sh").read_text()


@pytest.fixture(scope="module")
def rendered() -> list[dict]:
    return z2jh.render()


def test_z2jh_values_validate_against_the_chart_schema(z2jh_values, rendered):
    # helm template validated the merged values against the chart's values.schema.json;
    # ours alone must not use keys the chart does not know either (additionalProperties).
    schema = json.loads((z2jh.Z2JH_DIR / "values.schema.json").read_text())
    errors = sorted(jsonschema.Draft7Validator(schema).iter_errors(z2jh_values), key=str)
    unknown = [e.message for e in errors if e.validator == "additionalProperties"]
    assert not unknown, unknown
    assert z2jh.find(rendered, "Deployment", "hub")


def test_every_rendered_object_is_valid_kubernetes(rendered):
    for obj in rendered:
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)


def test_schema_check_can_fail():
    """Helm refuses a typo in a key (the schema really constrains our values)."""
    with pytest.raises(z2jh.HelmError, match="storag"):
        z2jh.render({"singleuser": {"storag": {"capacity": "10Gi"}}})


def test_hub_uses_our_classes_and_image(z2jh_values, start_sh):
    config = z2jh_values["hub"]["config"]
    assert config["JupyterHub"]["authenticator_class"] == "enertef"
    assert config["JupyterHub"]["spawner_class"] == "enertef-kube"
    assert config["Authenticator"]["admin_users"], "someone must be able to approve sign-ups"
    assert config["NativeAuthenticator"]["open_signup"] is False
    assert z2jh_values["hub"]["image"]["name"] == "k3d-registry.localhost:5001/enertef-hub"
    assert z2jh_values["singleuser"]["image"]["name"] == "k3d-registry.localhost:5001/enertef-notebook"
    # start.sh pushes to the registry the values name.
    assert "REGISTRY_NAME=registry.localhost" in start_sh
    assert "REGISTRY_PORT=5001" in start_sh


def test_hub_env_comes_from_the_secret_start_sh_generates(z2jh_values, start_sh):
    extra_env = z2jh_values["hub"]["extraEnv"]
    assert set(HUB_ENV) <= set(extra_env)
    example = {doc["metadata"]["name"]: doc for doc in manifests("secrets.example.yaml")}
    for name in SECRET_HUB_ENV:
        ref = extra_env[name]["valueFrom"]["secretKeyRef"]
        # Same Secret and key in the example and in what start.sh creates.
        assert ref["key"] in example[ref["name"]]["stringData"], name
        assert f"{ref['key']}=" in start_sh, f"start.sh does not generate {ref['key']}"
        assert f'create_secret "$NAMESPACE" {ref["name"]}' in start_sh
        assert example[ref["name"]]["metadata"]["namespace"] == "enertef"
    # The only literal is the endpoint, and it names MinIO's service in the data namespace.
    minio = load("minio.yaml")
    assert extra_env["ENERTEF_MINIO_ENDPOINT"] == (
        f"http://{minio['fullnameOverride']}.enertef-data:{minio['service']['port']}")


def test_superuser_and_root_secrets_are_made_in_the_data_namespace_only(start_sh):
    """The hub's ServiceAccount reads every Secret of "enertef" (the chart's Role); not these."""
    for name in ("enertef-postgresql", "enertef-minio", "enertef-minio-hub", "enertef-pgadmin"):
        assert f'create_secret "$DATA_NAMESPACE" {name}' in start_sh, name
        assert f'create_secret "$NAMESPACE" {name}' not in start_sh, name
    assert re.search(r"^DATA_NAMESPACE=enertef-data$", start_sh, re.MULTILINE)
    for release in ("enertef-minio", "enertef-pgadmin"):
        assert re.search(rf"^\s*hd upgrade --install {release} ", start_sh, re.MULTILINE), release
    assert 'kd apply -f "$ROOT/chart-values/manifests/postgresql.yaml"' in start_sh


#: The MinIO admin API calls of enertef_hub (minio-py MinioAdmin methods) -> the policy actions they need.
ADMIN_CALL_ACTIONS = {
    "info": ["admin:ServerInfo"], "user_add": ["admin:CreateUser"], "user_remove": ["admin:DeleteUser"],
    "user_info": ["admin:GetUser"], "user_list": ["admin:ListUsers"], "user_enable": ["admin:EnableUser"],
    "user_disable": ["admin:DisableUser"], "policy_add": ["admin:CreatePolicy"],
    "policy_remove": ["admin:DeletePolicy"], "policy_info": ["admin:GetPolicy"],
    "policy_list": ["admin:ListUserPolicies"], "policy_set": ["admin:AttachUserOrGroupPolicy"],
    "policy_unset": ["admin:AttachUserOrGroupPolicy"], "attach_policy": ["admin:AttachUserOrGroupPolicy"],
    "detach_policy": ["admin:AttachUserOrGroupPolicy"], "group_add": ["admin:AddUserToGroup"],
    "group_remove": ["admin:RemoveUserFromGroup"], "group_info": ["admin:GetGroup"],
    "group_list": ["admin:ListGroups"], "list_service_account": ["admin:ListServiceAccounts"],
    "delete_service_account": ["admin:RemoveServiceAccount"],
    "list_access_keys": ["admin:ListUsers", "admin:ListServiceAccounts", "admin:ListTemporaryAccounts"],
    "revoke_sts": ["admin:RemoveServiceAccount"], "bucket_quota_set": ["admin:SetBucketQuota"],
    "bucket_quota_get": ["admin:GetBucketQuota"],
    # The accounts page's bucket sizes; measured on our MinIO: 403 AccessDenied without it.
    "get_data_usage_info": ["admin:DataUsageInfo"],
}


def test_the_hubs_minio_policy_allows_every_admin_call_of_the_code_and_no_server_administration():
    """The hub runs as MinIO user enertef-hub (chart-values/minio.yaml), not root: a new admin
    call in the code needs its action here, or the hub fails on Kubernetes only."""
    from enertef_hub.provisioners.minio_admin import FastMinioAdmin

    (policy,) = load("minio.yaml")["policies"]
    allowed = {action for statement in policy["statements"] for action in statement["actions"]}
    calls = set()
    for path in (REPO / "enertef_hub").rglob("*.py"):
        calls |= {m for m in re.findall(r"\badmin\.([a-z_]+)\b", path.read_text()) if hasattr(FastMinioAdmin, m)}
    assert calls, "no MinIO admin call found: the scan is broken"
    for call in sorted(calls):
        assert call in ADMIN_CALL_ACTIONS, f"MinioAdmin.{call}: add the MinIO action it needs to this table"
        missing = set(ADMIN_CALL_ACTIONS[call]) - allowed
        assert not missing, f"MinioAdmin.{call} needs {missing} in chart-values/minio.yaml policies"
    assert not [a for a in allowed if a.startswith("admin:") and a.endswith("*")], "no admin wildcard"
    for server_action in ("admin:ConfigUpdate", "admin:ServiceRestart", "admin:ServerUpdate", "admin:KMSCreateKey",
                          "admin:Decommission", "admin:SiteReplicationAdd"):
        assert server_action not in allowed


def test_admin_url_points_at_the_postgresql_service_and_admin_role(start_sh):
    service = next(d for d in manifests("postgresql.yaml") if d["kind"] == "Service")
    match = re.search(r"ENERTEF_POSTGRES_ADMIN_URL=postgresql://(\w+):%s@([\w-]+)\.%s:(\d+)/(\w+)\\n' \"\$pg_admin\" "
                      r"\"\$DATA_NAMESPACE\"", start_sh)
    assert match, "start.sh must build ENERTEF_POSTGRES_ADMIN_URL (host: the Service in the data namespace)"
    role, host, port, database = match.groups()
    assert (host, int(port)) == (service["metadata"]["name"], service["spec"]["ports"][0]["port"])
    assert service["metadata"]["namespace"] == "enertef-data"
    init = next(d for d in manifests("postgresql.yaml") if d["kind"] == "ConfigMap")
    script = "\n".join(init["data"].values())
    assert f"CREATE ROLE {role} LOGIN CREATEROLE" in script
    assert f"CREATE DATABASE {database} OWNER {role}" in script
    assert "SUPERUSER" not in script


def _egress_rule_for(values: dict, labels: dict) -> list[dict]:
    """The egress rules of user pods whose podSelector matches a pod with ``labels``."""
    rules = []
    for rule in values["singleuser"]["networkPolicy"]["egress"]:
        for peer in rule.get("to", []):
            selector = peer.get("podSelector", {}).get("matchLabels", {})
            # PostgreSQL and MinIO run in namespace enertef-data: a rule without that
            # namespace selector would select pods of the users' own namespace only.
            namespace = peer.get("namespaceSelector", {}).get("matchLabels", {}).get("kubernetes.io/metadata.name")
            if selector and namespace == "enertef-data" and all(labels.get(k) == v for k, v in selector.items()):
                rules.append(rule)
    return rules


def test_user_pods_reach_postgresql_and_the_s3_api_only(z2jh_values, start_sh):
    policy = z2jh_values["singleuser"]["networkPolicy"]
    assert policy["enabled"] is True
    # No blanket access to in-cluster addresses: only the explicit rules below.
    assert policy["egressAllowRules"]["privateIPs"] is False
    assert policy["egressAllowRules"]["cloudMetadataServer"] is False

    statefulset = next(d for d in manifests("postgresql.yaml") if d["kind"] == "StatefulSet")
    pg_labels = statefulset["spec"]["template"]["metadata"]["labels"]
    pg_rules = _egress_rule_for(z2jh_values, pg_labels)
    assert [p["port"] for r in pg_rules for p in r["ports"]] == [5432]

    # The MinIO chart labels its pods app=<chart name>, release=<release name>.
    assert "upgrade --install enertef-minio minio/minio" in start_sh
    minio_labels = {"app": "minio", "release": "enertef-minio"}
    minio_rules = _egress_rule_for(z2jh_values, minio_labels)
    assert [p["port"] for r in minio_rules for p in r["ports"]] == [9000], "the console (9001) must stay closed"

    # pgAdmin (the chart's labels) matches no rule at all.
    pgadmin_labels = {"app.kubernetes.io/name": "pgadmin4", "app.kubernetes.io/instance": "enertef-pgadmin"}
    assert _egress_rule_for(z2jh_values, pgadmin_labels) == []
    # And every rule names its ports: none opens a whole pod.
    assert all(rule.get("ports") for rule in policy["egress"])


def test_user_pod_egress_rules_are_valid_network_policy(z2jh_values):
    policy = {
        "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": {"name": "singleuser", "namespace": "enertef"},
        "spec": {"podSelector": {"matchLabels": {"component": "singleuser-server"}},
                 "policyTypes": ["Egress"], "egress": z2jh_values["singleuser"]["networkPolicy"]["egress"]},
    }
    kubernetes_validate.validate(policy, K8S_VERSION, strict=True)


def test_hub_database_is_not_on_the_network(z2jh_values):
    # SQLite on the hub's own volume: no port any user pod could reach.
    assert z2jh_values["hub"]["db"]["type"] == "sqlite-pvc"


# Documented sizes (docs/kubernetes.md "Storage sizes"): each volume's size lives in
# exactly one place, which the table names.
SIZES = {
    "user home": (lambda: load("jupyterhub.yaml")["singleuser"]["storage"]["capacity"], "10Gi"),
    "hub database": (lambda: load("jupyterhub.yaml")["hub"]["db"]["pvc"]["storage"], "1Gi"),
    "MinIO": (lambda: load("minio.yaml")["persistence"]["size"], "20Gi"),
    "pgAdmin": (lambda: load("pgadmin.yaml")["persistentVolume"]["size"], "1Gi"),
    "PostgreSQL": (lambda: next(d for d in manifests("postgresql.yaml") if d["kind"] == "StatefulSet")
                   ["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"], "8Gi"),
}


@pytest.mark.parametrize("volume", sorted(SIZES))
def test_every_volume_has_its_documented_size(volume):
    read, expected = SIZES[volume]
    assert read() == expected
    readme = (REPO / "docs" / "kubernetes.md").read_text()
    table = readme.split("### Storage sizes", 1)[1].split("###", 1)[0]
    row = next((line for line in table.splitlines() if line.startswith(f"| {volume} |")), None)
    assert row is not None, f"the sizing table has no row for {volume}"
    assert f"| {expected} |" in row


def test_minio_and_pgadmin_take_credentials_from_secrets():
    minio = load("minio.yaml")
    assert minio["existingSecret"] == "enertef-minio"
    assert "rootPassword" not in minio and "rootUser" not in minio
    assert minio["persistence"]["enabled"] is True
    # The chart's default 16Gi memory request would never schedule on a laptop.
    assert minio["resources"]["requests"]["memory"] == "512Mi"
    pgadmin = load("pgadmin.yaml")
    assert pgadmin["existingSecret"] == "enertef-pgadmin"
    assert "password" not in pgadmin["env"]
    example = {d["metadata"]["name"]: d for d in manifests("secrets.example.yaml")}
    assert {"rootUser", "rootPassword"} <= set(example["enertef-minio"]["stringData"])
    assert pgadmin["secretKeys"]["pgadminPasswordKey"] in example["enertef-pgadmin"]["stringData"]


def test_pgadmin_knows_the_mlflow_database_server():
    servers = load("pgadmin.yaml")["serverDefinitions"]
    assert servers["enabled"] is True
    (server,) = servers["servers"].values()
    service = next(d for d in manifests("postgresql.yaml") if d["kind"] == "Service")
    assert server["Host"] == service["metadata"]["name"]
    assert server["Port"] == 5432
    assert server["MaintenanceDB"] == "mlflow"
    assert server["Username"] == "enertef_admin"


def test_no_secret_literals_in_values():
    """Passwords live only in the generated Secrets, never in a values file."""
    for name in ("jupyterhub.yaml", "minio.yaml", "pgadmin.yaml"):
        text = (VALUES / name).read_text()
        assert not re.search(r"(?i)(password|secret_key|secretkey|token)[ \t]*:[ \t]*['\"]?[A-Za-z0-9]{8,}", text), name


def test_admin_and_example_team_names_are_valid_names(z2jh_values):
    """A reserved or malformed admin name stops the hub at start-up ("username ... is not valid")."""
    from enertef_hub.naming import normalize_team_name, normalize_username

    for name in z2jh_values["hub"]["config"]["Authenticator"]["admin_users"]:
        assert normalize_username(name) == name
    # The commented load_groups example must be copyable as it is.
    text = (VALUES / "jupyterhub.yaml").read_text()
    example = re.findall(r"^\s*#\s{5}(\w[\w-]*):\s*$", text, re.MULTILINE)
    assert example, "the load_groups example is gone"
    for team in example:
        assert normalize_team_name(team) == team


def test_hub_may_reach_postgresql_and_minio(rendered):
    """The hub administers both: its own egress policy must allow in-cluster addresses."""
    policy = z2jh.find(rendered, "NetworkPolicy", "hub")
    cidrs = {peer["ipBlock"]["cidr"] for rule in policy["spec"]["egress"] for peer in rule.get("to", [])
             if "ipBlock" in peer}
    assert {"10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"} <= cidrs


def test_a_deleted_users_home_follows_the_same_keep_or_purge_policy(z2jh_values):
    """Deleting a user must not delete their home while their MLflow store and bucket are kept."""
    config = z2jh_values["hub"]["config"]
    assert config["KubeSpawner"]["delete_pvc"] == config["Workbench"]["purge_on_delete"]


def test_minio_chart_creates_only_the_hubs_user():
    """The chart's default values create user "console" with a published password; ours only the hub's."""
    minio = load("minio.yaml")
    assert minio["svcaccts"] == [] and minio["buckets"] == []
    (user,) = minio["users"]
    assert user["accessKey"] == "enertef-hub" and user["policy"] == "enertef-hub"
    assert "secretKey" not in user and user["existingSecret"] == "enertef-minio-hub"
