"""A team as its members meet it in their servers, through a real hub, kernels and Chromium.

The admin makes a team of two approved users (a JupyterHub group) and both start their
servers. Then:

- alice runs the documented team snippet (docs/user-guide.md, **Teams.**) in a
  notebook in her home's root, in a real kernel of her server: the helpers import there
  (not only in ``~/notebook-scripts``), ``team_members`` names both members, a run lands
  in the team's store; the notebook is saved with its outputs as JupyterLab saves it,
  and the saved file holds none of her credentials (database password, storage secret,
  hub token) nor any of the hub's;
- bob logs a run to the team from a notebook in his home's root, where both helpers
  import (his seeded copies); alice, in Chromium, opens her MLflow UI,
  picks the team in its "Store" menu and sees bob's run, created by bob, in the team's
  store, and no other team is offered.

With ``ENERTEF_E2E_SCREENSHOTS=<dir>`` the team store's runs are saved as
``mlflow-team-store.png`` (the user guide's picture, docs/images/).
"""

from __future__ import annotations

import ast
import json
import re
import uuid
from pathlib import Path
from urllib.parse import unquote, urlsplit

import nbformat
import pytest
from playwright.sync_api import expect

from tests.harness import REPO
from tests.harness.browser import log_in, screenshot
from tests.harness.forms import signup_and_approve
from tests.harness.hub import run_coroutine, server_environment, start_server
from tests.harness.names import unique_name
from tests.harness.notebooks import execute_notebook, put_notebook

PASSWORD = "Team-notebook-e2e-passw0rd!"


def readme_team_snippet(team: str) -> list[str]:
    """The user guide's team snippet as notebook cells, one per statement, for team *team*."""
    section = (REPO / "docs" / "user-guide.md").read_text()
    code = section.split("**Teams.**", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
    code = code.replace('"team1"', repr(team))
    return [ast.get_source_segment(code, node) for node in ast.parse(code).body]


def credentials(env: dict[str, str], services_env: dict[str, str]) -> dict[str, str]:
    """Every secret a user's server holds, and the hub's own (which it must never hold)."""
    found = {
        "database password": urlsplit(env["MLFLOW_TRACKING_URI"]).password,
        "storage secret key": env["AWS_SECRET_ACCESS_KEY"],
        "hub API token": env["JUPYTERHUB_API_TOKEN"],
        "hub's storage root key": services_env["ENERTEF_MINIO_SECRET_KEY"],
        "hub's secret key": services_env["ENERTEF_SECRET_KEY"],
        "hub's database password": urlsplit(services_env["ENERTEF_POSTGRES_ADMIN_URL"]).password,
    }
    for name, value in list(found.items()):
        assert value and len(value) >= 8, f"{name} is not a credential: {value!r}"
        if unquote(value) != value:
            found[f"{name} (decoded)"] = unquote(value)
    return found


@pytest.fixture(scope="module")
def team(hub):
    """A team of two approved users who never logged in, made by the admin; both servers running."""
    name = unique_name("crew")
    alice = signup_and_approve(hub, unique_name("alice"), PASSWORD)
    bob = signup_and_approve(hub, unique_name("bob"), PASSWORD)
    hub.api("POST", f"/groups/{name}").raise_for_status()
    hub.api("POST", f"/groups/{name}/users", json={"users": [alice, bob]}).raise_for_status()
    urls = {who: start_server(hub, who).rstrip("/") + "/" for who in (alice, bob)}
    return {"team": name, "alice": alice, "bob": bob, "urls": urls}


def test_the_readme_snippet_runs_in_the_home_root_and_the_saved_notebook_holds_no_secret(hub, team, services_env):
    alice, url = team["alice"], team["urls"][team["alice"]]
    cells = readme_team_snippet(team["team"])
    assert any("use_team(" in c for c in cells) and any("use_personal()" in c for c in cells), cells
    # In the home's root, not in ~/notebook-scripts: the helpers import from any notebook.
    put_notebook(url, hub.token, "team-snippet.ipynb", cells)
    errors = run_coroutine(execute_notebook(url, hub.token, "team-snippet.ipynb", save_outputs=True))
    assert not errors, "\n\n".join(errors)

    env = server_environment(hub, alice)
    saved = (Path(env["HOME"]) / "team-snippet.ipynb").read_text()
    assert "use_personal()" in saved and '"output_type"' in saved  # saved, with its outputs
    leaked = [name for name, secret in credentials(env, services_env).items() if secret in saved]
    assert not leaked, f"the saved notebook holds: {', '.join(leaked)}"

    shown = json.dumps([c.get("outputs", []) for c in nbformat.reads(saved, as_version=4).cells])
    assert f"['{team['team']}']" in shown  # my_teams()
    assert repr(sorted([alice, team["bob"]])) in shown  # team_members(): both members
    assert f"'store': 'team {team['team']}'" in shown and "'store': 'personal'" in shown  # use_team(), use_personal()


def test_a_member_sees_the_teams_runs_in_her_mlflow_ui(hub, team, page):
    alice, bob, name = team["alice"], team["bob"], team["team"]
    experiment = f"crew-exp-{uuid.uuid4().hex[:6]}"
    put_notebook(team["urls"][bob], hub.token, "log-to-team.ipynb", [
        # A notebook in the home's root imports both helpers: the seeded copies, which bob may edit.
        "import os, mlflow_group_utils, tensorboard_logger\n"
        "for module in (mlflow_group_utils, tensorboard_logger):\n"
        "    assert module.__file__ == os.path.expanduser(f'~/notebook-scripts/{module.__name__}.py'), module.__file__",
        f"from mlflow_group_utils import use_team\nuse_team({name!r})",
        f"import mlflow\nmlflow.set_experiment({experiment!r})\n"
        "with mlflow.start_run(run_name='bobs-run'):\n    mlflow.log_metric('accuracy', 0.93)",
    ])  # fmt: skip
    errors = run_coroutine(execute_notebook(team["urls"][bob], hub.token, "log-to-team.ipynb"))
    assert not errors, "\n\n".join(errors)

    page.set_viewport_size({"width": 1400, "height": 860})
    own = f"{team['urls'][alice]}mlflow/"
    log_in(page, hub, alice, PASSWORD, f"/user/{alice}/mlflow/")
    page.wait_for_url(re.compile(rf"^{re.escape(own)}.*"), timeout=120_000)
    store = page.get_by_label("MLflow store")
    expect(store).to_be_visible(timeout=120_000)
    expect(page.get_by_text("Recent Experiments")).to_be_visible(timeout=60_000)
    screenshot(page, "mlflow-own-store")
    assert store.locator("option").all_inner_texts() == ["My own store", f"Team {name}"]  # no other team
    expect(page.get_by_text(experiment)).to_have_count(0)  # her own store: not the team's runs
    store.select_option(label=f"Team {name}")
    page.wait_for_url(re.compile(rf"^{re.escape(own)}team/{name}/.*"), timeout=60_000)
    expect(page.get_by_text(experiment, exact=True).first).to_be_visible(timeout=120_000)
    expect(page.get_by_label("MLflow store")).to_have_value(f"/user/{alice}/mlflow/team/{name}/")
    page.get_by_text(experiment, exact=True).first.click()
    expect(page.get_by_text("bobs-run").first).to_be_visible(timeout=60_000)
    screenshot(page, "mlflow-team-store")
    page.get_by_text("bobs-run").first.click()
    created_by = page.get_by_text("Created by", exact=True).first
    expect(created_by).to_be_visible(timeout=60_000)
    expect(created_by.locator("xpath=ancestor::*[position() <= 3]").filter(has_text=bob).first).to_be_visible()
