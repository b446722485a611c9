"""scripts/start.sh and scripts/stop.sh, run against fake docker/k3d/kubectl/helm.

There is no Docker engine or cluster here, so the tools are small fakes that log
their arguments and answer like the real ones; the scripts run for real with a PATH
holding only those fakes and basic utilities. shellcheck itself must be installed:
a missing shellcheck fails the test rather than skipping it.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPTS = sorted((REPO / "scripts").glob("*.sh"))
START = REPO / "scripts" / "start.sh"
STOP = REPO / "scripts" / "stop.sh"
# Ports 18000-18099 are this suite's; the fake port-forwards listen there.
PORTS = {"ENERTEF_HUB_PORT": "18050", "ENERTEF_MINIO_CONSOLE_PORT": "18051", "ENERTEF_PGADMIN_PORT": "18052"}
# What the scripts need besides the four tools under test.
UTILITIES = ("bash", "env", "dirname", "basename", "sort", "head", "grep", "cat", "mkdir", "sed", "awk",
             "seq", "sleep", "date", "git", "rm", "mktemp", "chmod", "tr", "base64", "touch", "kill",
             "nohup", "cp", "ps")


def test_shellcheck_passes_on_every_script():
    shellcheck = shutil.which("shellcheck")
    assert shellcheck, "shellcheck is not installed (Debian: apt-get install shellcheck)"
    assert SCRIPTS
    proc = subprocess.run([shellcheck, "-x", *map(str, SCRIPTS)], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


# --- fakes -------------------------------------------------------------------------

FAKE_COMMON = """\
#!/bin/bash
echo "$(basename "$0") $*" >> "$FAKE_STATE/calls.log"
"""

FAKE_DOCKER = FAKE_COMMON + """\
case "$1" in
  version) echo "${FAKE_DOCKER_VERSION:-27.3.1}" ;;
  info) [ -z "${FAKE_DOCKER_DOWN:-}" ] ;;
  *) exit 0 ;;
esac
"""

FAKE_K3D = FAKE_COMMON + """\
case "$1 $2" in
  "version ") echo "k3d version v5.7.4"; echo "k3s version v1.33.4-k3s1 (default)" ;;
  "cluster list") [ -e "$FAKE_STATE/cluster" ] ;;
  "cluster create") touch "$FAKE_STATE/cluster" "$FAKE_STATE/running" ;;
  "cluster start") touch "$FAKE_STATE/running" ;;
  "cluster stop") rm -f "$FAKE_STATE/running" ;;
  "cluster delete") rm -f "$FAKE_STATE/cluster" "$FAKE_STATE/running" ;;
  "registry list") [ -e "$FAKE_STATE/registry" ] ;;
  "registry create") touch "$FAKE_STATE/registry" ;;
  "registry delete") rm -f "$FAKE_STATE/registry" ;;
  *) exit 0 ;;
esac
"""

FAKE_KUBECTL = FAKE_COMMON + """\
args=" $* "
case "$args" in
  *" version --client "*) echo "Client Version: v1.33.1" ;;
  *" get --raw /readyz "*) [ -e "$FAKE_STATE/running" ] ;;
  *" get secret "*)
      name=$(echo "$args" | sed 's/.* get secret \\([a-z-]*\\).*/\\1/')
      [ -e "$FAKE_STATE/secret-$name" ] ;;
  *" create secret generic "*)
      name=$(echo "$args" | sed 's/.* create secret generic \\([a-z-]*\\).*/\\1/')
      file=$(echo "$args" | sed 's/.*--from-env-file=\\([^ ]*\\).*/\\1/')
      cp "$file" "$FAKE_STATE/secret-$name"
      touch "$FAKE_STATE/secret-$name" ;;
  *" get statefulset "*) [ -e "$FAKE_STATE/postgres" ] ;;
  *" apply -f "*postgresql.yaml*) touch "$FAKE_STATE/postgres" ;;
  *" get pods "*) echo "hub-5c7d9 1/1 Running 0 1m" ;;
  *" port-forward "*)
      ports=${args##* }; [ -n "$ports" ] || ports=$(echo "$args" | awk '{print $NF}')
      local_port=${ports%%:*}
      exec python3 -c 'import socket, sys, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[2]))); s.listen(5)
while True:
    conn, _ = s.accept(); conn.close()' port-forward "$local_port" ;;
  *) exit 0 ;;
