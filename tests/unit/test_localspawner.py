"""EnerTEFLocalSpawner's mapping of hub users to accounts and homes, and what deletion does to a home."""

from __future__ import annotations

import asyncio

import os
import shutil
from unittest import mock

import pytest
from traitlets.config import Config

from enertef_hub.localspawner import EnerTEFLocalSpawner
from enertef_hub.workbench import Workbench


def make_spawner(name: str, **config) -> EnerTEFLocalSpawner:
    c = Config()
    for key, value in config.items():
        setattr(c.EnerTEFLocalSpawner, key, value)
    user = mock.Mock()
    user.name = name
    user.groups = []
    return EnerTEFLocalSpawner(user=user, config=c)


def test_system_accounts_are_prefixed_and_homes_private_paths():
    spawner = make_spawner("alice", home_root="/home")
    assert spawner.system_username == "jupyter-alice"
    assert spawner.home_dir == "/home/jupyter-alice"
    env = spawner.user_env({})
    assert env["USER"] == "jupyter-alice" and env["HOME"] == "/home/jupyter-alice"


def test_development_mode_runs_as_hub_user_with_home_per_user(tmp_path):
    spawner = make_spawner("alice", home_root=str(tmp_path), run_as_hub_user=True)
    assert spawner.home_dir == str(tmp_path / "alice")
    assert spawner.system_username == __import__("pwd").getpwuid(os.getuid()).pw_name


@pytest.fixture
def workbench_policy():
    Workbench.clear_instance()
    yield
    Workbench.clear_instance()


@pytest.mark.parametrize("purge", [False, True])
async def test_deleted_users_home_is_archived_or_purged(tmp_path, workbench_policy, purge):
    spawner = make_spawner("alice", home_root=str(tmp_path), run_as_hub_user=True)
    Workbench.instance(config=spawner.config).purge_on_delete = purge
    os.makedirs(spawner.home_dir)
    (tmp_path / "alice" / "thesis.ipynb").write_text("{}")
    await spawner.delete_forever()
    assert not os.path.exists(spawner.home_dir)  # a new "alice" starts with an empty home
    archived = [p for p in tmp_path.iterdir() if p.name.startswith("alice.deleted-")]
    if purge:
        assert archived == []
    else:
        assert [p.name for p in archived[0].iterdir()] == ["thesis.ipynb"]


async def _prepare(spawner):
    """prepare_home as a spawn runs it, with the work it leaves alongside the server awaited."""
    spawner._enertef_alongside = []
    spawner._enertef_events = []
    spawner._enertef_launched = asyncio.Event()
    spawner._enertef_launched.set()  # as once the server is launched
    await spawner.prepare_home(None)
    for task in spawner._enertef_alongside:
        await task
    return len(spawner._enertef_alongside)


def _shipped_scripts_and_spawner(tmp_path):
    """A shipped scripts folder with one script, and alice's spawner (development mode) merging it."""
    source = tmp_path / "shipped"
    source.mkdir(exist_ok=True)
    (source / "helpers.py").write_text("VERSION = 1\n")
    spawner = make_spawner("alice", home_root=str(tmp_path / "homes"), run_as_hub_user=True,
                           notebook_scripts_dir=str(source))
    return source, spawner, tmp_path / "homes" / "alice" / "notebook-scripts"


async def test_unchanged_scripts_are_not_merged_again_but_changes_and_a_lost_folder_are(tmp_path):
    source, spawner, scripts = _shipped_scripts_and_spawner(tmp_path)

    assert await _prepare(spawner) == 1  # first spawn: merged
    assert (scripts / "helpers.py").read_text() == "VERSION = 1\n"
    # The digest travels with the spawner's state (the hub's database), e.g. over a hub restart.
    restarted = make_spawner("alice", home_root=str(tmp_path / "homes"), run_as_hub_user=True,
                             notebook_scripts_dir=str(source))  # same state, new spawner object
    restarted.load_state(spawner.get_state())
    assert await _prepare(restarted) == 0  # nothing shipped changed: no merge

    (source / "helpers.py").write_text("VERSION = 2\n")  # an update is shipped
    assert await _prepare(restarted) == 1
    assert (scripts / "helpers.py").read_text() == "VERSION = 2\n"

    shutil.rmtree(scripts)  # the user removed the whole folder: the next spawn brings it back
    assert await _prepare(restarted) == 1
    assert (scripts / "helpers.py").read_text() == "VERSION = 2\n"


async def test_a_refused_file_keeps_the_merge_running_at_each_spawn(tmp_path):
    _, spawner, scripts = _shipped_scripts_and_spawner(tmp_path)
    scripts.mkdir(parents=True)
    (scripts / "helpers.py").symlink_to(tmp_path / "elsewhere")  # in the way: refused
    assert await _prepare(spawner) == 1
    assert spawner.seeded_scripts_digest == ""
    (scripts / "helpers.py").unlink()  # the user moves it away, as the message asks
    assert await _prepare(spawner) == 1
    assert (scripts / "helpers.py").read_text() == "VERSION = 1\n"
