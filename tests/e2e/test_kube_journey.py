"""The released z2jh 4.4.0 chart on a real Kubernetes control plane, end to end.

``scripts/kube.sh start`` runs a real API server (RBAC, ServiceAccount admission),
etcd, controller-manager, scheduler and kwok on loopback. ``helm install`` puts the
real chart in a namespace of its own with ``chart-values/jupyterhub.yaml``; the
kubelet stand-in (``tests.harness.kube.node``) then runs the hub pod (the chart's own
``jupyterhub_config.py`` and ``z2jh.py`` from the rendered ConfigMap, the rendered
Secret, our ``jupyterhub_config.d/`` where the hub image puts it, the hub
ServiceAccount's token, so the chart's Role decides what the spawner may do), the
proxy pod (configurable-http-proxy with the Deployment's args) and each user pod
(the notebook image's start hook, then ``jupyterhub-singleuser``) as local processes.

The journey is a user's and an admin's, in Chromium: sign-up, approval, spawn with
the progress page, JupyterLab, an example notebook, the MLflow run in ``u_<name>``
and the artifact in ``user-<name>``; deletion in the admin panel (pod gone, claim
kept, access revoked), re-creation (``claim-<name>-i2``); a storage outage (a clear
message, and the hub survives more failed spawns than the chart's
``consecutive_failure_limit``); and, after ``helm upgrade`` with
``Workbench.purge_on_delete`` and ``KubeSpawner.delete_pvc`` true, deletion purging
the claim, schema and bucket; and ``helm uninstall`` (users' pods and credential
Secrets go with it) then ``helm install`` on the same data (a new sign-up of a known
name is a new account, never the old one's data).

Least privilege is checked on the way: the hub's ServiceAccount token cannot read the
PostgreSQL superuser's or MinIO root's Secret (they live in the data namespace) and
no Secret it can read holds them; the hub works with MinIO's ``enertef-hub`` user of
``chart-values/minio.yaml``; the user's keys are in a Secret of their own, never in
the pod's spec; the release's namespace enforces the "restricted" Pod Security
Standard (``chart-values/manifests/namespace.yaml``) and the user's pod is admitted.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import secrets
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit

import copy

import botocore.exceptions
import psycopg
import pytest
import requests
from playwright.sync_api import expect
from psycopg import sql

from tests.harness.browser import delete_in_admin_panel, log_in, sign_up
from tests.harness.forms import approve, signup
from tests.harness.hub import Hub
from tests.harness.kube.api import KubeAPI, cluster_env
from tests.harness.kube.node import Forwarder, Node
from tests.harness.kube.release import (RELEASE, chart_dir, data_namespace, external_services, helm_install, install,
                                        kubectl, remove_hub_minio_user)
from tests.harness.names import unique_name
from tests.harness.notebooks import execute_notebook
from tests.harness.postgres import acting_as
from tests.harness.s3 import admin_s3, s3_client
from tests.harness.services import free_port
from tests.harness.wait import wait_for

PASSWORD = "Kube-journey-passw0rd!"
ADMIN = "hubadmin"  # chart-values/jupyterhub.yaml hub.config.Authenticator.admin_users
FIGURES: dict[str, float] = {}


def rss_mb(pids: list[int]) -> float:
    """Resident memory of processes and all their descendants, in MB."""
    seen, stack, total = set(), list(pids), 0
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
        except (OSError, IndexError, ValueError):
            pass
    while stack:
        pid = stack.pop()
        if pid in seen:
            continue
        seen.add(pid)
        stack.extend(children.get(pid, []))
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total / 1024


class KubeHub(Hub):
    """The test Hub (tests.harness.hub) of a hub pod run by the kubelet stand-in."""

    node: Node
    api_server: KubeAPI
    namespace: str
    env: dict

    def log_tail(self, lines: int = 200) -> str:
        container = self.node.container("hub-")
        text = container.log_path.read_text(errors="replace") if container else "(no hub pod)"
        return "\n".join(text.splitlines()[-lines:] + ["-- node errors:", *self.node.errors[-5:]])

    def log_text(self) -> str:
        return "".join(p.read_text(errors="replace") for p in sorted(self.dir.glob("pods/hub-*/log")))

    def pod(self, name: str) -> dict | None:
        return self.api_server.get(f"/api/v1/namespaces/{self.namespace}/pods/{name}", missing_ok=True)

    def pvc(self, name: str) -> dict | None:
        return self.api_server.get(f"/api/v1/namespaces/{self.namespace}/persistentvolumeclaims/{name}",
                                   missing_ok=True)


def running_hub_pod(node: Node):
    container = node.container("hub-")
    return container if container and container.process.poll() is None else None


@pytest.fixture(scope="module")
def kube_hub(services_env, tmp_path_factory):
    """The chart installed on the test control plane, its hub answering through the proxy pod."""
    started = time.monotonic()
    env = {**os.environ, **cluster_env()}
    FIGURES["cluster_ready_s"] = time.monotonic() - started
    api = KubeAPI(env)
    namespace = "e2e-" + secrets.token_hex(3)
    state = tmp_path_factory.mktemp("kube")
    token = secrets.token_hex(32)
    node = Node(api, env, namespace, state, external=external_services(services_env),
                peers=(data_namespace(namespace),)).start()
    # What `kubectl port-forward svc/proxy-public` is for a deployer (scripts/start.sh):
    # the hub's public URL on this machine, http://localhost:PORT (users' origins are
    # http://<name>.localhost:PORT, which browsers resolve to loopback).
    public_port = free_port()
    forward = Forwarder("127.0.0.1", public_port, lambda: node.endpoint("proxy-public", {"port": 80, "targetPort": "http"}))
    admin_password = secrets.token_urlsafe(18)
    superuser_password = secrets.token_urlsafe(24)
    try:
        started = time.monotonic()
        install(env, api, namespace, services_env, state, token, f"http://localhost:{public_port}", admin_password,
                superuser_password=superuser_password)
        # Every object of the release was accepted by the API server.
        made = kubectl(env, "get", "all,configmap,secret,pvc,role,rolebinding,serviceaccount,networkpolicy",
                       "-n", namespace, "-o", "name")
        for kind_name in ("deployment.apps/hub", "deployment.apps/proxy", "service/hub", "service/proxy-api",
                          "service/proxy-public", "persistentvolumeclaim/hub-db-dir", "role.rbac.authorization.k8s.io/hub",
                          "networkpolicy.networking.k8s.io/singleuser", "secret/hub", "configmap/hub"):
            assert kind_name in made, f"{kind_name} missing after helm install:\n{made}"
        wait_for(lambda: next(
            (p for p in api.items(f"/api/v1/namespaces/{namespace}/pods?labelSelector=component%3Dproxy")
             if p.get("status", {}).get("podIP") and p["metadata"]["name"] in node.containers), None),
            timeout=120, what="the proxy pod running")
        url = f"http://localhost:{public_port}"
        hub = KubeHub(url, token, ADMIN, admin_password, state / "hub.log", state, None)
        hub.node, hub.api_server, hub.namespace, hub.env = node, api, namespace, env
        hub.superuser_password = superuser_password

        def hub_answers():
            if node.errors and "not supported" in node.errors[-1]:
                raise AssertionError(node.errors[-1])
            try:
                return requests.get(f"{url}/hub/api/", timeout=2).status_code == 200
            except requests.RequestException:
                return False

        try:
            wait_for(hub_answers, timeout=180, what="the hub answering through the proxy")
        except AssertionError:
            raise AssertionError(f"hub not up; hub log:\n{hub.log_tail(80)}") from None
        FIGURES["install_to_hub_ready_s"] = time.monotonic() - started
        # The admin of chart-values exists from the start: the hub made it from the
        # Secret's ENERTEF_HUB_ADMIN_PASSWORD.
        hub.admin_session()
        yield hub
    finally:
        FIGURES["rss_control_plane_mb"] = rss_mb(
            [int((Path(env["KUBE_DIR"]) / f"{c}.pid").read_text()) for c in
             ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok")
             if (Path(env["KUBE_DIR"]) / f"{c}.pid").exists()])
        FIGURES["rss_pods_mb"] = rss_mb([c.process.pid for c in node.containers.values()])
        forward.close()
        node.stop()
        subprocess_env = env
        kubectl(subprocess_env, "delete", "namespace", namespace, data_namespace(namespace), "--wait=false")
        remove_hub_minio_user(namespace, services_env)
        kubectl(subprocess_env, "delete", "pv", "-l", f"enertef-test/namespace={namespace}", "--wait=false")
        print("\nkube journey figures:", json.dumps({k: round(v, 1) for k, v in FIGURES.items()}))
        (state / "figures.json").write_text(json.dumps(FIGURES))


@pytest.fixture(scope="module")
def admin_page(kube_hub, browser):
    context = browser.new_context()
    context.set_default_timeout(30_000)
    page = context.new_page()
    log_in(page, kube_hub, ADMIN, kube_hub.admin_password, "/hub/authorize")
    page.wait_for_url(re.compile(r".*/hub/authorize$"))
    yield page
    context.close()


def pod_env(hub: KubeHub, pod_name: str) -> dict[str, str]:
    """The environment the kubelet stand-in gave the pod's process (resolved from the pod object)."""
    return json.loads((hub.dir / "pods" / pod_name / "spec.json").read_text())["env"]


