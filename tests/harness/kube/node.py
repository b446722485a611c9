"""What a node would add to the control plane: kubelet, kube-proxy, DNS, volumes.

:class:`Node` polls one namespace of the API server and

- **kubelet**: for each pod kwok marks Running, starts what its image would start
  (:func:`image_profile`) as a local process, with the pod's own env (``valueFrom``
  resolved from the API, Service variables as the kubelet adds them), command and
  args (``$(VAR)`` expanded), volumes (Secrets, ConfigMaps, the ServiceAccount token
  from the TokenRequest API, claims) bind-mounted at their mountPaths in a private
  mount namespace, as the pod's ``runAsUser``/``fsGroup``, bound to the pod's IP. It
  stops the process when the pod goes and restarts it (counting, as
  ``restartCount``) when a ``restartPolicy: Always`` container exits;
- **kube-proxy**: a TCP forwarder on each Service's cluster IP and port to a Running
  pod matching its selector (or to a fixed address for Services of parts that run
  outside the cluster here: PostgreSQL, MinIO), for the Services of its namespace and
  of the ``peers`` namespaces (e.g. where PostgreSQL and MinIO live);
- **DNS**: an ``/etc/hosts`` per pod with every such Service's name and cluster IP;
- **volume provisioner**: a hostPath PersistentVolume (a directory) bound to each
  pending claim, as a dynamic provisioner would.

Processes log to ``<state>/pods/<pod>/log``. Everything stops with :meth:`Node.stop`.
"""

from __future__ import annotations

import base64
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path

from .api import REPO, KubeAPI

HERE = Path(__file__).resolve().parent


@dataclass
class ImageProfile:
    """What an image would bring: its programs, working dir, user, env and files."""

    name: str
    path: str
    workdir: str
    uid: int
    gid: int
    env: dict[str, str] = field(default_factory=dict)
    files: list[tuple[str, str]] = field(default_factory=list)  # (host source, container path)
    entrypoint: list[str] = field(default_factory=list)
    python: bool = True


def hub_python_bin() -> Path:
    """The hub image's Python environment (.venv-hub, the image's frozen packages), else .venv."""
    for venv in (os.environ.get("ENERTEF_HUB_VENV"), REPO / ".venv-hub", REPO / ".venv"):
        if venv and (Path(venv) / "bin" / "jupyterhub").exists():
            return Path(venv) / "bin"
    raise RuntimeError("no Python environment with jupyterhub: run scripts/bootstrap.sh")


def image_profile(image: str) -> ImageProfile | None:
    """The local stand-in of a container image, or None for an image nothing plays."""
    system_path = "/usr/local/bin:/usr/bin:/bin"
    if "configurable-http-proxy" in image:
        return ImageProfile("proxy", system_path, "/", 65534, 65534, python=False)
    if "enertef-hub" in image or "k8s-hub" in image:
        # jn-tb/hub/Dockerfile: z2jh's hub image plus our package and config snippets.
        return ImageProfile(
            "hub", f"{hub_python_bin()}:{system_path}", "/srv/jupyterhub", 1000, 1000,
            env={"HOME": "/home/jovyan", "LANG": "C.UTF-8"},
            files=[(str(REPO / "jupyterhub_config.d"), "/usr/local/etc/jupyterhub/jupyterhub_config.d")],
        )
    if "enertef-notebook" in image:
        # jn-tb/notebook/Dockerfile: docker-stacks' start.sh sources the
        # before-notebook.d hooks (ours seeds the home), then execs the command.
        venv = Path(os.environ.get("ENERTEF_USER_VENV", REPO / ".venv")) / "bin"
        hooks = 'for f in /usr/local/bin/before-notebook.d/*.sh; do [ -f "$f" ] && . "$f"; done; exec "$@"'
        return ImageProfile(
            "notebook", f"{venv}:{system_path}", "/home/jovyan", 1000, 100,
            env={"HOME": "/home/jovyan", "NB_USER": "jovyan", "NB_UID": "1000", "NB_GID": "100",
                 "SHELL": "/bin/bash", "LANG": "C.UTF-8"},
            files=[(str(REPO / "notebook-scripts"), "/opt/enertef/notebook-scripts"),
                   (str(REPO / "jn-tb" / "notebook" / "before-notebook.d"), "/usr/local/bin/before-notebook.d")],
            entrypoint=["bash", "-c", hooks, "start.sh"],
        )
    return None


