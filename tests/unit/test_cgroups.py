"""The pure part of the limits (enertef_hub.resource_limits): what each backend writes or runs,
which backend a machine gets; where enertef_hub.cgroups puts the v1 groups; the spawner's side.

The cgroup v1 backend is tested for real in tests/integration/test_cgroup_limits.py
(this machine has cgroup v1); systemd and cgroup v2 are tested here, on their builders.
"""

from __future__ import annotations

from unittest import mock

import pytest
from traitlets import TraitError
from traitlets.config import Config

from enertef_hub import cgroups, resource_limits
from enertef_hub.resource_limits import GIB, MIB, Limits, Mounts, Write
from enertef_hub.localspawner import EnerTEFLocalSpawner, make_home_dir

# This machine's mountinfo (cgroup v1 controllers each alone, an empty unified hierarchy).
MOUNTINFO_V1 = """\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
"""
# Debian/Ubuntu before cgroup v2: cpu and cpuacct share one hierarchy.
MOUNTINFO_COMOUNTED = """\
25 24 0:22 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid - cgroup cgroup rw,cpu,cpuacct
26 24 0:23 / /sys/fs/cgroup/memory rw,nosuid - cgroup cgroup rw,memory
27 24 0:24 / /sys/fs/cgroup/pids rw,nosuid - cgroup cgroup rw,pids
"""
MOUNTINFO_V2 = "30 22 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec - cgroup2 cgroup2 rw,nsdelegate\n"


def test_mountinfo_gives_each_controller_its_hierarchy():
    assert resource_limits.parse_mountinfo(MOUNTINFO_V1) == Mounts(
        v1={"cpu": "/sys/fs/cgroup/cpu", "cpuacct": "/sys/fs/cgroup/cpuacct",
            "memory": "/sys/fs/cgroup/memory", "pids": "/sys/fs/cgroup/pids"},
        v2="/sys/fs/cgroup/unified")
    comounted = resource_limits.parse_mountinfo(MOUNTINFO_COMOUNTED)
    assert comounted.v1["cpu"] == comounted.v1["cpuacct"] == "/sys/fs/cgroup/cpu,cpuacct"
    assert resource_limits.parse_mountinfo(MOUNTINFO_V2) == Mounts(v1={}, v2="/sys/fs/cgroup")


@pytest.mark.parametrize("mountinfo, systemd, v2_controllers, euid, writable, expected", [
    (MOUNTINFO_V1, False, {"hugetlb"}, 0, True, "cgroup1"),  # this machine
    (MOUNTINFO_V1, True, set(), 0, True, "systemd"),
    (MOUNTINFO_V2, False, {"cpu", "memory", "pids"}, 0, True, "cgroup2"),
    (MOUNTINFO_V2, True, {"cpu", "memory", "pids"}, 0, True, "systemd"),
    (MOUNTINFO_V1, False, set(), 1000, True, "none"),  # not root
    (MOUNTINFO_V1, False, set(), 0, False, "none"),  # read-only cgroup fs (a container)
    ("", False, set(), 0, True, "none"),
])
def test_backend_is_systemd_then_v2_then_v1(mountinfo, systemd, v2_controllers, euid, writable, expected):
    mounts = resource_limits.parse_mountinfo(mountinfo)
    backend, why = resource_limits.choose_backend(mounts, systemd, v2_controllers, euid, writable=lambda path: writable)
    assert backend == expected
    assert bool(why) == (expected == "none")  # "none" always says why


def test_v1_writes_count_swap_in_the_memory_limit_in_an_order_the_kernel_accepts():
    writes = resource_limits.make_v1_writes(Limits(memory=200 * MIB, cpu=1.5, pids=64))
    # memsw may never be below limit_in_bytes: lifted first, then both set to the limit.
    assert writes["memory"] == [Write("memory.memsw.limit_in_bytes", "-1", True),
                                Write("memory.limit_in_bytes", str(200 * MIB)),
                                Write("memory.memsw.limit_in_bytes", str(200 * MIB), True)]
    assert writes["cpu"] == [Write("cpu.cfs_period_us", "100000"), Write("cpu.cfs_quota_us", "150000"),
                             Write("cpu.shares", "1024")]
    assert writes["pids"] == [Write("pids.max", "64")]
    assert writes["cpuacct"] == []  # only measured


def test_v1_writes_without_limits_lift_every_one():
    writes = resource_limits.make_v1_writes(Limits())
    assert [w.value for w in writes["memory"]] == ["-1", "-1", "-1"]
    assert writes["cpu"][1] == Write("cpu.cfs_quota_us", "-1")
    assert writes["pids"] == [Write("pids.max", "max")]