def local_uri(uri: str, services_env) -> str:
    """A user's database URI (in-cluster host) pointed at this machine's PostgreSQL."""
    pg = urlsplit(services_env["ENERTEF_POSTGRES_ADMIN_URL"])
    parts = urlsplit(uri)
    return parts._replace(scheme="postgresql", netloc=f"{parts.username}:{parts.password}@{pg.hostname}:{pg.port}").geturl()


def start_and_wait(hub, name: str, timeout: float = 240):
    """Start ``name``'s server through the REST API (the hub user made if it never logged in); wait until ready."""
    if hub.api("GET", f"/users/{name}").status_code == 404:
        hub.api("POST", f"/users/{name}").raise_for_status()
    hub.api("POST", f"/users/{name}/server").raise_for_status()
    wait_for(lambda: hub.api("GET", f"/users/{name}").json().get("servers", {}).get("", {}).get("ready"),
             timeout=timeout, what=f"{name}'s server ready")


def wait_hub_answers(hub, timeout: float = 180):
    def answers():
        try:
            return requests.get(f"{hub.url}/hub/api/", timeout=2).status_code == 200
        except requests.RequestException:
            return False

    wait_for(answers, timeout=timeout, what="the hub answering")


def hub_service_account_token(hub: KubeHub) -> tuple[str, str]:
    """(the hub pod's ServiceAccount token, its subject ``system:serviceaccount:NS:hub``)."""
    hub_spec = json.loads(max((hub.dir / "pods").glob("hub-*/spec.json"), key=lambda p: p.stat().st_mtime).read_text())
    token_dir = next(src for src, dst, _ in hub_spec["mounts"] if dst == "/var/run/secrets/kubernetes.io/serviceaccount")
    token = (Path(token_dir) / "token").read_text()
    payload = token.split(".")[1]
    subject = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))["sub"]
    return token, subject


