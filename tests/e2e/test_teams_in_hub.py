"""Teams managed where JupyterHub manages groups (admin panel / REST API), synced into
team stores at the group edit itself, at spawn and by ``enertef-hub sync``."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from botocore.exceptions import ClientError

from tests.harness.forms import signup_and_approve
from tests.harness.hub import server_environment, start_server
from tests.harness.names import unique_name
from tests.harness.s3 import s3_client


def test_group_members_get_the_team_and_lose_it_at_once(hub, services_env):
    team = unique_name("lab")
    alice = signup_and_approve(hub, unique_name("alice"), "correct horse battery 9")
    bob = signup_and_approve(hub, unique_name("bob"), "correct horse battery 10")
    for name in (alice, bob):  # hub users exist from their approval on
        assert hub.api("GET", f"/users/{name}").status_code == 200
    # What the admin panel's group page does.
    hub.api("POST", f"/groups/{team}").raise_for_status()
    hub.api("POST", f"/groups/{team}/users", json={"users": [alice, bob]}).raise_for_status()

    start_server(hub, alice)
    start_server(hub, bob)
    alice_env, bob_env = server_environment(hub, alice), server_environment(hub, bob)
    assert alice_env["ENERTEF_TEAMS"] == team and bob_env["ENERTEF_TEAMS"] == team
    s3_client(alice_env).put_object(Bucket=f"team-{team}", Key="shared.csv", Body=b"a,b\n1,2\n")
    assert s3_client(bob_env).get_object(Bucket=f"team-{team}", Key="shared.csv")["Body"].read() == b"a,b\n1,2\n"

    # The admin removes bob from the group: the hub revokes him at once (enertef_hub.api_handlers) ...
    hub.api("DELETE", f"/groups/{team}/users", json={"users": [bob]}).raise_for_status()
    with pytest.raises(ClientError) as err:
        s3_client(bob_env).get_object(Bucket=f"team-{team}", Key="shared.csv")
    assert err.value.response["Error"]["Code"] == "AccessDenied"
    assert s3_client(alice_env).get_object(Bucket=f"team-{team}", Key="shared.csv")["Body"].read() == b"a,b\n1,2\n"

    # ... so the periodic sync (a hub service in production, the safety net) finds nothing left of his.
    sync = subprocess.run(
        [sys.executable, "-m", "enertef_hub.cli", "sync"], capture_output=True, text=True, timeout=120,
        env={**os.environ, **services_env, "JUPYTERHUB_API_URL": f"{hub.url}/hub/api", "JUPYTERHUB_API_TOKEN": hub.token},
    )
    assert sync.returncode == 0, sync.stderr
    report = json.loads(sync.stdout.strip().splitlines()[-1])
    assert f"{team}:{bob}" not in report["revoked"] and f"{team}:{alice}" not in report["granted"]
