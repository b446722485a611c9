"""Spawn time and memory: our hub against a stock JupyterHub, measured side by side in one run.

    scripts/services.sh start && . .local/services.env
    .venv/bin/python -m benchmarks.bench_spawn [--users 12] [--storm 8]

Two hubs run at once on this machine, in development mode (every server as this OS
user): the baseline is stock JupyterHub with ``SimpleLocalProcessSpawner``; ours is the
e2e test hub (EnerTEFAuthenticator + EnerTEFLocalSpawner against the real PostgreSQL
and MinIO). For each variant it prints:

- first spawn of a new user and repeat spawn of the same user (p50, p95), interleaved
  user by user, in an order that rotates each round, so load and order affect every
  lane alike. Ours has two first-spawn lanes: users who signed up and were approved
  (the approval prepared their workbench in the background), and users an admin
  made without a sign-up (everything is provisioned at the first spawn, and the
  store gets MLflow's tables once the server is up: the next spawn waits for that).
  Each lane is also compared with stock's spawn of the same round (paired), which
  the machine's load drifting during the run does not blur;
- for the same spawns, the time from the request to the launch of the server's process
  (the hub's own part of the critical path: provisioning and home preparation for
  ours), which the server's start-up time, seconds long and noisy, does not blur;
- a storm of N first spawns at once (ours: not prepared, so provisioning is in it):
  when the last server was ready, and the peak RSS of the hub's whole process tree
  (hub, proxy, servers, helpers) while it ran; a few rounds, the hubs taking turns
  to go first, and the median of each (one storm alone varies by 20 %).

"Ready" is the moment the user's server logs that it is running (the timestamp of its
own log line), measured from the spawn request: JupyterHub's polling delay is taken
out, for both variants alike. Targets (issue 13): first spawn at most +150 ms p50 over
stock, repeat at most +20 ms; the storm within 1.2x stock in time and memory. Nothing
is asserted: the figures are for humans.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import os
import re
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil
import requests

from tests.harness.forms import signup_and_approve
from tests.harness.hub import running_hub, wait_for_event, wait_prepared

STOCK_CONFIG = """
c = get_config()  # noqa
import os
c.JupyterHub.ip = "127.0.0.1"
c.JupyterHub.port = int(os.environ["BENCH_PORT"])
c.JupyterHub.hub_port = int(os.environ["BENCH_PORT"]) + 1
c.ConfigurableHTTPProxy.api_url = f"http://127.0.0.1:{int(os.environ['BENCH_PORT']) + 2}"
c.JupyterHub.db_url = "sqlite:///" + os.environ["BENCH_DIR"] + "/jupyterhub.sqlite"
c.JupyterHub.cookie_secret_file = os.environ["BENCH_DIR"] + "/cookie_secret"
c.JupyterHub.pid_file = os.environ["BENCH_DIR"] + "/jupyterhub.pid"
c.JupyterHub.cleanup_servers = True
c.JupyterHub.tornado_settings = {"slow_spawn_timeout": 0}
c.JupyterHub.authenticator_class = "dummy"
c.Authenticator.allow_all = True
c.JupyterHub.spawner_class = "jupyterhub.spawner.SimpleLocalProcessSpawner"
c.SimpleLocalProcessSpawner.home_dir_template = os.environ["BENCH_DIR"] + "/homes/{username}"
c.Spawner.default_url = "/lab"
if os.geteuid() == 0:
    c.Spawner.args = ["--allow-root"]  # development mode as root, as our local spawner allows it
c.Spawner.start_timeout = 180
c.Spawner.http_timeout = 120
c.JupyterHub.services = [{"name": "bench", "api_token": os.environ["BENCH_TOKEN"]}]
c.JupyterHub.load_roles = [{"name": "bench", "scopes": ["admin:users", "admin:servers", "list:users"],
                            "services": ["bench"]}]
