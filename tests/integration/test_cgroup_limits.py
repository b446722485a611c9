"""Limits enforced by the kernel, with real processes in real cgroups (enertef_hub.cgroups).

Each test makes its users' groups below a parent of its own (``enertef-test-<pid>-<n>``)
and removes every group it made. Sizes are small: the machine is shared.
Needs root (CI runs as root); this machine has cgroup v1, a cgroup v2 machine runs
the same tests on the v2 backend.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from unittest import mock

import pytest

from enertef_hub import cgroups, resource_limits
from enertef_hub.resource_limits import MIB, Limits
from tests.harness.services import require_root

_counter = itertools.count()

# A process that holds a little memory and waits: a user's server, or the hub.
SLEEPER = "import time\nheld = b'x' * (20 * 1024 * 1024)\nprint('ready', flush=True)\ntime.sleep(600)\n"


@pytest.fixture
def backend():
    """A cgroup file-system backend for this machine, with a parent group of this test's own."""
    require_root("cgroup tests need root")
    mounts = cgroups.read_mounts()
    parent = f"enertef-test-{os.getpid()}-{next(_counter)}"
    made = cgroups.CgroupV1(parent, mounts) if "memory" in mounts.v1 else cgroups.CgroupV2(parent, mounts)
    yield made
    for group in made.groups():
        assert asyncio.run(made.release(group)) == []
    parents = made._hierarchies() if isinstance(made, cgroups.CgroupV1) else [made.parent_dir]
    for directory in parents:
        if os.path.isdir(directory):
            os.rmdir(directory)
    assert not any(os.path.exists(d) for d in parents)


def launch(backend, procs: list[str] | None, code: str, **kwargs) -> subprocess.Popen:
    """Start Python ``code`` inside the groups of ``procs`` (None: where the test runs)."""
    preexec = cgroups.join_fn(procs) if procs else None
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], preexec_fn=preexec,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)


def wait_ready(*procs: subprocess.Popen):
    for proc in procs:
        assert proc.stdout.readline().strip() == "ready", proc.stderr.read()


def alive(proc: subprocess.Popen) -> bool:
    return proc.poll() is None


def cleanup(*procs: subprocess.Popen):
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        for stream in (proc.stdout, proc.stderr):
            if stream:
                stream.close()


def test_a_user_past_the_memory_limit_loses_the_process_not_the_hub_or_another_user(backend):
    users_total = 4 * 1024 * MIB
    alice = asyncio.run(backend.prepare("alice", Limits(memory=200 * MIB, pids=100), users_total))
    bob = asyncio.run(backend.prepare("bob", Limits(memory=200 * MIB, pids=100), users_total))
    hub = launch(backend, None, SLEEPER)  # stands in for the hub: outside every user's group
    alice_server = launch(backend, alice, SLEEPER)
    bob_server = launch(backend, bob, SLEEPER)
    wait_ready(hub, alice_server, bob_server)
    try:
        # alice's kernel allocates 400 MiB, twice her limit, 10 MiB at a time (touched).
        kernel = launch(backend, alice, """
            chunks = []
            for i in range(40):
                chunks.append(b"x" * (10 * 1024 * 1024))
            print("allocated 400 MiB", flush=True)
        """)
        kernel.wait(120)
        assert kernel.returncode == -signal.SIGKILL, (kernel.returncode, kernel.stdout.read())  # the OOM killer
        usage = backend.usage("alice")
        assert usage.oom_kills is None or usage.oom_kills >= 1
        assert usage.memory_limit == 200 * MIB
        if isinstance(backend, cgroups.CgroupV1):
            memory = Path(backend._dir("memory", "alice"))
            assert int((memory / "memory.max_usage_in_bytes").read_text()) <= 200 * MIB
            if (memory / "memory.memsw.limit_in_bytes").exists():  # swap cannot bypass the limit
                assert int((memory / "memory.memsw.limit_in_bytes").read_text()) == 200 * MIB
            parent = Path(backend.parents["memory"])
            assert int((parent / "memory.limit_in_bytes").read_text()) == users_total
        # Only the process that went past the limit died.
        assert alive(hub) and alive(alice_server) and alive(bob_server)
        assert backend.processes("alice") == [alice_server.pid]
    finally:
        cleanup(hub, alice_server, bob_server)


