"""System accounts on one machine: which uid a new account gets, and what a deleted one leaves.

A deleted user's processes must not outlive the account: a detached process keeps
the old uid, and ``useradd`` gives the next account the lowest free uid above the
highest one in ``/etc/passwd`` -- often the very uid just freed -- so that process
could read the new account's files and ``/proc/<pid>/environ`` (its credentials).
Deletion therefore ends every process of the uid and removes what outlives
processes and would act for whoever gets the uid next: SysV IPC objects (shared
memory, semaphores, message queues: a new account with the uid could read and
write them) and lock files in ``/run/lock`` (which could keep the new account's
programs from starting). A new account gets a uid above every uid that still
owns a live process, a SysV IPC object, or a file in the shared folders.
"""

from __future__ import annotations

import asyncio
import ctypes
import errno
import os
import pwd
import shutil
import signal
import time

#: Shared folders where any account can leave files behind.
SHARED_DIRS = ("/tmp", "/var/tmp", "/dev/shm", "/run/lock")

#: Of those, the ones whose entries of a deleted account are removed with it. Lock
#: files mean nothing without their processes; files in the temporary folders may
#: be data the admin wants to look at, so they stay (and keep their uid unused).
LOCK_DIRS = ("/run/lock",)

#: SysV IPC object kinds: /proc/sysvipc table and the column naming an object's id.
_SYSV_IPC = {"shm": "shmid", "sem": "semid", "msg": "msqid"}
_IPC_RMID = 0


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
        stop_then_kill(pids)
        await asyncio.sleep(0.1)


def stop_then_kill(pids: list[int]) -> None:
    """One round: stop every process first, then kill them all.

    A process that forks while its siblings die is caught stopped, and the caller's
    next round kills what it made.
    """
    for sig in (signal.SIGSTOP, signal.SIGKILL):
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass


def ipc_objects(proc: str = "/proc/sysvipc") -> list[tuple[str, int, int, int]]:
    """Every SysV IPC object of this machine as (kind, id, owner uid, creator uid).

    Both uids matter: an owner may hand an object to another uid (``IPC_SET``), and
    the creator keeps its rights on it either way.
    """
    objects = []
    for kind, id_column in _SYSV_IPC.items():
        try:
            with open(os.path.join(proc, kind), encoding="ascii", errors="replace") as table:
                header = table.readline().split()
                id_at, uid_at, cuid_at = (header.index(c) for c in (id_column, "uid", "cuid"))
                for line in table:
                    fields = line.split()
                    if len(fields) > max(id_at, uid_at, cuid_at):
                        objects.append((kind, int(fields[id_at]), int(fields[uid_at]), int(fields[cuid_at])))
        except (OSError, ValueError):
            continue  # no SysV IPC in this kernel, or a table we cannot read
    return objects


def _remove_ipc_object(kind: str, ident: int) -> bool:
    """IPC_RMID one object; True if it is gone (also if it was gone already)."""
    libc = ctypes.CDLL(None, use_errno=True)
    if kind == "shm":
        result = libc.shmctl(ctypes.c_int(ident), ctypes.c_int(_IPC_RMID), None)
    elif kind == "sem":
        result = libc.semctl(ctypes.c_int(ident), ctypes.c_int(0), ctypes.c_int(_IPC_RMID))
    else:
        result = libc.msgctl(ctypes.c_int(ident), ctypes.c_int(_IPC_RMID), None)
    return result == 0 or ctypes.get_errno() in (errno.EINVAL, errno.EIDRM)


def remove_leftovers(uid: int) -> list[str]:
    """Remove the SysV IPC objects and ``/run/lock`` entries of ``uid``; return what is left.

    Run after the account's processes have ended (a shared memory segment still
    attached would only be marked for removal). The result describes each object
    or path that could not be removed (empty: all gone).
    """
    if uid == 0 or uid == os.getuid():
        raise ValueError(f"refusing to remove the leftovers of uid {uid} (root or the hub itself)")
    left = []
    for kind, ident, owner, creator in ipc_objects():
        if uid in (owner, creator) and not _remove_ipc_object(kind, ident):
            left.append(f"SysV {kind} {ident}")
    for folder in LOCK_DIRS:
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue
        for entry in entries:
            try:
                if entry.stat(follow_symlinks=False).st_uid != uid:
                    continue
                if entry.is_dir(follow_symlinks=False):
                    # rmtree works through directory descriptors: a symlink inside is
                    # removed, never followed.
                    shutil.rmtree(entry.path)
                else:
                    os.unlink(entry.path)
            except FileNotFoundError:
                continue
            except OSError:
                left.append(entry.path)
    return left


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
    """A uid for a new account: above every account's, every live process's, every
    SysV IPC object's (owner and creator) and every shared file's.

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
    for _kind, _ident, owner, creator in ipc_objects():
        used.update((owner, creator))
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