def test_v2_writes_forbid_swap_and_keep_the_server_when_a_kernel_is_killed():
    assert resource_limits.make_v2_writes(Limits(memory=GIB, cpu=0.5, pids=100)) == [
        Write("memory.max", str(GIB)), Write("memory.swap.max", "0", True), Write("memory.oom.group", "0", True),
        Write("cpu.max", "50000 100000"), Write("cpu.weight", "100"), Write("pids.max", "100")]
    unlimited = resource_limits.make_v2_writes(Limits())
    assert [w.value for w in unlimited] == ["max", "max", "0", "max 100000", "100", "max"]
    assert resource_limits.make_v2_subtree_control({"cpu", "io", "memory", "pids"}) == "+memory +cpu +pids"
    assert resource_limits.make_v2_parent_writes(20 * GIB) == [Write("memory.max", str(20 * GIB))]


def test_systemd_runs_the_server_in_a_scope_of_the_users_slice_as_the_user():
    prefix = resource_limits.make_systemd_run_prefix("enertef-alice.scope", "enertef.slice",
                                                     Limits(memory=2 * GIB, cpu=1.5, pids=512), uid=1234, gid=1234)
    assert prefix == ["systemd-run", "--scope", "--quiet", "--collect", "--unit=enertef-alice.scope",
                      "--slice=enertef.slice", "--uid=1234", "--gid=1234",
                      "--property", f"MemoryMax={2 * GIB}", "--property", "MemorySwapMax=0",
                      "--property", "CPUQuota=150%", "--property", "TasksMax=512", "--"]
    assert resource_limits.make_systemd_properties(Limits()) == ["TasksMax=infinity"]
    assert resource_limits.make_systemd_unit("enertef.slice", "alice") == "enertef-alice.scope"
    assert resource_limits.make_systemd_slice_command("enertef.slice", 20 * GIB) == [
        "systemctl", "set-property", "--runtime", "enertef.slice", f"MemoryMax={20 * GIB}"]


def test_cpu_quota_has_the_kernels_minimum():
    assert resource_limits.make_cpu_quota(None) is None and resource_limits.make_cpu_quota(0) is None
    assert resource_limits.make_cpu_quota(0.001) == 1000
    assert resource_limits.make_cpu_quota(2) == 200_000


@pytest.mark.parametrize("value, expected", [
    ("2G", 2 * GIB), ("512M", 512 * MIB), ("1.5G", int(1.5 * GIB)), (1024, 1024), ("0", None), (0, None), (None, None),
])
def test_memory_sizes_read_as_jupyterhub_reads_mem_limit(value, expected):
    assert resource_limits.parse_bytes(value) == expected


@pytest.mark.parametrize("entry, message", [
    ({"mem_limit": "lots"}, "not a memory size"),
    ({"cpu_limit": "two"}, "not a number of cores"),
    ({"pids_limit": 1.5}, "not a number of processes"),
    ({"memory": "2G"}, "unknown key"),
])
def test_a_wrong_limit_entry_says_what_to_write(entry, message):
    with pytest.raises(ValueError, match=message):
        resource_limits.parse_limit_entry(entry)


BASE = Limits(memory=4 * GIB, cpu=None, pids=4096)
OVERRIDES = {"alice": {"mem_limit": "16G"}, "group:phd": {"mem_limit": "8G", "cpu_limit": 2},
             "group:class": {"mem_limit": "1G", "cpu_limit": 0.5, "pids_limit": 256},
             "group:gpu": {"cpu_limit": 0}}


@pytest.mark.parametrize("user, groups, expected", [
    ("carol", [], BASE),
    ("carol", ["class"], Limits(GIB, 0.5, 256)),
    ("carol", ["class", "phd"], Limits(8 * GIB, 2.0, 256)),  # the most generous group, per limit
    ("carol", ["class", "gpu"], Limits(GIB, None, 256)),  # no cap beats any cap
    ("alice", ["class"], Limits(16 * GIB, 0.5, 256)),  # her own entry wins for what it sets
])
def test_limits_per_user_and_group(user, groups, expected):
    assert resource_limits.resolve_limits(BASE, OVERRIDES, user, groups) == expected


def test_defaults_leave_the_hub_its_share_of_memory():
    assert resource_limits.default_memory_limit(24 * GIB) == 6 * GIB
    assert resource_limits.default_reserved_memory(24 * GIB) == int(2.4 * GIB) // MIB * MIB
    assert resource_limits.default_reserved_memory(8 * GIB) == 2 * GIB
    assert resource_limits.default_reserved_memory(2 * GIB) == GIB
    assert resource_limits.parse_memory_total("MemTotal:       24684040 kB\nMemFree: 1 kB\n") == 24684040 * 1024


