"""Merge the shipped notebook scripts into a user's ``~/notebook-scripts``.

Every spawn calls :func:`seed_home`. The rules, which users rely on:

- a script that is new upstream appears in the user's folder;
- a script the user never touched follows upstream (it is updated in place);
- a script the user edited, or deleted, stays exactly as the user left it;
- nothing the user owns is ever deleted, and nothing is written through a symlink.

"Never touched" is decided by a manifest, ``~/notebook-scripts/.enertef-seed.json``,
which records the SHA-256 of every file as it was last seeded. A file whose current
hash differs from the recorded one was edited; a recorded file that is missing was
deleted on purpose and is not brought back. A missing or unreadable manifest only
makes the merge more conservative (existing files that differ from upstream are kept).

All file operations go through directory file descriptors opened with
``O_NOFOLLOW``: a user who replaces ``~/notebook-scripts`` or one of its files by a
symlink to another path cannot make this code write there, even if the swap happens
while seeding runs. Every write is a temporary file in the same directory followed by
``os.replace``, so a crash never leaves a half-written script.

The module imports only the standard library: it runs in the notebook image's start
hook and, as the user, from the local spawner (``python -m
enertef_hub.provisioners.seeding --source DIR --home DIR``).
"""

from __future__ import annotations

import argparse
import errno
import hashlib
import json
import os
import stat
import sys
from dataclasses import dataclass, field
from pathlib import Path

#: Folder created in the user's home.
SCRIPTS_DIRNAME = "notebook-scripts"
#: Manifest of hashes as last seeded, inside the scripts folder.
MANIFEST_NAME = ".enertef-seed.json"
_MANIFEST_VERSION = 1
#: Names in the source tree that are never seeded (editor and build debris).
_SKIPPED_NAMES = frozenset({"__pycache__", ".ipynb_checkpoints", ".git"})

_O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_O_DIRECTORY = getattr(os, "O_DIRECTORY", 0)
_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)


class SeedingError(RuntimeError):
    """Seeding could not start at all; ``str()`` says why and what the user can do."""


@dataclass
class SeedReport:
    """What :func:`seed_home` did, one list of relative paths per outcome."""

    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    #: The user changed the file (or made one of the same name): left as it is.
    kept_edited: list[str] = field(default_factory=list)
    #: The user deleted a seeded file: not re-created.
    kept_deleted: list[str] = field(default_factory=list)
    #: A symlink or something that is not a regular file/directory is in the way.
    refused: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """One line for logs, e.g. ``notebook-scripts: 2 created, 1 updated, ...``."""
        parts = [
            f"{len(self.created)} created",
            f"{len(self.updated)} updated",
            f"{len(self.unchanged)} unchanged",
            f"{len(self.kept_edited)} kept (edited by you)",
            f"{len(self.kept_deleted)} kept deleted",
        ]
        if self.refused:
            parts.append(f"{len(self.refused)} refused (symlink or not a file: {', '.join(self.refused)})")
        return "notebook-scripts: " + ", ".join(parts)


def make_source_listing(source: Path) -> dict[str, Path]:
    """Return ``{relative posix path: file}`` for every file to seed under *source*.

    Hidden files and editor/build folders are left out; symlinks in the source tree
    are followed (it is ours, baked into the image or the package).
    """
    listing: dict[str, Path] = {}
    for dirpath, dirnames, filenames in os.walk(source):
        dirnames[:] = sorted(d for d in dirnames if d not in _SKIPPED_NAMES and not d.startswith("."))
        for name in sorted(filenames):
            if name.startswith(".") or name.endswith((".pyc", "~")):
                continue
            path = Path(dirpath, name)
            listing[path.relative_to(source).as_posix()] = path
    return listing


def make_source_digest(source: Path) -> str:
    """SHA-256 over the relative paths and contents of what :func:`make_source_listing` seeds.

    Equal digests mean a merge has nothing new to bring. "" when the source cannot be
    read (a merge then runs, and reports the problem).
    """
    digest = hashlib.sha256()
    try:
        for rel, path in make_source_listing(source).items():
            digest.update(rel.encode() + b"\0")
            digest.update(hashlib.sha256(path.read_bytes()).digest())
    except OSError:
        return ""
    return digest.hexdigest()


