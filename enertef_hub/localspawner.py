"""EnerTEFLocalSpawner: the workbench on one machine, without Kubernetes.

When the hub runs as root, each hub user's server runs as a system account of its
own (``jupyter-alice``, created on first spawn with a private home), as JupyterHub's
LocalProcessSpawner and The Littlest JupyterHub do: one user cannot read another's
home, processes or environment. The ``jupyter-`` prefix means a hub user can never
be mapped onto an existing account such as ``root`` or ``postgres``.

``run_as_hub_user`` runs every server as the hub's own OS user instead. That gives
no isolation between users and exists only for tests and development.
"""

from __future__ import annotations

import asyncio
import os
import pwd
import shutil
import sys
import time
from pathlib import Path

from jupyterhub.spawner import LocalProcessSpawner, set_user_setuid
from traitlets import Bool, Unicode, default

from .errors import ConfigurationError, ProvisioningError
from .naming import make_system_username
from .spawnermixin import EnerTEFSpawnerMixin
from .workbench import ProvisionResult


def default_notebook_scripts() -> str:
    """The ``notebook-scripts/`` folder shipped beside the package (source checkouts)."""
    candidate = Path(__file__).resolve().parent.parent / "notebook-scripts"
    return str(candidate) if candidate.is_dir() else ""


class EnerTEFLocalSpawner(EnerTEFSpawnerMixin, LocalProcessSpawner):
    """Local-process spawner that provisions each user's MLflow store, bucket and home."""

    home_root = Unicode(
        "/home",
        config=True,
        help="""Directory under which users' homes are created: ``{home_root}/jupyter-alice``
        for system users, ``{home_root}/alice`` with ``run_as_hub_user``.""",
    )

    run_as_hub_user = Bool(
        False,
        config=True,
        help="""Run every user's server as the hub's own OS user, with homes under
        ``home_root``. No isolation between users: only for tests and development.
        When False (the default) the hub must run as root and each user gets a
        system account ``jupyter-<name>``.""",
    )

    notebook_scripts_dir = Unicode(
        config=True,
        help="""Folder whose files are merged into each user's ``~/notebook-scripts`` at
        every spawn (user edits are kept). Default: ``notebook-scripts/`` of the
        source checkout; empty disables seeding.""",
    )

    @default("notebook_scripts_dir")
    def _notebook_scripts_dir_default(self):
        return os.environ.get("ENERTEF_NOTEBOOK_SCRIPTS", "") or default_notebook_scripts()

    @property
    def system_username(self) -> str:
        """The OS account that runs this user's server."""
        if self.run_as_hub_user:
            return pwd.getpwuid(os.getuid()).pw_name
        return make_system_username(self.user.name)

    @property
    def home_dir(self) -> str:
        """This user's home directory."""
        if self.run_as_hub_user:
            return os.path.join(self.home_root, self.user.name)
        return os.path.join(self.home_root, self.system_username)

    # -- the hook of the mixin --------------------------------------------------------

    async def prepare_home(self, result: ProvisionResult):
        if self.run_as_hub_user:
            os.makedirs(self.home_dir, mode=0o700, exist_ok=True)
        else:
            if os.geteuid() != 0:
                raise ConfigurationError(
                    "EnerTEFLocalSpawner needs the hub to run as root to give each user a"
                    " system account; for development set EnerTEFLocalSpawner.run_as_hub_user = True."
                )
            await self._ensure_system_user()
        if self.notebook_scripts_dir:
            self._enertef_progress(35, "Updating your notebook scripts…")
            await self._seed_home()

    async def _run(self, *cmd: str, as_user: bool = False) -> str:
        kwargs = {}
        if as_user and not self.run_as_hub_user:
            kwargs["preexec_fn"] = set_user_setuid(self.system_username)
        proc = await asyncio.create_subprocess_exec(
            *cmd, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": self.home_dir, "LANG": "C.UTF-8"},
            cwd=self.home_dir if as_user else None, **kwargs,
        )
        output, _ = await proc.communicate()
        text = output.decode(errors="replace").strip()
        if proc.returncode != 0:
            raise ProvisioningError(f"{cmd[0]} failed for {self.user.name}: {text[-500:]}")
        return text

    async def _ensure_system_user(self):
        name = self.system_username
        try:
            pwd.getpwnam(name)
        except KeyError:
            self.log.info("Creating system user %s for %s", name, self.user.name)
            os.makedirs(self.home_root, exist_ok=True)
            await self._run("useradd", "--create-home", "--home-dir", self.home_dir, "--shell", "/bin/bash",
                            "--user-group", "--comment", f"JupyterHub user {self.user.name}", name)
        # Private home: other users' servers must not read it.
        os.chmod(self.home_dir, 0o700)

    async def _seed_home(self):
        # Seeding runs as the user, never as root: the home is user-controlled, and
        # a root process writing there could be tricked by a symlink.
        summary = await self._run(
            sys.executable, "-m", "enertef_hub.provisioners.seeding",
            "--source", self.notebook_scripts_dir, "--home", self.home_dir, as_user=True,
        )
        self.log.info("Seeded home of %s: %s", self.user.name, summary)

    async def delete_forever(self):
        """The user was deleted in the Hub: archive or purge their home.

        A later account with the same name must not find the old files, so a kept
        home is moved aside (``jupyter-alice.deleted-<time>``, owned by root) and the
        system account removed; with ``Workbench.purge_on_delete`` it is deleted.
        """
        home = self.home_dir
        if not os.path.isdir(home):
            return
        if self.workbench.purge_on_delete:
            shutil.rmtree(home)
            self.log.info("Deleted home %s of deleted user %s", home, self.user.name)
        else:
            archive = f"{home}.deleted-{time.strftime('%Y%m%dT%H%M%S')}"
            os.rename(home, archive)
            if os.geteuid() == 0:
                # A new system account could reuse the old uid: hand the files to root.
                await self._run("chown", "-R", "root:root", archive)
                os.chmod(archive, 0o700)
            self.log.info("Archived home of deleted user %s to %s", self.user.name, archive)
        if not self.run_as_hub_user:
            try:
                pwd.getpwnam(self.system_username)
            except KeyError:
                return
            await self._run("userdel", self.system_username)

    # -- LocalProcessSpawner, for a user who is not the hub user's name ---------------

    def make_preexec_fn(self, name):
        home = self.home_dir
        if self.run_as_hub_user:
            def preexec():
                os.chdir(home)
            return preexec
        return set_user_setuid(self.system_username)

    def get_args(self):
        args = super().get_args()
        if self.run_as_hub_user and os.geteuid() == 0:
            # Development as root: jupyter-server refuses to run as root unless told.
            args = [*args, "--ServerApp.allow_root=True"]
        return args

    def user_env(self, env):
        env["USER"] = self.system_username
        env["HOME"] = self.home_dir
        env["SHELL"] = "/bin/bash"
        return env

    async def move_certs(self, paths):
        if self.run_as_hub_user:
            return paths
        return await super().move_certs(paths)