def user_secret(hub: KubeHub, pod_name: str) -> dict | None:
    return hub.api_server.get(f"/api/v1/namespaces/{hub.namespace}/secrets/{pod_name}-env", missing_ok=True)


def test_journey(kube_hub, admin_page, new_page, services_env):
    hub = kube_hub
    started = time.monotonic()
    name = unique_name("kjane")

    # Sign-up in the browser: told to wait for an admin; the admin approves.
    user = new_page()
    user.set_default_timeout(60_000)
    sign_up(user, hub, name, PASSWORD)
    expect(user.locator(".alert")).to_contain_text("waiting for approval")
    admin_page.goto(f"{hub.url}/hub/authorize")
    admin_page.locator(f"tr#{name}").get_by_role("button", name="Authorize", exact=True).click()
    expect(admin_page.locator(f"tr#{name}")).to_contain_text("Yes")

    # Log in: the hub spawns; the progress page shows our steps, then JupyterLab loads.
    log_in(user, hub, name, PASSWORD)
    user.wait_for_url(re.compile(rf".*/hub/spawn-pending/{name}.*"), timeout=60_000)
    expect(user.locator("#progress-log")).to_contain_text("Preparing your MLflow store", timeout=60_000)
    expect(user.locator("#progress-log")).to_contain_text(f"MLflow store u_{name} and bucket user-{name} ready",
                                                          timeout=60_000)
    user.wait_for_url(re.compile(rf".*/user/{name}/lab.*"), timeout=240_000)
    expect(user.locator("#jp-main-dock-panel")).to_be_visible(timeout=120_000)

    # The pod is KubeSpawner's, made through the hub ServiceAccount (the chart's Role).
    pod_name = f"jupyter-{name}"
    pod = hub.pod(pod_name)
    assert pod["metadata"]["labels"]["component"] == "singleuser-server"
    claims = [v["persistentVolumeClaim"]["claimName"] for v in pod["spec"]["volumes"] if "persistentVolumeClaim" in v]
    assert claims == [f"claim-{name}"]
    assert hub.pvc(f"claim-{name}")["status"]["phase"] == "Bound"
    # The hub's only credential is the hub ServiceAccount's token, mounted where
    # in-cluster clients read it; what it may do is the chart's Role.
    token, subject = hub_service_account_token(hub)
    assert subject == f"system:serviceaccount:{hub.namespace}:hub"

    def hub_can(verb: str, resource: str, namespace: str) -> str:
        return subprocess.run(["kubectl", "auth", "can-i", verb, resource, "--as", subject, "-n", namespace],
                              capture_output=True, text=True, env=hub.env).stdout.strip()

    assert hub_can("create", "pods", hub.namespace) == "yes"
    assert hub_can("get", "secrets", "kube-system") == "no"
    # The superuser's and root's passwords are out of the hub's reach: the chart's Role
    # lets it read every Secret of its own namespace, and they are not there.
    data = data_namespace(hub.namespace)
    for name_of_secret in ("enertef-postgresql", "enertef-minio", "enertef-minio-hub", "enertef-pgadmin"):
        assert hub.api_server.get(f"/api/v1/namespaces/{data}/secrets/{name_of_secret}"), name_of_secret
        assert hub_can("get", f"secrets/{name_of_secret}", data) == "no", name_of_secret
        response = requests.get(f"{hub.api_server.url}/api/v1/namespaces/{data}/secrets/{name_of_secret}",
                                headers={"Authorization": f"Bearer {token}"}, verify=hub.api_server.ca, timeout=30)
        assert response.status_code == 403, (name_of_secret, response.status_code)
    root_values = [hub.superuser_password, services_env["ENERTEF_MINIO_SECRET_KEY"]]
    for readable in hub.api_server.items(f"/api/v1/namespaces/{hub.namespace}/secrets"):
        for key, value in (readable.get("data") or {}).items():
            text = base64.b64decode(value).decode(errors="replace")
            assert not [r for r in root_values if r in text], f"secret {readable['metadata']['name']}.{key}"
    # Pod Security "restricted" is enforced in the release's namespace, and the user's
    # pod was admitted; the chart's iptables init container (privileged, root) is not.
    labels = hub.api_server.get(f"/api/v1/namespaces/{hub.namespace}")["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"
    with_iptables = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": f"{pod_name}-iptables"},
                     "spec": copy.deepcopy(pod["spec"])}
    with_iptables["spec"]["initContainers"] = [{
        "name": "block-cloud-metadata", "image": "quay.io/jupyterhub/k8s-network-tools:4.4.0",
        "command": ["iptables", "--append", "OUTPUT", "--destination", "169.254.169.254", "--jump", "DROP"],
        "securityContext": {"privileged": True, "runAsUser": 0, "capabilities": {"add": ["NET_ADMIN"]}}}]
    refused = hub.api_server.request("POST", f"/api/v1/namespaces/{hub.namespace}/pods?dryRun=All", json=with_iptables)
    assert refused.status_code == 403 and "violates PodSecurity" in refused.text, refused.text[:500]
    env = pod_env(hub, pod_name)
    # The user's keys are in a Secret of their own, never in the pod object (which the
    # hub's Role, `kubectl describe` and every pod reader see).
    pod_text = json.dumps(pod)
    for key in ("AWS_SECRET_ACCESS_KEY", "JUPYTERHUB_API_TOKEN"):
        assert env[key] not in pod_text, key
    assert urlsplit(env["MLFLOW_TRACKING_URI"]).password not in pod_text
    credentials = user_secret(hub, pod_name)
    assert credentials["metadata"]["labels"]["hub.jupyter.org/username"] == name
    assert base64.b64decode(credentials["data"]["AWS_SECRET_ACCESS_KEY"]).decode() == env["AWS_SECRET_ACCESS_KEY"]
    # Both owned by the release's Secret "hub": helm uninstall takes them along.
    for owned in (pod, credentials):
        assert [o["name"] for o in owned["metadata"]["ownerReferences"] if o["kind"] == "Secret"] == ["hub"]
    assert env["ENERTEF_BUCKET"] == f"user-{name}"
    # No admin credential reaches the pod (the names; and no value anywhere in its env).
    declared = {item["name"] for c in pod["spec"]["containers"] for item in c.get("env", [])}
    assert not declared & {"ENERTEF_POSTGRES_ADMIN_URL", "ENERTEF_MINIO_ACCESS_KEY", "ENERTEF_MINIO_SECRET_KEY",
                           "ENERTEF_SECRET_KEY", "ENERTEF_HUB_ADMIN_PASSWORD"}
    admin_values = [services_env["ENERTEF_MINIO_SECRET_KEY"], services_env["ENERTEF_SECRET_KEY"],
                    urlsplit(services_env["ENERTEF_POSTGRES_ADMIN_URL"]).password, hub.admin_password]
    assert not [k for k, v in env.items() if any(secret in v for secret in admin_values)]
    # The image's start hook seeded the home (the directory standing in for the claim).
    assert (Path(hub.api_server.get(f"/api/v1/persistentvolumes/{hub.pvc(f'claim-{name}')['spec']['volumeName']}")
                 ["spec"]["hostPath"]["path"]) / "notebook-scripts" / "01-mlflow-tracking.ipynb").exists()

    # An example notebook runs in the server's kernel, through the proxy pod.
    server_url = hub.api("GET", f"/users/{name}").json()["servers"][""]["url"]
    if server_url.startswith("/"):  # without per-user origins: a path on the hub's host
        server_url = hub.url + server_url
    # In a thread of its own: Playwright's sync API keeps an event loop in this one.
    with ThreadPoolExecutor(1) as pool:
        errors = pool.submit(asyncio.run, execute_notebook(
            server_url, hub.token, "notebook-scripts/01-mlflow-tracking.ipynb")).result()
    assert not errors, "\n\n".join(errors)
    with psycopg.connect(services_env["ENERTEF_POSTGRES_ADMIN_URL"]) as conn, acting_as(conn, f"u_{name}"):
        rows = conn.execute(sql.SQL("SELECT r.artifact_uri FROM {s}.runs r JOIN {s}.experiments e USING (experiment_id)"
                                    " WHERE e.name = '01-getting-started' AND r.status = 'FINISHED'")
                            .format(s=sql.Identifier(f"u_{name}"))).fetchall()
    assert rows and rows[0][0].startswith(f"s3://user-{name}/mlflow/")
    keys = [o["Key"] for o in admin_s3(services_env).list_objects_v2(Bucket=f"user-{name}").get("Contents", [])]
    assert any(k.endswith("notes/hello.txt") for k in keys), keys
    FIGURES["journey_signup_to_notebook_s"] = time.monotonic() - started

    # The admin deletes the user in the admin panel: pod gone, claim kept, access revoked.
    user_uri = local_uri(env["MLFLOW_TRACKING_URI"], services_env)
    user_s3 = s3_client(env, endpoint_url=services_env["ENERTEF_MINIO_ENDPOINT"])  # the pod's endpoint is in-cluster
    delete_in_admin_panel(admin_page, hub, name)
    wait_for(lambda: hub.pod(pod_name) is None, timeout=90, what="the user's pod deleted")
    wait_for(lambda: pod_name not in hub.node.containers, timeout=30, what="the user's process stopped")
    assert user_secret(hub, pod_name) is None, "the deleted user's credential Secret is still there"
    assert hub.pvc(f"claim-{name}") is not None, "claim deleted although purge_on_delete is false"
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(user_uri, connect_timeout=5).close()
    with pytest.raises(botocore.exceptions.ClientError):
        user_s3.list_objects_v2(Bucket=f"user-{name}")

    # The same name again is a new account: a home volume of its own.
    assert signup(hub, name, PASSWORD).status_code == 200
    approve(hub, name, admin=hub.admin_session())
    start_and_wait(hub, name)
    pod = hub.pod(pod_name)
    assert [v["persistentVolumeClaim"]["claimName"] for v in pod["spec"]["volumes"]
            if "persistentVolumeClaim" in v] == [f"claim-{name}-i2"]
    assert hub.pvc(f"claim-{name}-i2")["status"]["phase"] == "Bound"
    assert hub.pvc(f"claim-{name}") is not None
    FIGURES["journey_s"] = time.monotonic() - started