def test_group_names_cannot_meet_between_users_or_servers():
    assert resource_limits.make_group_name("alice") == "alice"
    assert resource_limits.make_group_name("alice", "gpu") == "alice-gpu"
    odd = resource_limits.make_group_name("alice", "../x")
    assert odd.startswith("alice-") and "/" not in odd and len(odd) == len("alice-") + 16


def test_usage_files_are_read_with_no_limit_as_none():
    assert resource_limits.parse_limit_value("9223372036854771712\n") is None  # v1 "no limit"
    assert resource_limits.parse_limit_value("max\n") is None and resource_limits.parse_limit_value("-1") is None
    assert resource_limits.parse_limit_value("209715200\n") == 209715200
    assert resource_limits.parse_flat_keyed("usage_usec 1500\nnr_periods 3\nbad\n") == {
        "usage_usec": 1500, "nr_periods": 3}
    proc_cgroup = "4:memory:/process_api/x\n2:cpu,cpuacct:/\n0::/user.slice\n"
    assert resource_limits.parse_proc_cgroup(proc_cgroup) == (
        {"memory": "/process_api/x", "cpu": "/", "cpuacct": "/"}, "/user.slice")


def test_v1_groups_are_made_below_the_hubs_own_cgroup_in_each_hierarchy():
    backend = cgroups.CgroupV1("enertef", mounts=resource_limits.parse_mountinfo(MOUNTINFO_COMOUNTED),
                               own={"memory": "/docker/abc", "cpu": "/", "cpuacct": "/", "pids": "/docker/abc"})
    assert sorted(backend.group_dirs("alice")) == [
        "/sys/fs/cgroup/cpu,cpuacct/enertef/alice",  # one directory for the co-mounted pair
        "/sys/fs/cgroup/memory/docker/abc/enertef/alice",
        "/sys/fs/cgroup/pids/docker/abc/enertef/alice"]


# -- the spawner's side --------------------------------------------------------------------


def make_spawner(name: str, groups=(), **config) -> EnerTEFLocalSpawner:
    c = Config()
    for key, value in config.items():
        setattr(c.EnerTEFLocalSpawner, key, value)
    user = mock.Mock()
    user.name = name
    user.groups = [mock.Mock(**{"name": g}) for g in groups]
    for group, g in zip(groups, user.groups):
        g.name = group
    return EnerTEFLocalSpawner(user=user, config=c)


def test_spawner_defaults_keep_a_share_of_memory_and_cap_processes():
    spawner = make_spawner("alice")
    total = cgroups.memory_total()
    assert spawner.mem_limit == resource_limits.default_memory_limit(total)
    assert spawner.system_reserved_memory == resource_limits.default_reserved_memory(total)
    assert spawner.users_memory() == total - spawner.system_reserved_memory
    assert spawner.effective_limits() == Limits(resource_limits.default_memory_limit(total), None, 4096)


def test_spawner_applies_overrides_of_the_users_groups_and_tells_the_server():
    spawner = make_spawner("carol", groups=["class"], mem_limit="4G", limit_overrides=OVERRIDES)
    assert spawner.effective_limits() == Limits(GIB, 0.5, 256)
    spawner.limits = spawner.effective_limits()
    with mock.patch("jupyterhub.spawner.Spawner.get_env", return_value={"MEM_LIMIT": str(4 * GIB)}):
        env = spawner.get_env()
    assert env["MEM_LIMIT"] == str(GIB) and env["CPU_LIMIT"] == "0.5"


def test_spawner_refuses_a_wrong_override_or_backend_at_start_up():
    with pytest.raises(TraitError, match=r"limit_overrides\['group:phd'\].*not a memory size"):
        make_spawner("alice", limit_overrides={"group:phd": {"mem_limit": "lots"}})
    with pytest.raises(TraitError, match="cgroup_backend: 'cgroupv1' is none of"):
        make_spawner("alice", cgroup_backend="cgroupv1")
    with pytest.raises(TraitError, match="cgroup_parent"):
        make_spawner("alice", cgroup_parent="../escape")


def test_home_dirs_are_one_rule_for_spawner_and_reports():
    assert make_home_dir("/home", "alice") == "/home/jupyter-alice"
    assert make_home_dir("/srv/homes", "alice", run_as_hub_user=True) == "/srv/homes/alice"
    assert make_spawner("alice", home_root="/srv/h").home_dir == "/srv/h/jupyter-alice"
