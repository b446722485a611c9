"""What `enertef-hub usage` and the accounts page say about servers and homes on one machine."""

from __future__ import annotations

import os

from traitlets.config import Config

from enertef_hub import usage
from enertef_hub.resource_limits import GIB, MIB

MOUNTINFO = """\
22 1 254:0 / / rw,relatime - ext4 /dev/vda rw,discard
40 22 254:1 / /home rw,relatime - xfs /dev/vdb rw,usrquota,prjquota
41 22 0:5 / /homework rw - tmpfs tmpfs rw
"""


def test_server_figures_read_as_a_person_reads_them():
    server = {"memory": 300 * MIB, "memory_limit": 6 * GIB, "cpu_cores": 0.354, "cpu_limit": 1.0, "oom_kills": 0}
    assert usage.format_memory(server) == "300.0 MiB / 6.0 GiB"
    assert usage.format_cpu(server) == "0.35 / 1 CPU"
    assert usage.format_memory({**server, "memory_limit": None, "oom_kills": 2}) == "300.0 MiB / no limit*"
    assert usage.format_cpu({**server, "cpu_limit": None}) == "0.35 / - CPU"
    assert usage.format_memory(None) == usage.format_cpu(None) == "-"  # not running (or not on this machine)


def test_the_usage_table_has_memory_cpu_and_home_and_flags_them():
    row = {"kind": "user", "name": "alice", "incarnation": 1, "state": "active", "postgres_bytes": 1024,
           "postgres_over_soft_limit": False, "minio_bytes": 0, "objects": 0, "bucket_quota": 2 * GIB,
           "last_activity": None, "home_bytes": 12 * GIB, "home_over_soft_limit": True,
           "server": {"memory": GIB, "memory_limit": 6 * GIB, "cpu_cores": 1.5, "cpu_limit": None, "oom_kills": 1}}
    text = usage.format_usage([row], "1GiB")
    assert "12.0 GiB!" in text and "1.0 GiB / 6.0 GiB*" in text and "1.50 / - CPU" in text
    assert "Quotas.home_soft_limit" in text and "OOM kills" in text
    # A team, or a user who is not running here: dashes.
    team = {**row, "kind": "team", "name": "vision", "home_bytes": None, "home_over_soft_limit": False, "server": None}
    assert usage.format_usage([team], "1GiB").splitlines()[1].count(" - ") >= 2


def test_home_size_counts_disk_space_like_du(tmp_path):
    home = tmp_path / "jupyter-alice"
    (home / "data").mkdir(parents=True)
    (home / "data" / "big.bin").write_bytes(os.urandom(1 << 20))
    os.link(home / "data" / "big.bin", home / "same.bin")  # one file, two names: counted once
    os.symlink("/usr", home / "usr")  # never followed
    size = usage.home_size(str(home))
    assert (1 << 20) <= size < (1 << 20) + 64 * 1024
    assert usage.home_size(str(tmp_path / "nobody")) is None


def test_home_sizes_follow_the_spawners_home_rule(tmp_path):
    config = Config()
    config.EnerTEFLocalSpawner.home_root = str(tmp_path)
    (tmp_path / "jupyter-alice").mkdir()
    (tmp_path / "jupyter-alice" / "notes.txt").write_text("x" * 10_000)
    sizes = usage.home_sizes(config, ["alice", "bob"])
    assert set(sizes) == {"alice"} and sizes["alice"] >= 10_000


def test_quota_support_is_read_from_the_homes_mount():
    assert usage.parse_home_mount(MOUNTINFO, "/home/jupyter-alice") == (
        "/home", "xfs", {"rw", "relatime", "usrquota", "prjquota"})
    point, fstype, options = usage.parse_home_mount(MOUNTINFO, "/srv/homes")
    assert (point, fstype) == ("/", "ext4") and not options & usage.QUOTA_OPTIONS
    assert usage.parse_home_mount(MOUNTINFO, "/homework/x")[0] == "/homework"  # not /home
    # This machine: ext4 mounted without quotas (so sizes are reported, nothing refused).
    assert "quotas" in usage.home_quota_status(Config())
