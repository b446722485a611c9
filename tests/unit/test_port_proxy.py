"""enertef_hub.notebook.port_proxy: the pure parts (the real server is tests/security/test_port_proxy.py)."""

from __future__ import annotations

import pytest

from enertef_hub.notebook.port_proxy import PortProxyGuard, without_credential_parameters


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("http://localhost:1/a", "http://localhost:1/a"),
        ("http://localhost:1/a?token=T", "http://localhost:1/a"),
        ("http://localhost:1/a?token=T&keep=1", "http://localhost:1/a?keep=1"),
        ("http://localhost:1/a?keep=%20x&token=T&b=2", "http://localhost:1/a?keep=%20x&b=2"),
        ("http://localhost:1/a?%74oken=T", "http://localhost:1/a"),  # Jupyter decodes the name too
        ("http://localhost:1/a?token", "http://localhost:1/a"),
        ("http://localhost:1/a?tokens=1&my_token=2", "http://localhost:1/a?tokens=1&my_token=2"),
    ],
)
def test_token_parameters_are_dropped(uri, expected):
    assert without_credential_parameters(uri) == expected


@pytest.mark.parametrize(
    ("value", "allowed"), [(None, False), ("", False), ("0", False), ("no", False), ("1", True), ("TRUE", True)]
)
def test_port_proxy_is_off_unless_asked_for(monkeypatch, value, allowed):
    if value is None:
        monkeypatch.delenv("ENERTEF_UNSAFE_PORT_PROXY", raising=False)
    else:
        monkeypatch.setenv("ENERTEF_UNSAFE_PORT_PROXY", value)
    assert PortProxyGuard().allow_port_proxy is allowed
