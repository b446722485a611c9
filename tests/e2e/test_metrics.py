"""``/hub/metrics`` carries the workbench's figures next to JupyterHub's own."""

from __future__ import annotations

import re

from tests.harness.forms import signup_and_approve
from tests.harness.hub import start_server
from tests.harness.names import unique_name


def metric(text: str, name: str, **labels) -> float | None:
    """The value of one sample in Prometheus' text format, or None."""
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        match = re.match(r"^([a-z_]+)\{([^}]*)\} (\S+)$", line)
        if match and match.group(1) == name and ",".join(sorted(match.group(2).split(","))) == wanted:
            return float(match.group(3))
    return None


def test_hub_metrics_carry_provisioning_and_table_figures(hub):
    admin = hub.admin_session()
    name = signup_and_approve(hub, unique_name("metra"), "correct horse battery 5")
    start_server(hub, name)

    response = admin.get(f"{hub.url}/hub/metrics")

    assert response.status_code == 200, response.text[:500]
    text = response.text
    assert "jupyterhub_" in text  # JupyterHub's own figures, on the same page
    provisions = metric(text, "enertef_operation_duration_seconds_count", operation="provision", outcome="success")
    assert provisions and provisions >= 1, [l for l in text.splitlines() if "enertef" in l][:20]
    assert metric(text, "enertef_operation_duration_seconds_count", operation="team_sync_user", outcome="success")
    assert "# TYPE enertef_operation_failures_total counter" in text

    # Revocation is measured too: delete the user through the API.
    hub.api("DELETE", f"/users/{name}/server")
    assert hub.api("DELETE", f"/users/{name}").status_code == 204
    text = admin.get(f"{hub.url}/hub/metrics").text
    assert metric(text, "enertef_operation_duration_seconds_count", operation="deprovision", outcome="success") >= 1