"""

# The server's own "is running" line: "[I 2026-11-27 04:30:01.123 ServerApp] ... is running at:"
RUNNING = re.compile(r"\[I (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}) ServerApp\].*is running at")
# The hub launching the server's process (LocalProcessSpawner.start, both variants):
# what happens before it is the hub's own part of the spawn's critical path.
LAUNCHING = re.compile(r"\[I (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}) JupyterHub spawner:\d+\] Spawning ")


def free_port_block(n: int = 3) -> int:
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            base = sock.getsockname()[1]
        if base + n < 65000 and all(_free(base + i) for i in range(n)):
            return base


def _free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


class Variant:
    """One running hub: how to create a user, spawn and stop, and where its log is."""

    def __init__(self, name: str, url: str, token: str, log_path: Path, pid: int, make_user):
        self.name, self.url, self.token, self.log_path, self.pid = name, url, token, log_path, pid
        self.make_user = make_user

    def api(self, method: str, path: str, **kw) -> requests.Response:
        return requests.request(method, f"{self.url}/hub/api{path}",
                                headers={"Authorization": f"token {self.token}"}, timeout=60, **kw)

    def ready_times(self, since: int, pattern: re.Pattern = RUNNING) -> list[dt.datetime]:
        """Timestamps of "server is running" lines (or other *pattern*) logged after byte offset ``since``."""
        with open(self.log_path, "rb") as f:
            f.seek(since)
            text = f.read().decode(errors="replace")
        return [dt.datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S.%f") for m in pattern.finditer(text)]

    def spawn(self, users: list[str]) -> list[float]:
        """Start the servers of ``users`` at once; seconds from request to each server's readiness."""
        offset = self.log_path.stat().st_size
        started = dt.datetime.now()
        for user in users:
            r = self.api("POST", f"/users/{user}/server")
            assert r.status_code in (201, 202), (self.name, user, r.status_code, r.text[:300])
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            times = self.ready_times(offset)
            if len(times) >= len(users):
                break
            time.sleep(0.05)
        else:
            raise RuntimeError(f"{self.name}: not every server became ready ({users})")
        # wait until the hub agrees, so the next step starts from a quiet hub
        for user in users:
            while not self.api("GET", f"/users/{user}").json()["servers"].get("", {}).get("ready"):
                time.sleep(0.1)
        self.launched = sorted((t - started).total_seconds() for t in self.ready_times(offset, LAUNCHING))
        return sorted((t - started).total_seconds() for t in times[:len(users)])

    def stop(self, users: list[str]):
        for user in users:
            self.api("DELETE", f"/users/{user}/server")
        for user in users:
            while self.api("GET", f"/users/{user}").json()["servers"]:
                time.sleep(0.1)

    def tree_rss(self) -> int:
        try:
            root = psutil.Process(self.pid)
            procs = [root, *root.children(recursive=True)]
        except psutil.Error:
            return 0
        total = 0
        for proc in procs:
            with contextlib.suppress(psutil.Error):
                total += proc.memory_info().rss
        return total