esac
"""

FAKE_HELM = FAKE_COMMON + """\
args=" $* "
case "$args" in
  *" version "*) echo "${FAKE_HELM_VERSION:-v3.16.2}" ;;
  *" status "*)
      release=$(echo "$args" | sed 's/.* status \\([a-z-]*\\).*/\\1/')
      [ -e "$FAKE_STATE/release-$release" ] && echo '{"name":"'"$release"'","info":{"status":"deployed"}}' ;;
  *" upgrade --install "*)
      release=$(echo "$args" | sed 's/.* upgrade --install \\([a-z-]*\\).*/\\1/')
      touch "$FAKE_STATE/release-$release" ;;
  *) exit 0 ;;
esac
"""


@pytest.fixture()
def fake(tmp_path):
    """A PATH with fake docker/k3d/kubectl/helm (those named in ``tools``) and basic utilities."""
    bin_dir = tmp_path / "bin"
    state = tmp_path / "state"
    bin_dir.mkdir()
    state.mkdir()
    for name in UTILITIES:
        found = shutil.which(name)
        if found:
            (bin_dir / name).symlink_to(found)
    (bin_dir / "python3").symlink_to(sys.executable)
    started = []

    class Fake:
        path = tmp_path
        calls_file = state / "calls.log"

        def install(self, *tools):
            sources = {"docker": FAKE_DOCKER, "k3d": FAKE_K3D, "kubectl": FAKE_KUBECTL, "helm": FAKE_HELM}
            for tool in tools:
                (bin_dir / tool).write_text(sources[tool])
                (bin_dir / tool).chmod(0o755)

        def run(self, script, *args, env=None, stdin=subprocess.DEVNULL):
            full_env = {"PATH": str(bin_dir), "HOME": str(tmp_path), "FAKE_STATE": str(state),
                        "ENERTEF_K8S_STATE_DIR": str(tmp_path / "k8s-state"), "ENERTEF_IMAGE_TAG": "t1",
                        **PORTS, **(env or {})}
            proc = subprocess.run(["bash", str(script), *args], env=full_env, capture_output=True,
                                  text=True, timeout=120, stdin=stdin)
            started.extend(self.pids())
            return proc

        def calls(self) -> list[str]:
            return self.calls_file.read_text().splitlines() if self.calls_file.exists() else []

        def pids(self) -> list[int]:
            return [int(p.read_text()) for p in (tmp_path / "k8s-state").glob("port-forward-*.pid")]

        def mark_installed(self):
            for name in ("cluster", "running", "registry", "postgres", "release-enertef",
                         "release-enertef-minio", "release-enertef-pgadmin", "secret-enertef-hub"):
                (state / name).touch()

    yield Fake()
    for pid in set(started):  # only the fake port-forwards these tests started
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    # Wait until they are gone: the next test binds the same ports.
    deadline = time.monotonic() + 10
    while any(alive(pid) for pid in started) and time.monotonic() < deadline:
        time.sleep(0.05)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie child of an exited script counts as gone.
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split()[2] != "Z"


# --- preflight ---------------------------------------------------------------------

def test_preflight_names_every_missing_or_old_tool_and_its_minimum(fake):
    fake.install("docker", "helm")  # no k3d, no kubectl
    proc = fake.run(START, env={"FAKE_DOCKER_VERSION": "20.10.7", "FAKE_HELM_VERSION": "v3.8.0",
                                "FAKE_DOCKER_DOWN": "1"})
    assert proc.returncode != 0
    err = proc.stderr
    assert "k3d is not installed (need k3d >= 5.5.0" in err
    assert "kubectl is not installed (need kubectl >= 1.28.0" in err
    assert "docker 20.10.7 is too old (need docker >= 23.0.0)" in err
    assert "helm 3.8.0 is too old (need helm >= 3.12.0)" in err
    assert "engine does not answer" in err
    # Nothing was attempted after the preflight.
    assert not [c for c in fake.calls() if c.startswith(("docker build", "helm upgrade"))]


def test_preflight_passes_with_current_tools(fake):
    fake.install("docker", "k3d", "kubectl", "helm")
    proc = fake.run(START, "--help")
    assert proc.returncode == 0
    proc = subprocess.run(["bash", "-c", f'. "{START}"; preflight'], capture_output=True, text=True,
                          env={"PATH": str(fake.path / "bin"), "FAKE_STATE": str(fake.path / "state")})
    assert proc.returncode == 0, proc.stderr


# --- first run, second run, stop ---------------------------------------------------

def test_first_run_builds_installs_and_keeps_secrets_off_the_command_line(fake):
    fake.install("docker", "k3d", "kubectl", "helm")
    proc = fake.run(START)
    assert proc.returncode == 0, proc.stderr
    calls = fake.calls()

    def index(prefix):
        matches = [i for i, c in enumerate(calls) if c.startswith(prefix)]
        assert matches, f"no call starting with {prefix!r} in:\n" + "\n".join(calls)
        return matches[0]

    assert index("k3d registry create registry.localhost --port 5001") < index("k3d cluster create enertef")
    assert "--registry-use k3d-registry.localhost:5001" in calls[index("k3d cluster create")]
    for image in ("hub", "notebook"):
        assert index(f"docker build -f {REPO}/jn-tb/{image}/Dockerfile -t localhost:5001/enertef-{image}:t1")
        assert index(f"docker push localhost:5001/enertef-{image}:t1")
    hub_install = calls[index("helm --kube-context k3d-enertef -n enertef upgrade --install enertef jupyterhub/jupyterhub")]
    assert "--version 4.4.0" in hub_install
    assert "--set hub.image.tag=t1 --set singleuser.image.tag=t1" in hub_install
    # The databases and their superuser/root Secrets live in enertef-data, out of the hub's reach.
    assert index("kubectl --context k3d-enertef -n enertef create secret generic enertef-hub") \
        < index("kubectl --context k3d-enertef -n enertef-data apply -f") \
        < index("helm --kube-context k3d-enertef -n enertef upgrade --install enertef ")
    for name in ("enertef-postgresql", "enertef-minio", "enertef-minio-hub", "enertef-pgadmin"):
        assert index(f"kubectl --context k3d-enertef -n enertef-data create secret generic {name} ")
    assert not [c for c in calls if c.startswith("kubectl --context k3d-enertef -n enertef create secret")
                and "enertef-hub " not in c + " "]
    assert index("helm --kube-context k3d-enertef -n enertef-data upgrade --install enertef-minio minio/minio"
                 " --version 5.4.0")
    assert index("helm --kube-context k3d-enertef -n enertef-data upgrade --install enertef-pgadmin runix/pgadmin4")

    # Every generated secret went through a file, never argv, and never to the output.
    secrets = {}
    for name in ("enertef-hub", "enertef-postgresql", "enertef-minio", "enertef-minio-hub", "enertef-pgadmin"):
        for line in (fake.path / "state" / f"secret-{name}").read_text().splitlines():
            key, value = line.split("=", 1)
            secrets[f"{name}.{key}"] = value
    assert set(secrets) >= {"enertef-hub.ENERTEF_POSTGRES_ADMIN_URL", "enertef-hub.ENERTEF_MINIO_ACCESS_KEY",
                            "enertef-hub.ENERTEF_MINIO_SECRET_KEY", "enertef-hub.ENERTEF_SECRET_KEY",
                            "enertef-postgresql.POSTGRES_PASSWORD", "enertef-postgresql.ENERTEF_ADMIN_PASSWORD",
                            "enertef-minio.rootUser", "enertef-minio.rootPassword", "enertef-minio-hub.key",
                            "enertef-pgadmin.password"}
    passwords = [v for k, v in secrets.items() if k not in ("enertef-minio.rootUser", "enertef-hub.ENERTEF_MINIO_ACCESS_KEY")]
    assert all(len(v) >= 24 for v in passwords if "://" not in v)
    assert len(secrets["enertef-hub.ENERTEF_SECRET_KEY"]) == 48
    log = "\n".join(calls) + proc.stdout + proc.stderr
    for value in passwords:
        assert value not in log
    # The hub's copies agree with what PostgreSQL and MinIO were initialised with.
    assert f":{secrets['enertef-postgresql.ENERTEF_ADMIN_PASSWORD']}@" in secrets["enertef-hub.ENERTEF_POSTGRES_ADMIN_URL"]
    # The hub gets its own MinIO user's key, never MinIO's root password.
    assert secrets["enertef-hub.ENERTEF_MINIO_SECRET_KEY"] == secrets["enertef-minio-hub.key"]
    assert secrets["enertef-minio.rootPassword"] not in "\n".join(
        v for k, v in secrets.items() if k.startswith("enertef-hub."))

    # Port-forwards run in the background with pid files, on the configured ports.
    pids = fake.pids()
    assert len(pids) == 3 and all(alive(p) for p in pids)
    assert "http://localhost:18050" in proc.stderr


def test_second_run_changes_nothing_and_reports_status(fake):
    fake.install("docker", "k3d", "kubectl", "helm")
    fake.mark_installed()
    proc = fake.run(START)
    assert proc.returncode == 0, proc.stderr
    changing = [c for c in fake.calls() if any(word in c for word in (
        "docker build", "docker push", "upgrade --install", "cluster create", "registry create",
        "create secret", " apply ", "delete"))]
    assert changing == []
    assert "already installed" in proc.stderr
    assert "JupyterHub      http://localhost:18050" in proc.stderr
    assert "hub-5c7d9" in proc.stderr  # the pod status
    # Running it once more does not start a second set of port-forwards.
    pids = fake.pids()
    proc = fake.run(START)
    assert proc.returncode == 0
    assert sorted(fake.pids()) == sorted(pids)
    assert len([c for c in fake.calls() if "port-forward" in c]) == 3


def test_start_brings_back_a_stopped_cluster(fake):
    fake.install("docker", "k3d", "kubectl", "helm")
    fake.mark_installed()
    (fake.path / "state" / "running").unlink()
    proc = fake.run(START)
    assert proc.returncode == 0, proc.stderr
    assert "k3d cluster start enertef --wait" in fake.calls()


def test_stop_keeps_data_and_stops_only_our_port_forwards(fake):
    fake.install("docker", "k3d", "kubectl", "helm")
    fake.mark_installed()
    assert fake.run(START).returncode == 0
    pids = fake.pids()
    assert pids
    proc = fake.run(STOP)
    assert proc.returncode == 0, proc.stderr
    time.sleep(0.2)
    assert not any(alive(p) for p in pids)
    calls = fake.calls()
    assert "k3d cluster stop enertef" in calls
    assert not [c for c in calls if "delete" in c]
    assert (fake.path / "state" / "cluster").exists()


def test_delete_data_needs_confirmation(fake):
    fake.install("docker", "k3d", "kubectl", "helm")
    fake.mark_installed()
    proc = fake.run(STOP, "--delete-data")  # stdin is not a terminal
    assert proc.returncode != 0
    assert "--yes" in proc.stderr
    assert not [c for c in fake.calls() if "delete" in c]
    proc = fake.run(STOP, "--delete-data", "--yes")
    assert proc.returncode == 0, proc.stderr
    assert "k3d cluster delete enertef" in fake.calls()
    assert "k3d registry delete k3d-registry.localhost" in fake.calls()


def test_unknown_option_is_an_error(fake):
    fake.install("docker", "k3d", "kubectl", "helm")
    for script in (START, STOP):
        proc = fake.run(script, "--frobnicate")
        assert proc.returncode != 0
        assert "unknown option: --frobnicate" in proc.stderr


# --- the notebook image's start hook ------------------------------------------------

HOOK = REPO / "jn-tb" / "notebook" / "before-notebook.d" / "50-enertef-seed.sh"


@pytest.mark.parametrize("python_rc", [0, 1])
def test_start_hook_seeds_and_never_stops_the_server(tmp_path, python_rc):
    """Sourced like docker-stacks' run-hooks does: the calling shell must carry on either way."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "python").write_text(textwrap.dedent(f"""\
        #!/bin/bash
        echo "$*" > "{tmp_path}/python-args"
        exit {python_rc}
        """))
    (bin_dir / "python").chmod(0o755)
    source_dir = tmp_path / "opt-scripts"
    source_dir.mkdir()
    hook = tmp_path / "hook.sh"
    hook.write_text(HOOK.read_text().replace("/opt/enertef/notebook-scripts", str(source_dir)))
    proc = subprocess.run(["bash", "-c", f'set -e; source "{hook}"; echo AFTER-HOOK'],
                          env={"PATH": f"{bin_dir}:/usr/bin:/bin", "HOME": "/home/jovyan"},
                          capture_output=True, text=True)
    assert "AFTER-HOOK" in proc.stdout, proc.stderr
    assert (tmp_path / "python-args").read_text().split() == [
        "-m", "enertef_hub.provisioners.seeding", "--source", str(source_dir), "--home", "/home/jovyan"]
    assert ("WARNING" in proc.stderr) == (python_rc != 0)


def test_a_stale_pid_file_never_kills_an_unrelated_process(fake):
    """After a reboot a pid file may name someone else's process: stop.sh leaves it alone."""
    fake.install("docker", "k3d", "kubectl", "helm")
    fake.mark_installed()
    bystander = subprocess.Popen(["sleep", "60"])
    try:
        state_dir = fake.path / "k8s-state"
        state_dir.mkdir()
        (state_dir / "port-forward-hub.pid").write_text(str(bystander.pid))
        assert fake.run(STOP).returncode == 0
        assert bystander.poll() is None, "stop.sh killed a process that is not its port-forward"
        # start.sh does not take the stranger for the hub's port-forward either.
        (state_dir / "port-forward-hub.pid").write_text(str(bystander.pid))
        assert fake.run(START).returncode == 0
        assert int((state_dir / "port-forward-hub.pid").read_text()) != bystander.pid
    finally:
        bystander.kill()
        bystander.wait()