def _sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _open_dir(name: str, dir_fd: int | None) -> int:
    """Open a directory without following a symlink in its last component."""
    return os.open(name, os.O_RDONLY | _O_DIRECTORY | _O_NOFOLLOW | _O_CLOEXEC, dir_fd=dir_fd)


def _lstat(name: str, dir_fd: int) -> os.stat_result | None:
    try:
        return os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return None


def _read_regular(name: str, dir_fd: int) -> bytes | None:
    """Contents of a regular file, or None if it is missing; raises _Refused otherwise."""
    try:
        # O_NONBLOCK: a FIFO planted by the user must not hang the spawn.
        fd = os.open(name, os.O_RDONLY | _O_NOFOLLOW | os.O_NONBLOCK | _O_CLOEXEC, dir_fd=dir_fd)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.EMLINK):  # a symlink (EMLINK on some BSDs)
            raise _Refused from exc
        raise
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise _Refused
        chunks = []
        while chunk := os.read(fd, 1 << 20):
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


class _Refused(Exception):
    """The path is a symlink or not a regular file: leave it alone."""


def _write_atomic(name: str, data: bytes, mode: int, dir_fd: int) -> None:
    """Write *data* to *name* in *dir_fd* via a temporary file and ``os.replace``.

    ``os.replace`` renames over the directory entry itself, so even if the user
    swapped *name* for a symlink meanwhile, the link is replaced, not followed.
    """
    tmp = f".{name}.enertef-tmp-{os.getpid()}"
    fd = os.open(
        tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _O_NOFOLLOW | _O_CLOEXEC, 0o600, dir_fd=dir_fd
    )
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fchmod(fd, mode)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    except BaseException:
        try:
            os.unlink(tmp, dir_fd=dir_fd)
        except FileNotFoundError:
            pass
        raise


def _load_manifest(dir_fd: int) -> dict[str, str]:
    try:
        raw = _read_regular(MANIFEST_NAME, dir_fd)
    except _Refused:
        return {}
    if raw is None:
        return {}
    try:
        data = json.loads(raw)
        files = data["files"]
        return {str(k): str(v) for k, v in files.items()}
    except (ValueError, KeyError, TypeError, AttributeError):
        # A damaged manifest must not make us overwrite anything: with no records,
        # every existing file that differs from upstream counts as the user's.
        return {}


def _save_manifest(records: dict[str, str], dir_fd: int) -> None:
    body = {
        "comment": "Written by enertef-hub at each server start: hashes of the notebook "
        "scripts as last copied here. Files whose hash differs were edited by you "
        "and are never overwritten. Deleting this file is harmless.",
        "version": _MANIFEST_VERSION,
        "files": dict(sorted(records.items())),
    }
    data = (json.dumps(body, indent=1) + "\n").encode()
    try:
        _write_atomic(MANIFEST_NAME, data, 0o644, dir_fd)
    except OSError:
        # e.g. the user made the manifest a directory: seeding still did its job,
        # the next start will just be more conservative.
        pass


class _DirCache:
    """Directory fds under the scripts root, opened (or created) without following links."""

    def __init__(self, root_fd: int):
        self._fds: dict[str, int | None] = {"": root_fd}

    def get(self, reldir: str, create: bool) -> int | None:
        """fd of *reldir*, None if it is missing (and not created); raises _Refused."""
        if reldir in self._fds and (self._fds[reldir] is not None or not create):
            return self._fds[reldir]
        parent, _, name = reldir.rpartition("/")
        parent_fd = self.get(parent, create)
        if parent_fd is None:
            return None
        try:
            fd: int | None = _open_dir(name, parent_fd)
        except FileNotFoundError:
            if not create:
                fd = None
            else:
                os.mkdir(name, 0o755, dir_fd=parent_fd)
                fd = _open_dir(name, parent_fd)
        except NotADirectoryError as exc:  # a symlink or a file in the way
            raise _Refused from exc
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise _Refused from exc
            raise
        self._fds[reldir] = fd
        return fd

    def close(self) -> None:
        for key, fd in self._fds.items():
            if key and fd is not None:
                os.close(fd)