def test_a_fork_bomb_stops_at_the_process_limit_and_the_users_server_keeps_running(backend):
    procs = asyncio.run(backend.prepare("mallory", Limits(memory=300 * MIB, pids=40), None))
    server = launch(backend, procs, SLEEPER)
    wait_ready(server)
    try:
        # Bounded on purpose (300 forks at most), so a broken limit cannot hurt the shared machine.
        bomb = launch(backend, procs, """
            import os, time
            made = refused = 0
            for i in range(300):
                try:
                    pid = os.fork()
                except BlockingIOError:
                    refused += 1
                    continue
                if pid == 0:
                    time.sleep(60)
                    os._exit(0)
                made += 1
            print(made, refused, flush=True)
        """)
        made, refused = (int(x) for x in bomb.stdout.readline().split())
        usage = backend.usage("mallory")
        assert usage.pids_limit == 40 and usage.pids <= 40
        assert refused > 0 and made < 40  # the kernel said no: "Resource temporarily unavailable"
        assert alive(server)
        # The server can still do its work once the bomb is gone (the stop clears the group).
        bomb.kill()
        bomb.wait()
    finally:
        cleanup(server)
    assert asyncio.run(backend.release("mallory")) == []
    assert not any(os.path.exists(d) for d in backend.group_dirs("mallory"))


def test_two_busy_users_each_get_their_cpu_limit(backend):
    spin = "import threading\nprint('ready', flush=True)\nwhile True: pass\n"
    shares = {"ann": 0.3, "ben": 0.6}
    procs = {name: asyncio.run(backend.prepare(name, Limits(cpu=cores), None)) for name, cores in shares.items()}
    # Each user runs two busy processes: without limits each would take a whole core.
    spinners = [launch(backend, procs[name], spin) for name in shares for _ in range(2)]
    wait_ready(*spinners)
    try:
        used = cgroups.sample_usage(backend, list(shares), interval=3.0)
    finally:
        cleanup(*spinners)
    for name, cores in shares.items():
        assert used[name].cpu_limit == pytest.approx(cores)
        # Never above the cap (a little slack for the sampling); at least a fair part of it
        # even on a machine other people are using too.
        assert 0.2 * cores <= used[name].cpu_cores <= cores * 1.15, (name, used[name])
    assert used["ben"].cpu_cores > used["ann"].cpu_cores


def test_a_group_left_by_a_crashed_hub_is_emptied_and_made_anew(backend):
    procs = asyncio.run(backend.prepare("carol", Limits(memory=100 * MIB, pids=10), None))
    orphan = launch(backend, procs, SLEEPER)  # the hub died; this process of the old server lives on
    wait_ready(orphan)
    try:
        # The next spawn: new limits, nothing of the old server left in the group.
        procs = asyncio.run(backend.prepare("carol", Limits(memory=300 * MIB, pids=50), None))
        assert orphan.wait(10) == -signal.SIGKILL
        assert backend.processes("carol") == []
        usage = backend.usage("carol")
        assert (usage.memory_limit, usage.pids_limit) == (300 * MIB, 50)
        server = launch(backend, procs, SLEEPER)
        wait_ready(server)
        assert backend.processes("carol") == [server.pid]
        cleanup(server)
    finally:
        cleanup(orphan)


def test_release_ends_every_process_the_server_left_and_removes_the_group(backend):
    procs = asyncio.run(backend.prepare("dave", Limits(pids=50), None))
    # A server whose child ignores SIGTERM and detaches (its own session).
    server = launch(backend, procs, """
        import os, signal, subprocess, sys, time
        child = subprocess.Popen([sys.executable, "-c",
            "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)"],
            start_new_session=True)
        print("ready", child.pid, flush=True)
        time.sleep(600)
    """)
    word, child = server.stdout.readline().split()
    assert word == "ready" and len(backend.processes("dave")) == 2
    server.kill()
    server.wait()
    assert os.path.exists(f"/proc/{child}")  # outlived the server
    try:
        assert asyncio.run(backend.release("dave")) == []
        assert not os.path.exists(f"/proc/{child}") or "Z" in Path(f"/proc/{child}/stat").read_text().split()[2]
        assert not any(os.path.exists(d) for d in backend.group_dirs("dave"))
    finally:
        cleanup(server)


