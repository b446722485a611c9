"""EnerTEFLocalSpawner's mapping of hub users to accounts and homes, and what deletion does to a home."""

from __future__ import annotations

import os
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