def expand(text: str, env: dict[str, str]) -> str:
    """Kubernetes' ``$(VAR)`` expansion in command, args and env values (``$$`` escapes)."""
    return re.sub(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_]*)\)",
                  lambda m: "$" if m.group(0) == "$$" else env.get(m.group(1), m.group(0)), text)


def parse_quantity(text: str) -> float:
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "m": 1e-3}
    for suffix, factor in units.items():
        if text.endswith(suffix):
            return float(text[: -len(suffix)]) * factor
    return float(text)


def free_to_bind(ip: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((ip, port))
        except OSError:
            return False
    return True


class Forwarder:
    """kube-proxy for one Service port: accept on cluster IP:port, pipe to an endpoint."""

    def __init__(self, ip: str, port: int, resolve):
        self.resolve = resolve
        self.service: tuple[str, int] | None = None
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self.sock.bind((ip, port))
        except OSError as exc:
            raise RuntimeError(f"cannot listen on Service address {ip}:{port} ({exc}): another "
                               "cluster with the same service CIDR runs here? (ENERTEF_KUBE_SERVICE_CIDR)") from None
        self.sock.listen(128)
        self.sock.settimeout(0.5)
        self.closed = False
        self.connections: set[socket.socket] = set()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self.closed:
            try:
                client, _ = self.sock.accept()
            except (TimeoutError, socket.timeout):
                continue
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket):
        target = self.resolve()
        try:
            if target is None:
                return  # no ready endpoint: the connection is refused, as kube-proxy does
            upstream = socket.create_connection(target, timeout=10)
        except OSError:
            client.close()
            return
        upstream.settimeout(None)
        client.settimeout(None)
        self.connections |= {client, upstream}
        threading.Thread(target=self._pipe, args=(upstream, client), daemon=True).start()
        self._pipe(client, upstream)

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket):
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for s in (source, sink):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()

    def drop_connections(self):
        """Break every open connection, as when the endpoint behind them goes away."""
        for conn in list(self.connections):
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self.connections.clear()

    def close(self):
        self.closed = True
        self.sock.close()
        self.drop_connections()


@dataclass
class Container:
    """A running stand-in process for one pod."""

    pod: dict
    process: subprocess.Popen
    log_path: Path
    restarts: int = 0


