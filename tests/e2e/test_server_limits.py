"""Resource limits of users' servers through a real hub, as production runs on one machine.

The hub runs as root with a system account per user and the limits of
tests/e2e/limits_config.py (memory 400 MiB, 512 processes, CPU 0.5 for one group).
A spawned server is in its own cgroup with those limits from its start (its kernels
too); a kernel that allocates past the memory limit is ended by the kernel's OOM
killer and Jupyter restarts it, as JupyterLab shows ("the kernel appears to have
died"), while the server, the hub and another user's server keep running. The
admins' accounts page shows each server's memory and CPU now and the OOM kill.
Stopping the server removes its group.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import uuid
from datetime import datetime, timezone
from pathlib import Path
from unittest import mock

import pytest
import requests
from traitlets.config import Config

from enertef_hub import cgroups, resource_limits
from enertef_hub.resource_limits import MIB
from enertef_hub.usage import server_usage
from tests.harness.forms import signup_and_approve
from tests.harness.hub import (kernel_pids, run_coroutine, running_system_users_hub, server_environment, server_pid,
                               start_server)
from tests.harness.names import unique_name

EXTRA_CONFIG = Path(__file__).with_name("limits_config.py")


@pytest.fixture(scope="module")
def limits_hub(services_env):
    parent = f"enertef-e2e-{os.getpid()}"
    group = unique_name("limitclass")
    with mock.patch.dict(os.environ, {"ENERTEF_E2E_EXTRA_CONFIG": str(EXTRA_CONFIG),
                                      "ENERTEF_E2E_CGROUP_PARENT": parent, "ENERTEF_E2E_LIMIT_GROUP": group}):
        with running_system_users_hub(services_env, "enertef-e2e-limits-") as hub:
            hub.cgroup_parent, hub.limit_group = parent, group
            yield hub
    # The hub stopped its users' servers, and their groups with them; the parents are ours.
    backend = _backend(parent)
    assert backend.groups() == [], f"groups left behind: {backend.groups()}"
    for directory in backend._hierarchies():
        if os.path.isdir(directory):
            os.rmdir(directory)


def _backend(parent: str) -> cgroups.CgroupV1:
    mounts = cgroups.read_mounts()
    assert "memory" in mounts.v1, "this test reads cgroup v1 (this machine's); see test_cgroup_limits.py"
    return cgroups.CgroupV1(parent, mounts)


def _groups_of(pid: int) -> dict[str, str]:
    return resource_limits.parse_proc_cgroup(Path(f"/proc/{pid}/cgroup").read_text())[0]


async def _run_until_the_kernel_dies(server_url: str, token: str, kernel_id: str, code: str) -> list[str]:
    """Execute ``code`` in the kernel as JupyterLab does; return the kernel states the server reported."""
    from tornado.httpclient import HTTPRequest
    from tornado.websocket import websocket_connect

    ws_url = "ws" + server_url[len("http"):] + f"api/kernels/{kernel_id}/channels"
    conn = await websocket_connect(HTTPRequest(ws_url, headers={"Authorization": f"token {token}"}))
    states = []
    try:
        await conn.write_message(json.dumps({
            "header": {"msg_id": uuid.uuid4().hex, "username": "e2e", "session": uuid.uuid4().hex,
                       "msg_type": "execute_request", "version": "5.3",
                       "date": datetime.now(timezone.utc).isoformat()},
            "parent_header": {}, "metadata": {}, "channel": "shell", "buffers": [],
            "content": {"code": code, "silent": False, "store_history": False, "user_expressions": {},
                        "allow_stdin": False, "stop_on_error": True},
        }))
        while "restarting" not in states and "dead" not in states:
            raw = await asyncio.wait_for(conn.read_message(), timeout=120)
            assert raw is not None, f"kernel websocket closed; states so far {states}"
            msg = json.loads(raw)
            if msg.get("msg_type") == "status":
                states.append(msg["content"]["execution_state"])
    finally:
        conn.close()
    return states


def test_a_server_runs_in_its_group_and_loses_only_its_kernel_past_the_memory_limit(limits_hub):
    hub = limits_hub
    backend = _backend(hub.cgroup_parent)
    alice = signup_and_approve(hub, unique_name("memalice"), "correct horse battery 7")
    bob = signup_and_approve(hub, unique_name("membob"), "correct horse battery 8")
    hub.api("POST", f"/groups/{hub.limit_group}").raise_for_status()
    hub.api("POST", f"/groups/{hub.limit_group}/users", json={"users": [bob]}).raise_for_status()
    alice_url = start_server(hub, alice).rstrip("/") + "/"
    start_server(hub, bob)

    # Each server is in its own group in every hierarchy, from its start, with its limits.
    for name in (alice, bob):
        pid = server_pid(hub, name)
        assert all(path.endswith(f"/{hub.cgroup_parent}/{name}") for path in _groups_of(pid).values()), \
            _groups_of(pid)
        assert os.stat(f"/proc/{pid}").st_uid != 0  # the system account, not root
        assert server_environment(hub, name)["MEM_LIMIT"] == str(400 * MIB)
    alice_usage, bob_usage = backend.usage(alice), backend.usage(bob)
    assert (alice_usage.memory_limit, alice_usage.pids_limit, alice_usage.cpu_limit) == (400 * MIB, 512, None)
    assert (bob_usage.memory_limit, bob_usage.pids_limit, bob_usage.cpu_limit) == (400 * MIB, 512, 0.5)
    assert server_environment(hub, bob)["CPU_LIMIT"] == "0.5"  # his group's override

    # alice's kernel allocates 20 MiB at a time, up to twice her limit.
    headers = {"Authorization": f"token {hub.token}"}
    kernel = requests.post(f"{alice_url}api/kernels", headers=headers, json={"name": "python3"}, timeout=60)
    kernel.raise_for_status()
    kernel_id = kernel.json()["id"]
    server = server_pid(hub, alice)
    (first_kernel,) = kernel_pids(server)
    assert _groups_of(first_kernel) == _groups_of(server)  # a child cannot be outside
    states = run_coroutine(_run_until_the_kernel_dies(
        alice_url, hub.token, kernel_id, "chunks = []\nfor i in range(40):\n    chunks.append(b'x' * (20 << 20))\n"))
    assert "restarting" in states or "dead" in states  # what JupyterLab shows as "the kernel died"
    assert backend.usage(alice).oom_kills >= 1
    assert not os.path.exists(f"/proc/{first_kernel}")

    # Only the kernel went: the server answers, restarted the kernel, and the hub and bob are fine.
    status = requests.get(f"{alice_url}api/status", headers=headers, timeout=30)
    assert status.status_code == 200
    assert server_pid(hub, alice) == server
    assert requests.get(f"{alice_url}api/kernels/{kernel_id}", headers=headers, timeout=30).status_code == 200
    assert hub.api("GET", f"/users/{alice}").json()["servers"][""]["ready"]
    assert hub.api("GET", f"/users/{bob}").json()["servers"][""]["ready"]
    assert backend.usage(bob).oom_kills == 0

    # What admins see: each running server's memory and CPU now, its OOM kills, the home's size.
    page = hub.admin_session().get(f"{hub.url}/hub/enertef/accounts", params={"q": alice}, timeout=60)
    page.raise_for_status()
    row = re.search(rf'<tr id="account-{alice}">(.*?)</tr>', page.text, re.S).group(1)
    assert re.search(r'class="server-memory">[\d.]+ MiB / 400\.0 MiB\*<', row), row
    assert re.search(r'class="server-cpu">[\d.]+ / - CPU<', row), row
    assert "1 OOM kill" in row or "OOM kills" in row
    assert re.search(r'class="home-size">[\d.]+ KiB', row), row
    config = Config()
    config.EnerTEFLocalSpawner.cgroup_parent = hub.cgroup_parent
    now = server_usage(config, [alice, bob])
    assert now[bob]["cpu_limit"] == 0.5 and 30 * MIB < now[bob]["memory"] < 400 * MIB, now

    # Stopping a server removes its group (and would end anything it left running).
    hub.api("DELETE", f"/users/{alice}/server").raise_for_status()
    for _ in range(120):
        if not hub.api("GET", f"/users/{alice}").json()["servers"]:
            break
        asyncio.run(asyncio.sleep(0.5))
    assert alice not in backend.groups()
    assert not any(os.path.exists(d) for d in backend.group_dirs(alice))