def test_the_spawner_puts_its_server_in_its_group_before_it_runs(backend, tmp_path):
    from traitlets.config import Config

    from enertef_hub.localspawner import EnerTEFLocalSpawner

    c = Config()
    c.EnerTEFLocalSpawner.run_as_hub_user = True
    c.EnerTEFLocalSpawner.home_root = str(tmp_path)
    c.EnerTEFLocalSpawner.cgroup_parent = backend.parent
    c.EnerTEFLocalSpawner.mem_limit = "150M"
    c.EnerTEFLocalSpawner.limit_overrides = {"group:class": {"cpu_limit": 0.5, "pids_limit": 64}}
    user = mock.Mock()
    user.name = "erin"
    group = mock.Mock()
    group.name = "class"
    user.groups = [group]
    spawner = EnerTEFLocalSpawner(user=user, config=c)
    os.makedirs(spawner.home_dir)
    assert asyncio.run(spawner.enter_limits()) == []  # the file-system backends need no command prefix
    proc = subprocess.Popen([sys.executable, "-c", "import os, time; print(os.getcwd(), flush=True); time.sleep(600)"],
                            preexec_fn=spawner.make_preexec_fn("erin"), stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == spawner.home_dir
        # In the group from its first instruction: /proc/PID/cgroup names it in every hierarchy.
        v1, v2 = resource_limits.parse_proc_cgroup(Path(f"/proc/{proc.pid}/cgroup").read_text())
        in_groups = list(v1.values()) if isinstance(backend, cgroups.CgroupV1) else [v2]
        assert in_groups and all(path.endswith(f"/{backend.parent}/erin") for path in in_groups)
        usage = backend.usage("erin")
        assert (usage.memory_limit, usage.cpu_limit, usage.pids_limit) == (150 * MIB, 0.5, 64)
        asyncio.run(spawner.leave_limits())  # what stop() does once the server has stopped
        assert proc.wait(10) == -signal.SIGKILL
        assert backend.groups() == []
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        proc.stdout.close()


def test_usage_reads_memory_and_cpu_now(backend):
    procs = asyncio.run(backend.prepare("fay", Limits(memory=200 * MIB, cpu=0.5), None))
    busy = launch(backend, procs, "held = b'x' * (60 * 1024 * 1024)\nprint('ready', flush=True)\nwhile True: pass\n")
    wait_ready(busy)
    try:
        started = time.monotonic()
        (usage,) = cgroups.sample_usage(backend, interval=0.5).values()
        assert time.monotonic() - started < 2
    finally:
        cleanup(busy)
    assert usage.group == "fay"
    assert 60 * MIB <= usage.memory <= 120 * MIB
    assert 0.1 <= usage.cpu_cores <= 0.6 and usage.cpu_seconds > 0
    assert usage.pids == 1


async def test_the_usage_command_shows_a_running_users_memory_cpu_and_home(backend, workbench, tmp_path):
    import json

    from tests.harness import REPO
    from tests.harness.names import unique_name

    name = (await workbench.provision(unique_name("cgusage"), teams=[])).resources.username
    home = tmp_path / "homes" / name  # run_as_hub_user: {home_root}/<name>
    home.mkdir(parents=True)
    (home / "data.bin").write_bytes(b"x" * 3 * MIB)
    config = tmp_path / "jupyterhub_config.py"
    config.write_text(f"c.EnerTEFLocalSpawner.cgroup_parent = {backend.parent!r}\n"
                      f"c.EnerTEFLocalSpawner.home_root = {str(tmp_path / 'homes')!r}\n"
                      "c.EnerTEFLocalSpawner.run_as_hub_user = True\n"
                      "c.Quotas.home_soft_limit = '2MiB'\n")
    procs = await backend.prepare(name, Limits(memory=200 * MIB, cpu=0.5, pids=100), None)
    server = launch(backend, procs, "held = b'x' * (40 * 1024 * 1024)\nprint('ready', flush=True)\nwhile True: pass\n")
    wait_ready(server)
    try:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "enertef_hub.cli", "--config", str(config), "usage", "--json",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, cwd=REPO)
        out, err = await asyncio.wait_for(proc.communicate(), 600)
    finally:
        cleanup(server)
    assert proc.returncode == 0, err.decode()[-3000:]
    (row,) = [r for r in json.loads(out) if r["kind"] == "user" and r["name"] == name]
    assert 40 * MIB <= row["server"]["memory"] <= 120 * MIB and row["server"]["memory_limit"] == 200 * MIB
    assert 0.1 <= row["server"]["cpu_cores"] <= 0.6 and row["server"]["cpu_limit"] == 0.5
    assert row["server"]["pids"] == 1 and row["server"]["pids_limit"] == 100
    assert row["home_bytes"] >= 3 * MIB and row["home_over_soft_limit"] is True
