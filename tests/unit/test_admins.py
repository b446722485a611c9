"""``enertef-hub admin-password NAME``: only configured admins, created approved, reset keeps one row."""

from __future__ import annotations

import io
import sqlite3

import bcrypt
import pytest

from enertef_hub import cli
from enertef_hub.admins import set_admin_password


@pytest.fixture
def hub_config(tmp_path):
    db = tmp_path / "jupyterhub.sqlite"
    config = tmp_path / "jupyterhub_config.py"
    config.write_text(f'c.JupyterHub.db_url = "sqlite:///{db}"\nc.Authenticator.admin_users = {{"boss"}}\n')
    return config, db


def rows(db):
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT username, password, is_authorized FROM users_info").fetchall()


def test_creates_then_resets_the_admin(hub_config, capsys):
    config, db = hub_config
    assert cli.main(["--config", str(config), "admin-password", "Boss"]) == 0
    first = capsys.readouterr().out.strip()
    ((name, hashed, approved),) = rows(db)
    assert name == "boss" and approved and bcrypt.checkpw(first.encode(), hashed)
    assert len(first) >= 20

    assert cli.main(["--config", str(config), "admin-password", "boss"]) == 0
    second = capsys.readouterr().out.strip()
    ((_, hashed, _),) = rows(db)
    assert second != first and bcrypt.checkpw(second.encode(), hashed)


def test_password_from_stdin_is_not_printed(hub_config, capsys, monkeypatch):
    config, db = hub_config
    monkeypatch.setattr("sys.stdin", io.StringIO("chosen-by-the-operator-1\n"))
    assert cli.main(["--config", str(config), "admin-password", "boss", "--password-stdin"]) == 0
    assert "chosen-by-the-operator-1" not in capsys.readouterr().out
    assert bcrypt.checkpw(b"chosen-by-the-operator-1", rows(db)[0][1])


def test_only_configured_admins(hub_config, capsys):
    config, db = hub_config
    assert cli.main(["--config", str(config), "admin-password", "alice"]) == 2
    assert "not in c.Authenticator.admin_users" in capsys.readouterr().err
    with pytest.raises(ValueError, match="empty"):
        set_admin_password(f"sqlite:///{db}", {"boss"}, "boss", "")
