"""Single-machine mode as it runs in production: the hub as root, each user's server as
a system account of its own. One user cannot read another's home, processes or
environment, and deleting a user removes the account and puts the home out of reach.
"""

from __future__ import annotations

import os
import pwd
import stat
import subprocess
import time
from pathlib import Path

import pytest

from enertef_hub.naming import MAX_NAME_LENGTH
from tests.harness.forms import signup, signup_and_approve
from tests.harness.hub import running_system_users_hub, server_environment, server_pid, start_server
from tests.harness.names import unique_name


@pytest.fixture(scope="module")
def system_hub(services_env):
    with running_system_users_hub(services_env, "enertef-e2e-sysusers-") as hub:
        yield hub


def as_account(account: str, *cmd: str) -> subprocess.CompletedProcess:
    return subprocess.run(["runuser", "-u", account, "--", *cmd], capture_output=True, text=True)


def test_each_user_runs_as_own_account_and_cannot_reach_the_other(system_hub, services_env):
    alice = signup_and_approve(system_hub, unique_name("alice"), "correct horse battery 1")
    bob = signup_and_approve(system_hub, unique_name("bob"), "correct horse battery 2")
    start_server(system_hub, alice)
    start_server(system_hub, bob)

    alice_account = pwd.getpwnam(f"jupyter-{alice}")
    pid = server_pid(system_hub, alice)
    assert os.stat(f"/proc/{pid}").st_uid == alice_account.pw_uid
    home = Path(alice_account.pw_dir)
    assert home == system_hub.dir / "homes" / f"jupyter-{alice}"
    assert stat.S_IMODE(home.stat().st_mode) == 0o700 and home.stat().st_uid == alice_account.pw_uid
    seeded = home / "notebook-scripts" / "mlflow_group_utils.py"
    assert seeded.stat().st_uid == alice_account.pw_uid  # seeded as alice, not as root

    env = server_environment(system_hub, alice)
    assert env["USER"] == f"jupyter-{alice}" and env["HOME"] == str(home)
    assert env["ENERTEF_BUCKET"] == f"user-{alice}"
    for secret in ("ENERTEF_MINIO_SECRET_KEY", "ENERTEF_SECRET_KEY"):
        assert services_env[secret] not in "\0".join(env.values())

    # bob's account can read neither alice's files nor her server's environment.
    denied = as_account(f"jupyter-{bob}", "cat", str(seeded))
    assert denied.returncode != 0 and "Permission denied" in denied.stderr
    denied = as_account(f"jupyter-{bob}", "cat", f"/proc/{pid}/environ")
    assert denied.returncode != 0 and "Permission denied" in denied.stderr


def test_deleting_a_user_removes_the_account_and_locks_the_home_away(system_hub):
    carol = signup_and_approve(system_hub, unique_name("carol"), "correct horse battery 3")
    start_server(system_hub, carol)
    home = Path(pwd.getpwnam(f"jupyter-{carol}").pw_dir)
    (home / "results.txt").write_text("carol's work")
    system_hub.api("DELETE", f"/users/{carol}/server").raise_for_status()
    for _ in range(120):
        if not system_hub.api("GET", f"/users/{carol}").json()["servers"]:
            break
        time.sleep(0.5)
    response = system_hub.api("DELETE", f"/users/{carol}")
    assert response.status_code == 204, response.text

    with pytest.raises(KeyError):
        pwd.getpwnam(f"jupyter-{carol}")
    assert not home.exists()  # a new "carol" starts with an empty home
    (archive,) = [p for p in home.parent.iterdir() if p.name.startswith(f"jupyter-{carol}.deleted-")]
    assert archive.stat().st_uid == 0 and stat.S_IMODE(archive.stat().st_mode) == 0o700
    assert (archive / "results.txt").read_text() == "carol's work"  # kept, not deleted


def test_the_longest_name_sign_up_accepts_spawns_as_a_system_account(system_hub):
    # Sign-up accepts names up to naming.MAX_NAME_LENGTH (24): jupyter-<name> is then
    # exactly 32 characters, the system account limit, and the server starts.
    longest = unique_name("l" * (MAX_NAME_LENGTH - 8))
    assert len(longest) == MAX_NAME_LENGTH
    start_server(system_hub, signup_and_approve(system_hub, longest, "correct horse battery 4"))
    account = pwd.getpwnam(f"jupyter-{longest}")
    assert len(account.pw_name) == 32
    assert os.stat(f"/proc/{server_pid(system_hub, longest)}").st_uid == account.pw_uid
    # One more character is refused at sign-up, before anything exists.
    assert signup(system_hub, longest + "x", "correct horse battery 5").status_code == 400
