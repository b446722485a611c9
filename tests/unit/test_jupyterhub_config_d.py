"""jupyterhub_config.d/: the snippets z2jh runs after hub.config (tests/z2jh_emulation.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from traitlets.config import Config

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import z2jh_emulation  # noqa: E402


def values_with_hub_config(hub_config: dict) -> dict:
    """Chart defaults plus ours, with hub.config replaced (the chart's own default kept underneath)."""
    values = z2jh_emulation.load_values()
    defaults = z2jh_emulation.load_values(z2jh_emulation.Z2JH_DIR / "values.yaml")
    values["hub"]["config"] = z2jh_emulation.deep_merge(defaults["hub"]["config"], hub_config)
    return values


def test_our_values_name_our_classes():
    c = z2jh_emulation.build_config()
    assert c.JupyterHub.spawner_class == "enertef-kube"
    assert c.JupyterHub.authenticator_class == "enertef"


def test_stock_chart_classes_are_replaced_by_ours():
    """A deployer who only swaps the hub image gets our classes, not the chart's dummy login."""
    values = values_with_hub_config({})
    assert values["hub"]["config"]["JupyterHub"]["authenticator_class"] == "dummy"  # the chart's default
    c = z2jh_emulation.build_config(values=values)
    assert c.JupyterHub.spawner_class == "enertef-kube"
    assert c.JupyterHub.authenticator_class == "enertef"


@pytest.mark.parametrize("choice", [
    {"JupyterHub": {"spawner_class": "simple"}},
    {"JupyterHub": {"authenticator_class": "ldapauthenticator.LDAPAuthenticator"}},
])
def test_a_deployers_explicit_choice_is_kept(choice):
    c = z2jh_emulation.build_config(values=values_with_hub_config(choice))
    for key, value in choice["JupyterHub"].items():
        assert c.JupyterHub[key] == value


def test_extra_config_still_has_the_last_word():
    values = values_with_hub_config({})
    values["hub"]["extraConfig"] = {"zz": "c.JupyterHub.spawner_class = 'simple'"}
    assert z2jh_emulation.build_config(values=values).JupyterHub.spawner_class == "simple"


def test_outside_z2jh_nothing_changes():
    """The single-machine mode may load these snippets too: with no chart spawner preset, no-op."""
    c = Config()
    c.JupyterHub.authenticator_class = "dummy"
    names = z2jh_emulation.exec_config_d(c)
    assert names == sorted(p.name for p in z2jh_emulation.CONFIG_D.glob("*.py"))
    assert "spawner_class" not in c.JupyterHub
    assert c.JupyterHub.authenticator_class == "dummy"
