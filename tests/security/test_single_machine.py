"""Issue 11 on one machine: the seeding step, a user's processes and uids, with real system accounts.

The spawner is driven directly (no hub): real ``useradd``/``userdel``, real
processes under the user's uid, the real seeding subprocess. Tests that make
system accounts need root, as the single-machine production mode does (CI runs
as root); without root they are skipped outside CI and fail inside it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path
from unittest import mock

import pytest
from tornado import web
from traitlets.config import Config

from enertef_hub import sysaccounts
from enertef_hub.localspawner import EnerTEFLocalSpawner, default_notebook_scripts
from tests.harness.names import unique_name
from tests.harness.services import require_root


@pytest.fixture
def root():
    require_root("system accounts need root")


@pytest.fixture
def home_root():
    # Not under pytest's private tmp_path: the users' homes must be reachable by them.
    path = Path(tempfile.mkdtemp(prefix="enertef-sec-", dir="/var/tmp"))
    os.chmod(path, 0o755)
    yield path
    for account in pwd.getpwall():
        if account.pw_dir.startswith(str(path)):
            subprocess.run(["userdel", account.pw_name], check=False, capture_output=True)
    shutil.rmtree(path, ignore_errors=True)


def make_spawner(name: str, home_root: Path, **config) -> EnerTEFLocalSpawner:
    c = Config()
    c.EnerTEFLocalSpawner.home_root = str(home_root)
    c.EnerTEFLocalSpawner.notebook_scripts_dir = default_notebook_scripts()
    for key, value in config.items():
        setattr(c.EnerTEFLocalSpawner, key, value)
    user = mock.Mock()
    user.name = name
    user.groups = []
    spawner = EnerTEFLocalSpawner(user=user, config=c)
    spawner._enertef_events = []
    return spawner


def start_as(account: pwd.struct_passwd, *cmd: str) -> None:
    """A process of the account that left its server's session and parent (``setsid -f``), as a kernel's child can.

    Its parent exits at once, so the process belongs to init, not to this test
    (which would otherwise keep it as a zombie that ``userdel`` counts).
    """
    subprocess.run(["setpriv", f"--reuid={account.pw_uid}", f"--regid={account.pw_gid}", "--clear-groups",
                    "setsid", "-f", *cmd], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


# -- seeding --------------------------------------------------------------------------------------


async def test_home_cannot_shadow_the_seeding_module_or_fake_events(home_root, caplog):
    spawner = make_spawner(unique_name("mallory"), home_root, run_as_hub_user=True)
    home = Path(spawner.home_dir)
    fake = home / "enertef_hub" / "provisioners"
    fake.mkdir(parents=True)
    (home / "enertef_hub" / "__init__.py").write_text("")
    (fake / "__init__.py").write_text("")
    (fake / "seeding.py").write_text(
        "import pathlib\n"
        f"pathlib.Path({str(home / 'pwned')!r}).write_text('ran')\n"
        "print('enertef-event {\"event\": \"deprovisioned\", \"user\": \"admin\"}')\n"
        "print('{\"seeded\": true, \"counts\": {}, \"refused\": [\"x\\\\nenertef-event {}\"]}')\n")
    os.chmod(home, 0o700)
    with caplog.at_level(logging.DEBUG):
        await spawner._seed_home()
    assert not (home / "pwned").exists()  # our module ran, not the user's
    assert (home / "notebook-scripts" / "mlflow_group_utils.py").is_file()
    assert "enertef-event " not in caplog.text


@pytest.mark.parametrize("bad", ["symlink", "file"])
async def test_bad_notebook_scripts_folder_never_stops_the_spawn(home_root, bad):
    spawner = make_spawner(unique_name("mallory"), home_root, run_as_hub_user=True)
    home = Path(spawner.home_dir)
    home.mkdir(mode=0o700)
    if bad == "symlink":
        (home / "notebook-scripts").symlink_to("/etc")
    else:
        (home / "notebook-scripts").write_text("not a folder")
    await spawner._seed_home()  # before issue 11: ProvisioningError, the spawn failed with a 500
    messages = [e["message"] for e in spawner._enertef_events]
    assert any("not updated" in m and "symlink or a file" in m for m in messages), messages


# -- processes and uids ---------------------------------------------------------------------------


async def test_deletion_ends_every_process_of_the_account(root, home_root):
    spawner = make_spawner(unique_name("mallory"), home_root)
    await spawner._ensure_system_user()
    account = pwd.getpwnam(spawner.system_username)
    for _ in range(2):
        start_as(account, "sleep", "600")
    for _ in range(50):
        if len(sysaccounts.processes_of(account.pw_uid)) >= 2:
            break
        await asyncio.sleep(0.1)
    assert len(sysaccounts.processes_of(account.pw_uid)) >= 2

    await spawner.delete_forever()

    assert sysaccounts.processes_of(account.pw_uid) == []
    with pytest.raises(KeyError):
        pwd.getpwnam(spawner.system_username)
    # The same name starts again: a new account with a home of its own.
    again = make_spawner(spawner.user.name, home_root)
    await again._ensure_system_user()
    assert Path(again.home_dir).is_dir()


async def test_deletion_fails_clearly_while_a_process_survives(root, home_root):
    spawner = make_spawner(unique_name("mallory"), home_root)
    await spawner._ensure_system_user()
    account = pwd.getpwnam(spawner.system_username)
    start_as(account, "sleep", "600")
    for _ in range(50):
        if sysaccounts.processes_of(account.pw_uid):
            break
        await asyncio.sleep(0.1)
    (survivor,) = sysaccounts.processes_of(account.pw_uid)
    try:
        # As if SIGKILL could not end it (a process stuck in the kernel).
        with mock.patch.object(sysaccounts, "end_processes", return_value=[survivor]), \
                pytest.raises(web.HTTPError) as raised:
            await spawner.delete_forever()
        assert raised.value.status_code == 500 and str(survivor) in raised.value.log_message
        assert pwd.getpwnam(spawner.system_username)  # nothing half-deleted: the account is still there
        await spawner.delete_forever()  # once the process can be ended, deletion completes
        with pytest.raises(KeyError):
            pwd.getpwnam(spawner.system_username)
    finally:
        for pid in sysaccounts.processes_of(account.pw_uid):
            os.kill(pid, 9)


async def test_new_account_never_gets_the_uid_of_a_live_process(root, home_root):
    # A process left by a deleted account: its uid is the one useradd would hand out next.
    low = sysaccounts._login_defs("UID_MIN", 1000)
    next_free = max([a.pw_uid for a in pwd.getpwall() if low <= a.pw_uid < 60000], default=low - 1) + 1
    orphan = subprocess.Popen(["setpriv", f"--reuid={next_free}", f"--regid={next_free}", "--clear-groups",
                               "sleep", "600"])
    try:
        for _ in range(50):
            if sysaccounts.processes_of(next_free):
                break
            await asyncio.sleep(0.1)
        spawner = make_spawner(unique_name("victim"), home_root)
        await spawner._ensure_system_user()
        assert pwd.getpwnam(spawner.system_username).pw_uid != next_free
    finally:
        orphan.kill()
        orphan.wait()


# -- what outlives processes: SysV IPC objects and lock files -------------------------------------


def ipcmk_as(uid: int, gid: int, *args: str) -> int:
    """Make a SysV IPC object as ``uid`` (util-linux ``ipcmk``); return its id."""
    out = subprocess.run(["setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups", "ipcmk", *args],
                         check=True, capture_output=True, text=True).stdout
    return int(out.rsplit(":", 1)[1])


def ipc_of(uid: int) -> list[tuple[str, int]]:
    return sorted((kind, ident) for kind, ident, owner, creator in sysaccounts.ipc_objects()
                  if uid in (owner, creator))


async def test_deletion_removes_sysv_ipc_objects_and_lock_files(root, home_root):
    spawner = make_spawner(unique_name("mallory"), home_root)
    await spawner._ensure_system_user()
    account = pwd.getpwnam(spawner.system_username)
    uid, gid = account.pw_uid, account.pw_gid
    made = sorted([("shm", ipcmk_as(uid, gid, "-M", "4096")), ("sem", ipcmk_as(uid, gid, "-S", "2")),
                   ("msg", ipcmk_as(uid, gid, "-Q"))])
    assert ipc_of(uid) == made  # the processes that made them have ended: the objects stay
    lock_file, lock_dir = Path(f"/run/lock/{account.pw_name}.lock"), Path(f"/run/lock/{account.pw_name}.d")
    precious = home_root / "precious"  # root's, next to the users' homes
    precious.write_text("root's")
    for command in (["touch", str(lock_file)], ["mkdir", str(lock_dir)],
                    ["ln", "-s", str(precious), str(lock_dir / "link")],
                    ["ln", "-s", str(precious), f"/run/lock/{account.pw_name}.link"]):
        subprocess.run(["setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups", *command], check=True)
    try:
        await spawner.delete_forever()

        assert ipc_of(uid) == []
        assert not lock_file.exists() and not lock_dir.exists()
        assert not os.path.lexists(f"/run/lock/{account.pw_name}.link")
        assert precious.read_text() == "root's"  # symlinks removed, never followed
    finally:
        for kind, ident in ipc_of(uid):
            subprocess.run(["ipcrm", {"shm": "-m", "sem": "-s", "msg": "-q"}[kind], str(ident)], check=False)
        shutil.rmtree(lock_dir, ignore_errors=True)
        for path in (lock_file, Path(f"/run/lock/{account.pw_name}.link")):
            path.unlink(missing_ok=True)


@pytest.mark.parametrize("leftover", ["shared memory", "semaphore", "message queue", "lock file"])
async def test_new_account_never_gets_the_uid_of_a_leftover_ipc_object_or_lock(root, home_root, leftover):
    # Left by a deleted account (or made before the hub removed leftovers): its uid is
    # the one useradd would hand out next.
    low = sysaccounts._login_defs("UID_MIN", 1000)
    next_free = max([a.pw_uid for a in pwd.getpwall() if low <= a.pw_uid < 60000], default=low - 1) + 1
    lock = Path(f"/run/lock/enertef-test-{next_free}.lock")
    ident = None
    if leftover == "lock file":
        subprocess.run(["setpriv", f"--reuid={next_free}", f"--regid={next_free}", "--clear-groups",
                        "touch", str(lock)], check=True)
    else:
        option = {"shared memory": ["-M", "4096"], "semaphore": ["-S", "1"], "message queue": ["-Q"]}[leftover]
        ident = ipcmk_as(next_free, next_free, *option)
    try:
        spawner = make_spawner(unique_name("victim"), home_root)
        await spawner._ensure_system_user()
        assert pwd.getpwnam(spawner.system_username).pw_uid != next_free
    finally:
        lock.unlink(missing_ok=True)
        if ident is not None:
            kind = {"shared memory": "-m", "semaphore": "-s", "message queue": "-q"}[leftover]
            subprocess.run(["ipcrm", kind, str(ident)], check=False)
