"""scripts/jupyterhub_config.py lets the spawn page show provisioning progress.

JupyterHub's default ``slow_spawn_timeout`` (10 s) sends the browser to the bare
"Spawning server..." page before our progress messages come; the single-machine
config sets 0 like the chart, merged with any tornado settings of
``jupyterhub_config.d`` or the admin's local file (which also may override it).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from traitlets.config.loader import PyFileConfigLoader

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"


def load(state_dir: Path, local: str | None = None):
    if local is not None:
        (state_dir / "jupyterhub_config.local.py").write_text(local)
    return PyFileConfigLoader("jupyterhub_config.py", path=str(SCRIPTS)).load_config()


@pytest.fixture
def state_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("ENERTEF_STATE_DIR", str(tmp_path))
    monkeypatch.setenv("ENERTEF_HUB_URL", "http://localhost:8000")
    return tmp_path


def test_progress_is_shown_and_the_snippets_settings_are_kept(state_dir):
    settings = load(state_dir).JupyterHub.tornado_settings
    assert settings["slow_spawn_timeout"] == 0
    # Set by jupyterhub_config.d / the user-origins setup before: still there.
    assert settings["cookie_options"] == {"secure": True}


def test_an_admins_tornado_settings_are_merged_and_win(state_dir):
    settings = load(
        state_dir, 'c.JupyterHub.tornado_settings.update({"headers": {"X-Site": "1"}, "slow_spawn_timeout": 5})\n'
    ).JupyterHub.tornado_settings
    assert settings["headers"] == {"X-Site": "1"} and settings["slow_spawn_timeout"] == 5
    assert settings["cookie_options"] == {"secure": True}


def test_a_replaced_dict_still_gets_the_progress_setting(state_dir):
    settings = load(state_dir, 'c.JupyterHub.tornado_settings = {"headers": {"X-Site": "1"}}\n').JupyterHub.tornado_settings
    assert settings == {"slow_spawn_timeout": 0, "headers": {"X-Site": "1"}}
