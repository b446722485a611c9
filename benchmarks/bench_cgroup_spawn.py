"""What a server's resource limits add to a spawn on one machine (enertef_hub.cgroups), as root.

    .venv/bin/python -m benchmarks.bench_cgroup_spawn [--rounds 50]

Prints, in one run, p50 and p95 of each step with this machine's cgroup backend against
the baseline of the same step without limits (``cgroup_backend = "none"``), interleaved
round by round:
- ``enter_limits``: what EnerTEFLocalSpawner does right before the launch (detect the
  backend, set up the users' parent and the server's group with its limits);
- launch: ``Popen`` of a process that exits at once, with the ``preexec_fn`` that joins
  the group (and without), until the process has exited;
- ``leave_limits``: what ``stop()`` adds once the server has exited (end what is left,
  remove the group).
Groups are made below a parent of this run's own and removed. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from unittest import mock

from traitlets.config import Config

from enertef_hub import cgroups
from enertef_hub.localspawner import EnerTEFLocalSpawner


def figures(name: str, seconds: list[float]) -> str:
    ordered = sorted(seconds)
    p95 = ordered[max(0, int(len(ordered) * 0.95) - 1)]
    return f"{name:44} p50 {statistics.median(ordered) * 1000:7.2f} ms   p95 {p95 * 1000:7.2f} ms"


def make_spawner(backend: str, parent: str, home_root: str) -> EnerTEFLocalSpawner:
    c = Config()
    c.EnerTEFLocalSpawner.run_as_hub_user = True  # no system account needed for a benchmark
    c.EnerTEFLocalSpawner.home_root = home_root
    c.EnerTEFLocalSpawner.cgroup_backend = backend
    c.EnerTEFLocalSpawner.cgroup_parent = parent
    c.EnerTEFLocalSpawner.cpu_limit = 1.0
    user = mock.Mock()
    user.name = "benchuser"
    user.groups = []
    spawner = EnerTEFLocalSpawner(user=user, config=c)
    os.makedirs(spawner.home_dir, exist_ok=True)
    return spawner


async def one_spawn(spawner: EnerTEFLocalSpawner, times: dict[str, list[float]], label: str):
    started = time.perf_counter()
    await spawner.enter_limits()
    entered = time.perf_counter()
    proc = subprocess.Popen(["/bin/true"], preexec_fn=spawner.make_preexec_fn("benchuser"))
    proc.wait()
    exited = time.perf_counter()
    await spawner.leave_limits()
    left = time.perf_counter()
    times[f"enter_limits, {label}"].append(entered - started)
    times[f"launch until exit, {label}"].append(exited - entered)
    times[f"leave_limits, {label}"].append(left - exited)


async def main(rounds: int):
    if os.geteuid() != 0:
        sys.exit("run as root: cgroups are set up by root")
    backend, why = cgroups.detect_backend()
    if backend == "none":
        sys.exit(f"no cgroup backend here: {why}")
    parent = f"enertef-bench-{os.getpid()}"
    with tempfile.TemporaryDirectory() as home_root:
        spawners = {backend: make_spawner(backend, parent, home_root), "none": make_spawner("none", parent, home_root)}
        times: dict[str, list[float]] = {f"{step}, {label}": [] for label in spawners
                                         for step in ("enter_limits", "launch until exit", "leave_limits")}
        for i in range(rounds + 1):
            order = list(spawners) if i % 2 else list(reversed(spawners))  # rotate who goes first
            for label in order:
                scratch = times if i else {k: [] for k in times}  # round 0 warms caches up
                await one_spawn(spawners[label], scratch, label)
        made = spawners[backend].limits_backend()
        parents = made._hierarchies() if isinstance(made, cgroups.CgroupV1) else [getattr(made, "parent_dir", "")]
        for directory in parents:  # the run's own parent groups (systemd removes its empty slice itself)
            if directory and os.path.isdir(directory):
                os.rmdir(directory)
    print(f"backend {backend}, {rounds} rounds, {os.cpu_count()} cores")
    for step in ("enter_limits", "launch until exit", "leave_limits"):
        print(figures(f"{step}, {backend}", times[f"{step}, {backend}"]))
        print(figures(f"{step}, none (baseline)", times[f"{step}, none"]))
    total = [sum(times[f"{s}, {backend}"][i] - times[f"{s}, none"][i] for s in ("enter_limits", "launch until exit"))
             for i in range(rounds)]
    print(f"{'added to the launch (paired by round)':44} p50 {statistics.median(total) * 1000:7.2f} ms")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=50)
    asyncio.run(main(parser.parse_args().rounds))
