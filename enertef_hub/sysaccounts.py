"""System accounts on one machine: which uid a new account gets, and ending an account's processes.

A deleted user's processes must not outlive the account: a detached process keeps
the old uid, and ``useradd`` gives the next account the lowest free uid above the
highest one in ``/etc/passwd`` -- often the very uid just freed -- so that process
could read the new account's files and ``/proc/<pid>/environ`` (its credentials).
Deletion therefore ends every process of the uid, and a new account gets a uid
above every uid that still owns a live process or a file in the shared temporary
folders.
"""

from __future__ import annotations

import asyncio
import os
import pwd
import signal
import time

#: Shared folders where any account can leave files behind.
SHARED_DIRS = ("/tmp", "/var/tmp", "/dev/shm")


def processes_of(uid: int) -> list[int]:
    """Pids of live processes with ``uid`` as real, effective, saved or filesystem uid (zombies excluded)."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/status", encoding="ascii", errors="replace") as status:
                fields = dict(line.split(":", 1) for line in status if ":" in line)
        except OSError:  # gone meanwhile
            continue
        if fields.get("State", "").strip().startswith("Z"):
            continue  # a zombie holds nothing but its pid; its parent reaps it
        if uid in {int(x) for x in fields.get("Uid", "").split()}:
            pids.append(int(entry))
    return sorted(pids)


async def end_processes(uid: int, timeout: float = 10.0) -> list[int]:
    """Kill every process of ``uid``; return the pids still alive after ``timeout`` seconds.

    All of them are stopped first, then killed, round after round: a process that
    forks while we kill its siblings is caught in the next round.
    """
    if uid == 0 or uid == os.getuid():
        raise ValueError(f"refusing to end the processes of uid {uid} (root or the hub itself)")
    deadline = time.monotonic() + timeout
    while True:
        pids = processes_of(uid)
        if not pids or time.monotonic() > deadline:
            return pids
        for sig in (signal.SIGSTOP, signal.SIGKILL):
            for pid in pids:
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
        await asyncio.sleep(0.1)


def _login_defs(key: str, default: int) -> int:
    try:
        with open("/etc/login.defs", encoding="utf-8", errors="replace") as defs:
            for line in defs:
                parts = line.split()
                if len(parts) >= 2 and parts[0] == key and parts[1].isdigit():
                    return int(parts[1])
    except OSError:
        pass
    return default


def choose_uid() -> int:
    """A uid for a new account: above every account's, every live process's and every shared file's.

    Never a uid that anything of a deleted account still holds; uids are not
    reused while anything of the old account could act with them.
    """
    low, high = _login_defs("UID_MIN", 1000), _login_defs("UID_MAX", 60000)
    used = {entry.pw_uid for entry in pwd.getpwall()}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                used.add(os.stat(f"/proc/{entry}").st_uid)
            except OSError:
                pass
    for folder in SHARED_DIRS:
        try:
            with os.scandir(folder) as entries:
                for item in entries:
                    try:
                        used.add(item.stat(follow_symlinks=False).st_uid)
                    except OSError:
                        pass
        except OSError:
            pass
    in_range = [uid for uid in used if low <= uid <= high]
    uid = max(in_range, default=low - 1) + 1
    if uid > high:
        raise RuntimeError(f"no free uid left below UID_MAX ({high})")
    return uid
