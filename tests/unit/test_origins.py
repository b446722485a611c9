"""Per-user origins: hub URL -> JupyterHub settings (enertef_hub.origins)."""

from __future__ import annotations

import pytest

from enertef_hub.origins import apply_user_origins, loopback_bind_url, user_origin_settings, user_url


@pytest.mark.parametrize(
    "url, subdomain_host, host_prefix",
    [
        ("http://localhost:8000", "http://localhost:8000", True),  # browsers: localhost is secure
        ("http://LOCALHOST:8000/", "http://localhost:8000", True),
        ("https://hub.example.org", "https://hub.example.org", True),
        ("http://hub.lab.internal:8000", "http://hub.lab.internal:8000", False),  # no Secure on plain http
    ],
)
def test_settings(url, subdomain_host, host_prefix):
    settings = user_origin_settings(url)
    assert settings["subdomain_host"] == subdomain_host
    assert settings["cookie_host_prefix_enabled"] is host_prefix
    # __Host- cookies on http://localhost: every cookie Secure (users' OAuth state too)
    secure_http = host_prefix and url.lower().startswith("http:")
    assert ("tornado_settings" in settings) is secure_http


def test_apply_merges_tornado_settings():
    from traitlets.config import Config

    c = Config()
    c.JupyterHub.tornado_settings = {"slow_spawn_timeout": 0, "cookie_options": {"samesite": "Lax"}}
    apply_user_origins(c.JupyterHub, "http://localhost:8000")
    assert c.JupyterHub.subdomain_host == "http://localhost:8000"
    assert c.JupyterHub.tornado_settings == {
        "slow_spawn_timeout": 0,
        "cookie_options": {"samesite": "Lax", "secure": True},
    }


@pytest.mark.parametrize(
    "url, why",
    [
        ("http://127.0.0.1:8000", "IP address"),
        ("http://[::1]:8000", "IP address"),
        ("http://localhost:8000/jupyter", "path"),
        ("localhost:8000", "must look like"),
    ],
)
def test_urls_that_cannot_carry_user_subdomains_are_refused(url, why):
    with pytest.raises(ValueError, match=why):
        user_origin_settings(url)


def test_user_url_and_bind_url():
    assert user_url("http://localhost:8000", "alice", "lab") == "http://alice.localhost:8000/user/alice/lab"
    assert loopback_bind_url("http://localhost:8000") == "http://127.0.0.1:8000"
    assert loopback_bind_url("https://hub.example.org") == "https://hub.example.org"