@contextlib.contextmanager
def stock_hub():
    state = Path(tempfile.mkdtemp(prefix="bench-stock-"))
    (state / "homes").mkdir()
    (state / "config.py").write_text(STOCK_CONFIG)
    base, token = free_port_block(), secrets.token_hex(16)
    env = {**os.environ, "BENCH_PORT": str(base), "BENCH_DIR": str(state), "BENCH_TOKEN": token,
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    log_path = state / "jupyterhub.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([str(Path(sys.executable).parent / "jupyterhub"), "-f", str(state / "config.py")],
                                cwd=state, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{base}"
    try:
        for _ in range(300):
            with contextlib.suppress(requests.RequestException):
                if requests.get(f"{url}/hub/api/", timeout=2).status_code == 200:
                    break
            time.sleep(0.2)

        def make_user(name: str) -> str:
            requests.post(f"{url}/hub/api/users/{name}", headers={"Authorization": f"token {token}"}, timeout=30)
            return name

        yield Variant("stock", url, token, log_path, proc.pid, make_user)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


@contextlib.contextmanager
def our_hub(services: dict):
    state = Path(tempfile.mkdtemp(prefix="bench-ours-"))
    with running_hub(services, state) as hub:
        def make_user(name: str) -> str:
            # Signed up and approved (NativeAuthenticator), as users are. The approval
            # prepares the workbench in the background; a user logs in seconds later,
            # so the spawn waits until it is done (the spawn would also wait for it).
            name = signup_and_approve(hub, name, secrets.token_urlsafe(16))
            wait_prepared(hub, name, timeout=120)
            hub.api("POST", f"/users/{name}")
            return name

        def make_unprepared_user(name: str) -> str:
            # Made by an admin through the REST API, without a sign-up: nothing is
            # prepared, so the first spawn provisions everything while the user waits.
            hub.api("POST", f"/users/{name}").raise_for_status()
            return name

        def tables_made(name: str):
            # An unprepared first spawn's store gets MLflow's tables once the server is
            # up: wait for that work too, so it does not load the next lane's spawn.
            wait_for_event(hub, name, "store-tables",
                           what=f"{name}'s store got no MLflow tables after its first spawn")

        variant = Variant("ours", hub.url, hub.token, hub.log_path, hub.process.pid, make_user)
        variant.make_unprepared_user = make_unprepared_user
        variant.tables_made = tables_made
        yield variant


def row(label: str, seconds: list[float]) -> dict:
    ms = sorted(s * 1000 for s in seconds)
    p95 = ms[min(len(ms) - 1, round(0.95 * (len(ms) - 1)))]
    out = {"p50": statistics.median(ms), "p95": p95}
    print(f"  {label:<34} n={len(ms):<3} p50={out['p50']:>8.0f} ms  p95={p95:>8.0f} ms")
    return out


def paired_differences(ours: list[float], stock: list[float]) -> str:
    """Median and quartiles of the per-round differences ``ours[i] - stock[i]``, in ms."""
    differences = sorted((a - b) * 1000 for a, b in zip(ours, stock))
    q1, median, q3 = statistics.quantiles(differences, n=4)
    return f"{median:+.0f} ms (middle half {q1:+.0f} to {q3:+.0f} ms)"


def storm(variant: Variant, users: list[str]) -> tuple[float, int]:
    peak = [variant.tree_rss()]
    done = threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], variant.tree_rss())
            time.sleep(0.1)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        times = variant.spawn(users)
    finally:
        done.set()
        sampler.join()
    return max(times), peak[0]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--users", type=int, default=12, help="users per lane for first/repeat spawns")
    parser.add_argument("--storm", type=int, default=8, help="first spawns at once")
    parser.add_argument("--storm-rounds", type=int, default=3,
                        help="storms per hub, the hubs taking turns to go first (the figure is the median)")
    args = parser.parse_args()
    services = {k: v for k, v in os.environ.items() if k.startswith("ENERTEF_")}
    if not services.get("ENERTEF_POSTGRES_ADMIN_URL"):
        sys.exit("start the services first: scripts/services.sh start && . .local/services.env")
    tag = secrets.token_hex(3)
    with stock_hub() as stock, our_hub(services) as ours:
        # Lanes of spawns: (label, hub, users). Each round runs every lane once, in an
        # order that rotates from round to round, so no lane always follows another.
        # A lane's last element: the work its hub still does for a user once the spawn is
        # over, which the next spawn (of another lane) must not share the machine with.
        nothing = lambda name: None  # noqa: E731
        first_lanes = [
            ("stock", stock, [stock.make_user(f"b{tag}s{i}") for i in range(args.users)], nothing),
            ("ours", ours, [ours.make_user(f"b{tag}o{i}") for i in range(args.users)], nothing),
            ("ours, not prepared", ours, [ours.make_unprepared_user(f"b{tag}u{i}") for i in range(args.users)],
             ours.tables_made),
        ]
        repeat_lanes = [lane[:3] + (nothing,) for lane in first_lanes[:2]]
        ready = {}
        launched = {}
        server_start = {}
        for phase, lanes in (("first", first_lanes), ("repeat", repeat_lanes)):
            for i in range(args.users):
                shift = i % len(lanes)
                for label, hub, users, after in lanes[shift:] + lanes[:shift]:
                    [is_ready] = hub.spawn([users[i]])
                    [is_launched] = hub.launched
                    ready.setdefault((phase, label), []).append(is_ready)
                    launched.setdefault((phase, label), []).append(is_launched)
                    server_start.setdefault((phase, label), []).append(is_ready - is_launched)
                    after(users[i])
                    hub.stop([users[i]])
        print(f"spawn time to the server's readiness ({args.users} users per lane, interleaved)")
        print("  ours: signed up and approved (the approval prepared the workbench in the background);")
        print("  ours, not prepared: made by an admin without a sign-up, provisioned at the first spawn")
        rows = {key: row(f"{key[1]}, {key[0]} spawn", values) for key, values in ready.items()}
        for phase, label in rows:
            if label != "stock":
                added = rows[(phase, label)]["p50"] - rows[(phase, "stock")]["p50"]
                ratio = rows[(phase, label)]["p50"] / rows[(phase, "stock")]["p50"]
                print(f"  {phase} spawn, {label}: adds {added:+.0f} ms p50 (ratio {ratio:.2f})")
        # The server's own start varies by hundreds of ms with the machine's load, which
        # drifts during a run: compare each round's spawn with stock's in the same round.
        print("  paired by round (ours minus stock in the same round; p50, and the middle half):")
        for phase, label in rows:
            if label != "stock":
                differences = paired_differences(ready[(phase, label)], ready[(phase, "stock")])
                print(f"  {phase} spawn, {label}: {differences}")
        # The part of the spawn the hub itself adds, free of the server's own start-up
        # time (seconds, and the noisiest part on a small machine).
        print("spawn request to the server's process launch (the hub's part of the critical path)")
        launch_rows = {key: row(f"{key[1]}, {key[0]} spawn", values) for key, values in launched.items()}
        for phase, label in launch_rows:
            if label != "stock":
                added = launch_rows[(phase, label)]["p50"] - launch_rows[(phase, "stock")]["p50"]
                print(f"  {phase} spawn, {label}: adds {added:+.0f} ms p50 before the server's process starts")
        # The rest of "ready": the server's own start, the same program in both hubs.
        print("the server's process launch to its readiness (the server's own start)")
        for key, values in server_start.items():
            row(f"{key[1]}, {key[0]} spawn", values)
        print(f"storm: {args.storm} first spawns at once (ours not prepared: provisioning included),"
              f" {args.storm_rounds} rounds, the hubs in turn")
        result = {"stock": [], "ours": []}
        for r in range(args.storm_rounds):
            for v in ((stock, ours) if r % 2 == 0 else (ours, stock)):
                make = getattr(v, "make_unprepared_user", v.make_user)
                users = [make(f"s{tag}{r}{v.name[0]}{i}") for i in range(args.storm)]
                result[v.name].append(storm(v, users))
                if v is ours:
                    for user in users:
                        ours.tables_made(user)
                v.stop(users)
                print(f"  round {r + 1}, {v.name:<6} all ready after {result[v.name][-1][0]:6.2f} s,"
                      f" process tree peak {result[v.name][-1][1] / 2**20:7.0f} MB")
        time_ratio = (statistics.median(t for t, _ in result["ours"])
                      / statistics.median(t for t, _ in result["stock"]))
        memory_ratio = (statistics.median(m for _, m in result["ours"])
                        / statistics.median(m for _, m in result["stock"]))
        print(f"  ratio ours/stock of the medians: time {time_ratio:.2f}, memory {memory_ratio:.2f}")


if __name__ == "__main__":
    main()