def seed_home(source: Path, home: Path) -> SeedReport:
    """Merge the scripts in *source* into ``home/notebook-scripts`` and return what happened.

    Safe to run at every spawn: idempotent, never deletes or overwrites a user's
    change, never writes through a symlink. Raises :class:`SeedingError` only when the
    folder itself cannot be used (e.g. it is a symlink); per-file problems are
    reported in :attr:`SeedReport.refused` instead.
    """
    source, home = Path(source), Path(home)
    if not source.is_dir():
        raise SeedingError(f"Notebook scripts source {source} is not a folder: check the image or the spawner configuration.")
    listing = make_source_listing(source)
    report = SeedReport()
    try:
        home_fd = _open_dir(str(home), None)  # the home path itself is the admin's, may be a link
    except OSError as exc:
        raise SeedingError(f"Cannot open home folder {home}: {exc.strerror}.") from exc
    try:
        try:
            root_fd = _open_dir(SCRIPTS_DIRNAME, home_fd)
        except FileNotFoundError:
            os.mkdir(SCRIPTS_DIRNAME, 0o755, dir_fd=home_fd)
            root_fd = _open_dir(SCRIPTS_DIRNAME, home_fd)
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                raise SeedingError(
                    f"{home / SCRIPTS_DIRNAME} is a symlink or a file, so the example scripts were "
                    f"not copied. Rename it and restart your server to get a fresh copy."
                ) from exc
            raise
    finally:
        os.close(home_fd)

    records = _load_manifest(root_fd)
    dirs = _DirCache(root_fd)
    try:
        for rel, src_path in listing.items():
            _seed_one(rel, src_path, dirs, records, report)
        _save_manifest(records, root_fd)
    finally:
        dirs.close()
        os.close(root_fd)
    return report


def _seed_one(rel: str, src_path: Path, dirs: _DirCache, records: dict[str, str], report: SeedReport) -> None:
    upstream = src_path.read_bytes()
    upstream_hash = _sha256_bytes(upstream)
    mode = 0o755 if os.stat(src_path).st_mode & stat.S_IXUSR else 0o644
    recorded = records.get(rel)
    reldir, _, name = rel.rpartition("/")
    try:
        # Only create missing folders for files we are going to create.
        dir_fd = dirs.get(reldir, create=recorded is None)
        if dir_fd is None:  # the user deleted the whole folder
            report.kept_deleted.append(rel)
            return
        current = _read_regular(name, dir_fd)
    except _Refused:
        report.refused.append(rel)
        return

    if current is None:
        if recorded is not None:
            report.kept_deleted.append(rel)
            return
        _write_atomic(name, upstream, mode, dir_fd)
        records[rel] = upstream_hash
        report.created.append(rel)
        return

    current_hash = _sha256_bytes(current)
    if current_hash == upstream_hash:
        # Already what upstream ships (untouched, or the user made the same change):
        # record it so later upstream versions are followed again.
        records[rel] = upstream_hash
        report.unchanged.append(rel)
    elif recorded is not None and current_hash == recorded:
        # Re-check just before replacing: a save by the user in between wins.
        try:
            if _read_regular(name, dir_fd) != current:
                report.kept_edited.append(rel)
                return
        except _Refused:
            report.refused.append(rel)
            return
        _write_atomic(name, upstream, mode, dir_fd)
        records[rel] = upstream_hash
        report.updated.append(rel)
    else:
        report.kept_edited.append(rel)


def main(argv: list[str] | None = None) -> int:
    """Command line: seed one home and print a one-line summary."""
    parser = argparse.ArgumentParser(
        prog="python -m enertef_hub.provisioners.seeding",
        description="Copy new and updated notebook scripts into HOME/notebook-scripts "
        "without touching files the user edited or deleted.",
    )
    parser.add_argument("--source", required=True, type=Path, help="folder of scripts shipped with the image")
    parser.add_argument("--home", default=Path.home(), type=Path, help="the user's home folder (default: $HOME)")
    parser.add_argument("--json", action="store_true",
                        help="print one JSON object (for the hub, which reads it as data) instead of a summary")
    args = parser.parse_args(argv)
    try:
        report = seed_home(args.source, args.home)
    except SeedingError as exc:
        if args.json:
            print(json.dumps({"seeded": False, "error": str(exc)}))
        else:
            print(f"notebook-scripts: not seeded: {exc}", file=sys.stderr)
        return 1
    if args.json:
        counts = {name: len(getattr(report, name)) for name in
                  ("created", "updated", "unchanged", "kept_edited", "kept_deleted")}
        print(json.dumps({"seeded": True, "counts": counts, "refused": report.refused}))
    else:
        print(report.summary())
    return 0


if __name__ == "__main__":
    sys.exit(main())