def test_storage_outage_is_a_clear_message_and_no_crash_loop(kube_hub, new_page, services_env):
    hub = kube_hub
    hub_process = running_hub_pod(hub.node)
    assert hub_process, hub.log_tail()
    limit = 5  # the chart's hub.consecutiveFailureLimit
    name = unique_name("koutage")
    assert signup(hub, name, PASSWORD).status_code == 200
    approve(hub, name, admin=hub.admin_session())  # (which makes the hub user)
    # MinIO goes down: its Service now leads to a port nothing listens on.
    working = hub.node.external[("enertef-minio", 9000)]
    hub.node.set_external("enertef-minio", 9000, ("127.0.0.1", free_port()))
    try:
        page = new_page()
        log_in(page, hub, name, PASSWORD)
        page.wait_for_url(re.compile(rf".*/hub/spawn-pending/{name}.*"), timeout=60_000)
        # The spawn page says what failed and what to do, in plain words: in its progress log,
        # or, when the spawn failed before the page was shown, on the "Spawn failed" page.
        said = page.locator("#progress-log, .container p").filter(has_text="is unreachable")
        expect(said.first).to_contain_text(re.compile(r"MinIO at http://enertef-minio(\.[a-z0-9-]+)?:9000\) is unreachable"), timeout=90_000)
        expect(said.first).to_contain_text("start your server again")
        assert services_env["ENERTEF_MINIO_SECRET_KEY"] not in page.content()
        def spawn_over():
            assert running_hub_pod(hub.node) is hub_process and hub_process.restarts == 0, \
                "the hub exited (crash-loop):\n" + hub.log_tail(30)
            try:
                return not hub.api("GET", f"/users/{name}").json().get("pending")
            except (requests.RequestException, ValueError):
                return False  # the hub is going away: the next round says so

        wait_for(spawn_over, timeout=120, what="the failed spawn to finish")
        for _ in range(limit + 1):
            response = hub.api("POST", f"/users/{name}/server")
            assert response.status_code in (201, 202, 500), response.text
            wait_for(spawn_over, timeout=90, what="the failed spawn to finish")
        time.sleep(3)  # JupyterHub aborts 2 s after the limit is reached
        assert hub.api("GET", f"/users/{name}").json()["servers"] == {}
    finally:
        hub.node.set_external("enertef-minio", 9000, working)
    # The hub process is the same one: it did not exit (no container restart).
    assert running_hub_pod(hub.node) is hub_process, hub.log_tail()
    assert hub_process.restarts == 0 and not [e for e in hub.node.exits if e[0].startswith("hub-")]
    assert "consecutive spawn failures" not in hub.log_text()
    assert requests.get(f"{hub.url}/hub/health", timeout=10).status_code == 200
    # And the user can start once MinIO is back.
    start_and_wait(hub, name)