class Node:
    """Kubelet, kube-proxy, DNS and a volume provisioner for one namespace (see module doc)."""

    def __init__(self, api: KubeAPI, env: dict[str, str], namespace: str, state_dir: Path,
                 external: dict[tuple[str, int], tuple[str, int]] | None = None, peers: tuple[str, ...] = ()):
        self.api = api
        self.env = env
        self.ns = namespace
        self.peers = tuple(peers)
        self.dir = state_dir
        self.external = dict(external or {})
        self.containers: dict[str, Container] = {}
        self.forwarders: dict[tuple[str, int], Forwarder] = {}
        self.exits: list[tuple[str, int]] = []
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self.api_host, self.api_port = "127.0.0.1", env["KUBE_API_PORT"]

    def set_external(self, service: str, port: int, target: tuple[str, int]):
        """Lead Service ``service:port`` to ``target`` from now on, breaking open connections."""
        self.external[(service, port)] = target
        for forwarder in self.forwarders.values():
            if forwarder.service == (service, port):
                forwarder.drop_connections()

    # ---------------------------------------------------------------- lifecycle

    def start(self):
        self._thread.start()
        return self

    def stop(self):
        self._stop.set()
        self._thread.join(15)
        for name in list(self.containers):
            self._kill(name)
        for forwarder in self.forwarders.values():
            forwarder.close()

    def _loop(self):
        while not self._stop.is_set():
            try:
                self.sync()
            except Exception as exc:  # keep the node alive; tests read self.errors
                message = f"{type(exc).__name__}: {exc}"
                if not self.errors or self.errors[-1] != message:
                    self.errors.append(message)
            self._stop.wait(0.3)

    def sync(self):
        self._provision_volumes()
        services = [service for ns in (self.ns, *self.peers)
                    for service in self.api.items(f"/api/v1/namespaces/{ns}/services")]
        pods = self.api.items(f"/api/v1/namespaces/{self.ns}/pods")
        self._sync_forwarders(services, pods)
        self._sync_pods(pods, [s for s in services if s["metadata"]["namespace"] == self.ns], services)

    # ------------------------------------------------------------------ volumes

    def _provision_volumes(self):
        for pvc in self.api.items(f"/api/v1/namespaces/{self.ns}/persistentvolumeclaims"):
            if pvc["spec"].get("volumeName") or pvc["metadata"].get("deletionTimestamp"):
                continue
            # A volume of its own per claim (its uid), as a dynamic provisioner gives: a
            # claim deleted and made again (helm uninstall, install) gets an empty one.
            name = f"{self.ns}-{pvc['metadata']['name']}-{pvc['metadata']['uid'][:8]}"
            path = self.dir / "volumes" / name
            path.mkdir(parents=True, exist_ok=True)
            response = self.api.request("POST", "/api/v1/persistentvolumes", json={
                "apiVersion": "v1", "kind": "PersistentVolume",
                "metadata": {"name": name, "labels": {"enertef-test/namespace": self.ns}},
                "spec": {
                    "capacity": {"storage": pvc["spec"]["resources"]["requests"]["storage"]},
                    "accessModes": pvc["spec"]["accessModes"],
                    "persistentVolumeReclaimPolicy": "Retain",
                    "storageClassName": pvc["spec"].get("storageClassName") or "",
                    "hostPath": {"path": str(path)},
                    "claimRef": {"namespace": self.ns, "name": pvc["metadata"]["name"], "uid": pvc["metadata"]["uid"]},
                },
            })
            if response.status_code not in (201, 409):
                raise RuntimeError(f"PersistentVolume {name}: {response.status_code} {response.text[:500]}")

    # -------------------------------------------------------------- kube-proxy

    def endpoint(self, service_name: str, port: dict, namespace: str | None = None):
        """(ip, port) of a Running pod behind a Service port, as kube-proxy would pick."""
        external = self.external.get((service_name, port["port"]))
        if external:
            return external
        if namespace not in (None, self.ns):
            return None  # pods of other namespaces are not played here
        service = self.api.get(f"/api/v1/namespaces/{self.ns}/services/{service_name}", missing_ok=True)
        selector = (service or {}).get("spec", {}).get("selector") or {}
        if not selector:
            return None
        for pod in self.api.items(f"/api/v1/namespaces/{self.ns}/pods"):
            labels = pod["metadata"].get("labels", {})
            if pod.get("status", {}).get("phase") != "Running" or not pod["status"].get("podIP"):
                continue
            if pod["metadata"].get("deletionTimestamp") or any(labels.get(k) != v for k, v in selector.items()):
                continue
            target = port.get("targetPort", port["port"])
            if isinstance(target, str):
                named = [p["containerPort"] for c in pod["spec"]["containers"] for p in c.get("ports", [])
                         if p.get("name") == target]
                if not named:
                    continue
                target = named[0]
            return pod["status"]["podIP"], int(target)
        return None

    def _sync_forwarders(self, services: list[dict], pods: list[dict]):
        wanted = set()
        for service in services:
            ip = service["spec"].get("clusterIP")
            if not ip or ip == "None":
                continue
            for port in service["spec"].get("ports", []):
                key = (ip, port["port"])
                wanted.add(key)
                if key not in self.forwarders:
                    name, ns = service["metadata"]["name"], service["metadata"]["namespace"]
                    self.forwarders[key] = Forwarder(ip, port["port"], lambda n=name, p=port, s=ns: self.endpoint(n, p, s))
                    self.forwarders[key].service = (name, port["port"])
        for key in set(self.forwarders) - wanted:
            self.forwarders.pop(key).close()

    def hosts_file(self, services: list[dict], pod: dict) -> str:
        """/etc/hosts for a pod: what cluster DNS answers for Services, plus the pod itself."""
        lines = ["127.0.0.1\tlocalhost", f"{pod['status']['podIP']}\t{pod['metadata']['name']}"]
        for service in services:
            ip, name, ns = service["spec"].get("clusterIP"), service["metadata"]["name"], service["metadata"]["namespace"]
            if ip and ip != "None":
                # Short names resolve in the pod's own namespace only (its DNS search path).
                short = f"{name} " if ns == self.ns else ""
                lines.append(f"{ip}\t{short}{name}.{ns} {name}.{ns}.svc {name}.{ns}.svc.cluster.local")
        return "\n".join(lines) + "\n"

    # ------------------------------------------------------------------ kubelet

    def _sync_pods(self, pods: list[dict], services: list[dict], all_services: list[dict]):
        live = {}
        for pod in pods:
            name = pod["metadata"]["name"]
            if pod["metadata"].get("deletionTimestamp"):
                continue
            if pod.get("status", {}).get("phase") == "Running" and pod["status"].get("podIP"):
                live[name] = pod
        for name in list(self.containers):
            container = self.containers[name]
            if name not in live or live[name]["metadata"]["uid"] != container.pod["metadata"]["uid"]:
                self._kill(name)
            elif container.process.poll() is not None:
                code = container.process.returncode
                self.exits.append((name, code))
                if container.pod["spec"].get("restartPolicy", "Always") == "Always":
                    restarts = container.restarts + 1
                    self._kill(name)
                    self._run(live[name], services, all_services, restarts)
        for name, pod in live.items():
            if name not in self.containers and name not in self._ignored:
                self._run(pod, services, all_services, 0)

    _ignored: set = set()

    def _kill(self, name: str):
        container = self.containers.pop(name, None)
        if container is None:
            return
        process = container.process
        if process.poll() is None:
            try:
                os.killpg(process.pid, signal.SIGTERM)
                process.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(10)
            except ProcessLookupError:
                pass

    def _run(self, pod: dict, services: list[dict], all_services: list[dict], restarts: int):
        """Start the pod's stand-in; ``services``: of its namespace (env), ``all_services``: in its DNS."""
        name = pod["metadata"]["name"]
        spec_container = pod["spec"]["containers"][0]
        profile = image_profile(spec_container["image"])
        if profile is None:
            self._ignored = self._ignored | {name}
            return
        pod_dir = self.dir / "pods" / name
        pod_dir.mkdir(parents=True, exist_ok=True)
        pod_ip = pod["status"]["podIP"]
        for port in spec_container.get("ports", []):
            if not free_to_bind(pod_ip, port["containerPort"]):
                raise RuntimeError(f"pod {name}: {pod_ip}:{port['containerPort']} is in use on this machine "
                                   "(another cluster with the same pod CIDR? set ENERTEF_KUBE_POD_CIDR)")
        security = {**pod["spec"].get("securityContext", {}), **spec_container.get("securityContext", {})}
        fs_group = pod["spec"].get("securityContext", {}).get("fsGroup")
        uid = security.get("runAsUser", profile.uid)
        gid = security.get("runAsGroup", profile.gid)
        groups = sorted({gid, *([fs_group] if fs_group is not None else []),
                         *pod["spec"].get("securityContext", {}).get("supplementalGroups", [])})
        volumes = self._volumes(pod, pod_dir, fs_group)
        mounts = [(source, target, False) for source, target in profile.files]
        for mount in spec_container.get("volumeMounts", []):
            source = volumes[mount["name"]]
            if mount.get("subPath"):
                source = source / mount["subPath"]
            mounts.append((str(source), mount["mountPath"].rstrip("/") or "/", bool(mount.get("readOnly"))))
        hosts = pod_dir / "hosts"
        hosts.write_text(self.hosts_file(all_services, pod))
        hosts.chmod(0o644)
        mounts.append((str(hosts), "/etc/hosts", True))
        mounts.sort(key=lambda m: m[1].count("/"))

        env = self._environment(pod, spec_container, services, profile)
        argv = [expand(a, env) for a in spec_container.get("command") or profile.entrypoint]
        argv += [expand(a, env) for a in spec_container.get("args", [])]
        if profile.name == "proxy":
            # "--ip=" (every interface of the pod) means the pod's own address here.
            argv = [f"{a}{pod_ip}" if a in ("--ip=", "--api-ip=") else a for a in argv]
        spec = {"mounts": mounts, "workdir": spec_container.get("workingDir") or profile.workdir,
                "uid": uid, "gid": gid, "groups": groups, "env": env, "argv": argv}
        spec_path = pod_dir / "spec.json"
        spec_path.write_text(json.dumps(spec))
        spec_path.chmod(0o600)
        log_path = pod_dir / "log"
        with open(log_path, "ab") as log:
            process = subprocess.Popen(
                ["unshare", "--mount", "--propagation", "private", "--pid", "--fork", "--kill-child",
                 "--mount-proc", sys.executable, str(HERE / "launch.py"), str(spec_path)],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
            )
        self.containers[name] = Container(pod, process, log_path, restarts)

    def _volumes(self, pod: dict, pod_dir: Path, fs_group: int | None) -> dict[str, Path]:
        """Materialise each volume of the pod as a host path (what the kubelet mounts)."""
        paths = {}
        for volume in pod["spec"].get("volumes", []):
            name = volume["name"]
            target = pod_dir / "volumes" / name
            if "persistentVolumeClaim" in volume:
                claim = volume["persistentVolumeClaim"]["claimName"]
                pvc = self.api.get(f"/api/v1/namespaces/{self.ns}/persistentvolumeclaims/{claim}")
                pv = self.api.get(f"/api/v1/persistentvolumes/{pvc['spec']['volumeName']}")
                path = Path(pv["spec"]["hostPath"]["path"])
                if fs_group is not None:
                    os.chown(path, 0, fs_group)
                    path.chmod(0o2775)
                paths[name] = path
                continue
            target.mkdir(parents=True, exist_ok=True)
            files: dict[str, bytes] = {}
            if "secret" in volume:
                secret = self.api.get(f"/api/v1/namespaces/{self.ns}/secrets/{volume['secret']['secretName']}")
                files = {k: base64.b64decode(v) for k, v in (secret.get("data") or {}).items()}
            elif "configMap" in volume:
                cm = self.api.get(f"/api/v1/namespaces/{self.ns}/configmaps/{volume['configMap']['name']}")
                files = {k: v.encode() for k, v in (cm.get("data") or {}).items()}
                files.update({k: base64.b64decode(v) for k, v in (cm.get("binaryData") or {}).items()})
            elif "projected" in volume:
                files = self._projected(pod, volume["projected"])
            elif "emptyDir" in volume:
                pass
            else:
                raise RuntimeError(f"pod {pod['metadata']['name']}: volume type of {name} not supported here")
            for key, data in files.items():
                path = target / key
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(data)
                path.chmod(0o644)
                if fs_group is not None:
                    os.chown(path, 0, fs_group)
            target.chmod(0o2777 if "emptyDir" in volume else 0o755)
            paths[name] = target
        return paths

    def _projected(self, pod: dict, projected: dict) -> dict[str, bytes]:
        files = {}
        for source in projected.get("sources", []):
            if "serviceAccountToken" in source:
                spec = source["serviceAccountToken"]
                sa = pod["spec"].get("serviceAccountName", "default")
                token = self.api.create(f"/api/v1/namespaces/{self.ns}/serviceaccounts/{sa}/token", {
                    "apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                    "spec": {"audiences": [spec["audience"]] if spec.get("audience") else [],
                             "expirationSeconds": spec.get("expirationSeconds", 3607),
                             "boundObjectRef": {"apiVersion": "v1", "kind": "Pod",
                                                "name": pod["metadata"]["name"], "uid": pod["metadata"]["uid"]}},
                })
                files[spec["path"]] = token["status"]["token"].encode()
            elif "configMap" in source:
                cm = self.api.get(f"/api/v1/namespaces/{self.ns}/configmaps/{source['configMap']['name']}")
                for item in source["configMap"].get("items") or [{"key": k, "path": k} for k in cm["data"]]:
                    files[item["path"]] = cm["data"][item["key"]].encode()
            elif "downwardAPI" in source:
                for item in source["downwardAPI"]["items"]:
                    files[item["path"]] = self._field(pod, item["fieldRef"]["fieldPath"]).encode()
        return files

    # ---------------------------------------------------------------------- env

    @staticmethod
    def _field(pod: dict, path: str) -> str:
        values = {
            "metadata.name": pod["metadata"]["name"], "metadata.namespace": pod["metadata"]["namespace"],
            "metadata.uid": pod["metadata"]["uid"], "spec.nodeName": pod["spec"].get("nodeName", ""),
            "spec.serviceAccountName": pod["spec"].get("serviceAccountName", ""),
            "status.podIP": pod["status"]["podIP"], "status.hostIP": pod["status"].get("hostIP", ""),
        }
        if path not in values:
            raise RuntimeError(f"fieldRef {path} not supported here")
        return values[path]

    def _environment(self, pod: dict, container: dict, services: list[dict], profile: ImageProfile) -> dict[str, str]:
        env = {"PATH": profile.path, "HOSTNAME": pod["metadata"]["name"], **profile.env}
        if profile.python:
            # The pod network (podnet/sitecustomize.py): wildcard binds mean the pod's IP.
            env["PYTHONPATH"] = str(HERE / "podnet")
            env["ENERTEF_STANDIN_POD_IP"] = pod["status"]["podIP"]
        # The "kubernetes" Service: the API server itself (no endpoints reconciler here).
        env.update(KUBERNETES_SERVICE_HOST=self.api_host, KUBERNETES_SERVICE_PORT=str(self.api_port),
                   KUBERNETES_SERVICE_PORT_HTTPS=str(self.api_port), KUBERNETES_PORT=f"tcp://{self.api_host}:{self.api_port}")
        if pod["spec"].get("enableServiceLinks", True):
            for service in services:
                ip = service["spec"].get("clusterIP")
                if not ip or ip == "None" or not service["spec"].get("ports"):
                    continue
                prefix = service["metadata"]["name"].upper().replace("-", "_")
                first = service["spec"]["ports"][0]
                env[f"{prefix}_SERVICE_HOST"] = ip
                env[f"{prefix}_SERVICE_PORT"] = str(first["port"])
                env[f"{prefix}_PORT"] = f"tcp://{ip}:{first['port']}"
                for port in service["spec"]["ports"]:
                    if port.get("name"):
                        env[f"{prefix}_SERVICE_PORT_{port['name'].upper().replace('-', '_')}"] = str(port["port"])
                    base = f"{prefix}_PORT_{port['port']}_TCP"
                    env.update({base: f"tcp://{ip}:{port['port']}", f"{base}_PROTO": "tcp",
                                f"{base}_PORT": str(port["port"]), f"{base}_ADDR": ip})
        for source in container.get("envFrom", []):
            ref = source.get("secretRef") or source.get("configMapRef")
            kind = "secrets" if "secretRef" in source else "configmaps"
            obj = self.api.get(f"/api/v1/namespaces/{self.ns}/{kind}/{ref['name']}")
            for key, value in (obj.get("data") or {}).items():
                env[source.get("prefix", "") + key] = base64.b64decode(value).decode() if kind == "secrets" else value
        for item in container.get("env", []):
            if "value" in item:
                env[item["name"]] = expand(item["value"], env)
                continue
            ref = item.get("valueFrom", {})
            if "secretKeyRef" in ref or "configMapKeyRef" in ref:
                key_ref = ref.get("secretKeyRef") or ref["configMapKeyRef"]
                kind = "secrets" if "secretKeyRef" in ref else "configmaps"
                obj = self.api.get(f"/api/v1/namespaces/{self.ns}/{kind}/{key_ref['name']}",
                                   missing_ok=key_ref.get("optional", False)) or {}
                value = (obj.get("data") or {}).get(key_ref["key"])
                if value is None:
                    if key_ref.get("optional"):
                        continue  # an optional key that is absent: the variable is not set
                    raise RuntimeError(f"pod {pod['metadata']['name']}: {kind} {key_ref['name']} has no key {key_ref['key']}")
                env[item["name"]] = base64.b64decode(value).decode() if kind == "secrets" else value
            elif "fieldRef" in ref:
                env[item["name"]] = self._field(pod, ref["fieldRef"]["fieldPath"])
            elif "resourceFieldRef" in ref:
                resource = ref["resourceFieldRef"]["resource"]  # e.g. limits.memory
                kind, what = resource.split(".", 1)
                amount = container.get("resources", {}).get(kind, {}).get(what)
                divisor = parse_quantity(ref["resourceFieldRef"].get("divisor", "1"))
                env[item["name"]] = str(int(-(-parse_quantity(amount) // divisor))) if amount else "0"
            else:
                env[item["name"]] = ""
        return env

    # ------------------------------------------------------------------ queries

    def log(self, pod_name: str) -> str:
        path = self.dir / "pods" / pod_name / "log"
        return path.read_text(errors="replace") if path.exists() else ""

    def container(self, prefix: str) -> Container | None:
        return next((c for n, c in self.containers.items() if n.startswith(prefix)), None)
