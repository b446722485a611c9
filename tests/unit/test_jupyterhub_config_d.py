"""jupyterhub_config.d/: the snippets the hub image adds, run by the released chart's config.

The chart is rendered by a real ``helm template`` and its own jupyterhub_config.py runs
them in the hub image's environment (tests.harness.z2jh): hub.config first, then
jupyterhub_config.d/*.py sorted, then hub.extraConfig.
"""

from __future__ import annotations


import pytest
from traitlets.config import Config

from tests.harness import z2jh

SECRETS = z2jh.example_secrets()


def hub_config(*overrides: dict, our_values: bool = True) -> dict:
    """The hub's config section by section, as the chart's jupyterhub_config.py leaves it."""
    objects = z2jh.render(*overrides, our_values=our_values)
    secrets = SECRETS if our_values else {}
    answer = z2jh.run_in_hub_pod(objects, {"mode": "config"}, secrets)
    return answer["config"]


def test_our_values_name_our_classes():
    config = hub_config()
    assert config["JupyterHub"]["spawner_class"] == "enertef-kube"
    assert config["JupyterHub"]["authenticator_class"] == "enertef"


def test_stock_chart_classes_are_replaced_by_ours():
    """A deployer who only swaps the hub image gets our classes, not the chart's dummy login."""
    defaults = z2jh.render(our_values=False)
    values = z2jh.find(defaults, "Secret", "hub")
    assert "authenticator_class: dummy" in z2jh._object_data(values)["values.yaml"].decode()
    config = hub_config(our_values=False)
    assert config["JupyterHub"]["spawner_class"] == "enertef-kube"
    assert config["JupyterHub"]["authenticator_class"] == "enertef"


@pytest.mark.parametrize("choice", [
    {"JupyterHub": {"spawner_class": "simple"}},
    {"JupyterHub": {"authenticator_class": "ldapauthenticator.LDAPAuthenticator"}},
])
def test_a_deployers_explicit_choice_is_kept(choice):
    config = hub_config({"hub": {"config": choice}}, our_values=False)
    for key, value in choice["JupyterHub"].items():
        assert config["JupyterHub"][key] == value


def test_extra_config_still_has_the_last_word():
    config = hub_config({"hub": {"extraConfig": {"zz": "c.JupyterHub.spawner_class = 'simple'"}}})
    assert config["JupyterHub"]["spawner_class"] == "simple"


def test_outside_z2jh_nothing_changes():
    """The single-machine mode loads these snippets too: with no chart spawner preset, no-op."""
    c = Config()
    c.JupyterHub.authenticator_class = "dummy"
    for snippet in sorted(z2jh.CONFIG_D.glob("*.py")):
        exec(compile(snippet.read_text(), str(snippet), "exec"), {"c": c})
    assert "spawner_class" not in c.JupyterHub
    assert c.JupyterHub.authenticator_class == "dummy"