def test_purge_on_delete_removes_the_claim(kube_hub, admin_page, services_env):
    hub = kube_hub
    old_hub = running_hub_pod(hub.node)
    proc = subprocess.run(
        ["helm", "upgrade", RELEASE, str(chart_dir()), "--namespace", hub.namespace, "--reuse-values",
         # chart-values/jupyterhub.yaml: "change both together"
         "--set", "hub.config.Workbench.purge_on_delete=true", "--set", "hub.config.KubeSpawner.delete_pvc=true"],
        capture_output=True, text=True, env=hub.env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    # The new values roll the hub Deployment (the Secret's checksum): a new hub pod.
    wait_for(lambda: (c := running_hub_pod(hub.node)) and c is not old_hub, timeout=120, what="the new hub pod")

    def answers():
        try:
            return requests.get(f"{hub.url}/hub/api/", timeout=2).status_code == 200
        except requests.RequestException:
            return False

    wait_for(answers, timeout=180, what="the upgraded hub")
    name = unique_name("kpurge")
    assert signup(hub, name, PASSWORD).status_code == 200
    approve(hub, name, admin=hub.admin_session())
    start_and_wait(hub, name)
    assert hub.pvc(f"claim-{name}") is not None
    delete_in_admin_panel(admin_page, hub, name)
    wait_for(lambda: hub.pvc(f"claim-{name}") is None, timeout=90, what="the claim purged")
    with psycopg.connect(services_env["ENERTEF_POSTGRES_ADMIN_URL"]) as conn:
        assert conn.execute("SELECT count(*) FROM pg_namespace WHERE nspname = %s", (f"u_{name}",)).fetchone()[0] == 0
    assert f"user-{name}" not in [b["Name"] for b in admin_s3(services_env).list_buckets()["Buckets"]]


def test_uninstall_stops_users_and_a_reinstall_never_hands_out_old_data(kube_hub, services_env):
    """helm uninstall: users' pods and credential Secrets go (owned by the release's Secret
    "hub"); the hub's database goes too, homes, stores and buckets stay. helm install on
    the same data: a sign-up of a name the registry still knows is a new account."""
    hub = kube_hub
    name = unique_name("kre")
    pod_name = f"jupyter-{name}"
    assert signup(hub, name, PASSWORD).status_code == 200
    approve(hub, name, admin=hub.admin_session())
    start_and_wait(hub, name)
    first = pod_env(hub, pod_name)
    assert user_secret(hub, pod_name) is not None

    proc = subprocess.run(["helm", "uninstall", RELEASE, "--namespace", hub.namespace, "--wait", "--timeout", "120s"],
                          capture_output=True, text=True, env=hub.env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    wait_for(lambda: hub.pod(pod_name) is None, timeout=90, what="the user's pod deleted with the release")
    wait_for(lambda: user_secret(hub, pod_name) is None, timeout=60,
             what="the user's credential Secret deleted with the release")
    wait_for(lambda: pod_name not in hub.node.containers, timeout=30, what="the user's process stopped")
    assert hub.pvc(f"claim-{name}") is not None, "helm uninstall must keep users' homes"

    # The same data, a new release: the hub's database is new, the account registry is not.
    helm_install(hub.env, hub.namespace, hub.dir, hub.token, hub.url)
    wait_for(lambda: running_hub_pod(hub.node), timeout=120, what="the new hub pod")
    wait_hub_answers(hub)
    assert hub.api("GET", f"/users/{name}").status_code == 404, "the new hub knows the old user"
    assert signup(hub, name, "Someone-else-passw0rd!").status_code == 200
    approve(hub, name, admin=hub.admin_session())
    start_and_wait(hub, name)
    pod = hub.pod(pod_name)
    assert [v["persistentVolumeClaim"]["claimName"] for v in pod["spec"]["volumes"]
            if "persistentVolumeClaim" in v] == [f"claim-{name}-i2"], "the new account mounts the old home"
    second = pod_env(hub, pod_name)
    assert second["ENERTEF_BUCKET"] != first["ENERTEF_BUCKET"]
    assert urlsplit(second["MLFLOW_TRACKING_URI"]).username != urlsplit(first["MLFLOW_TRACKING_URI"]).username
    # The old account's keys no longer work: it was ended, its data kept for an admin to restore.
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(local_uri(first["MLFLOW_TRACKING_URI"], services_env), connect_timeout=5).close()
    old_s3 = s3_client(first, endpoint_url=services_env["ENERTEF_MINIO_ENDPOINT"])
    with pytest.raises(botocore.exceptions.ClientError):
        old_s3.list_objects_v2(Bucket=first["ENERTEF_BUCKET"])
    assert first["ENERTEF_BUCKET"] in [b["Name"] for b in admin_s3(services_env).list_buckets()["Buckets"]]
