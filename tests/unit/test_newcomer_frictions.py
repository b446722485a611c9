"""What a newcomer met in the notebooks and launcher: fixed, and kept fixed."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

from mlflow.entities import RunTag

from enertef_hub.notebook.mlflow_store import make_run_attribution
from enertef_hub.notebook.proxies import setup_mlflow_ui, setup_tensorboard

ROOT = Path(__file__).resolve().parents[2]


def test_launcher_tiles_have_icons_in_the_first_section():
    # JupyterLab 4 shows a server-proxy tile's icon only in its "Notebook" and
    # "Console" sections, and "Notebook" is drawn first (tests/e2e/test_launcher.py
    # checks both in Chromium).
    for setup in (setup_mlflow_ui, setup_tensorboard):
        entry = setup()["launcher_entry"]
        assert entry["category"] == "Notebook"
        assert Path(entry["icon_path"]).is_file() and entry["icon_path"].endswith(".svg")


def test_runs_are_attributed_to_the_hub_user_not_the_os_account():
    user_id, tags = make_run_attribution("jovyan", [RunTag("mlflow.user", "jovyan"), RunTag("a", "b")],
                                         "alice", "jovyan")
    assert user_id == "alice"
    assert {t.key: t.value for t in tags} == {"mlflow.user": "alice", "a": "b"}
    # A missing tag is added; an explicit choice is kept.
    assert {t.key: t.value for t in make_run_attribution("unknown", [], "alice", "jovyan")[1]} == {"mlflow.user": "alice"}
    user_id, tags = make_run_attribution("bot", [RunTag("mlflow.user", "ci-bot")], "alice", "jovyan")
    assert user_id == "bot" and tags == [RunTag("mlflow.user", "ci-bot")]


def test_mlflow_info_lines_are_output_not_stderr(tmp_path):
    code = """
        import logging
        import mlflow
        from enertef_hub.notebook.mlflow_store import show_mlflow_info_as_output
        show_mlflow_info_as_output()
        show_mlflow_info_as_output()  # idempotent: each line once
        logging.getLogger("mlflow.tracking.fluent").info("creating a new experiment")
        logging.getLogger("mlflow.tracking.fluent").warning("something to look at")
    """
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          cwd=tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("creating a new experiment") == 1 and "creating" not in proc.stderr
    assert "something to look at" in proc.stderr and "something" not in proc.stdout


def test_notebook_02_names_its_tensorboard_run_after_the_mlflow_run():
    nb = json.loads((ROOT / "notebook-scripts" / "02-training-tensorboard.ipynb").read_text())
    code = "\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code")
    assert 'TensorBoardLogger(f"digits-sgd-{run.info.run_id[:8]}")' in code
    assert code.index('start_run(run_name="digits-sgd")') < code.index("TensorBoardLogger(")


def test_mlflow_ui_hides_what_cannot_work_in_a_users_server():
    """The UI page loads a script that keeps the Assistant closed and hides the GenAI-only parts.

    The names are MLflow 3.17's (checked in Chromium by tests/e2e/test_mlflow_ui_view.py).
    """
    from enertef_hub.notebook.mlflow_ui import UI_DEFAULTS_JS, UI_DEFAULTS_PATH, add_ui_defaults

    page = add_ui_defaults(b"<html><head><title>MLflow</title></head><body></body></html>")
    assert f'<script src="{UI_DEFAULTS_PATH}"></script></head>'.encode() in page
    script = UI_DEFAULTS_JS.decode()
    assert 'setItem("mlflow.assistant.panelOpen_v1", "false")' in script
    assert 'setItem("mlflow.assistant.fab.autoOpenedOnFirstLoad_v1", "true")' in script
    for hidden in ("[data-assistant-ui]", "mlflow.sidebar.gateway", "mlflow.home.demo-banner.launch"):
        assert hidden in script
    assert "display: none !important" in script


def test_every_fix_of_nativeauthenticators_forms_applies_to_the_installed_version():
    """A NativeAuthenticator upgrade that changes its pages must show here, not as a silently unfixed form."""
    from jinja2 import Environment

    from enertef_hub.handlers import NATIVE_TEMPLATE_DIR, PATCHED_NATIVE_TEMPLATES, PatchedNativeTemplateLoader

    loader = PatchedNativeTemplateLoader()
    for ours, (native, fixes) in PATCHED_NATIVE_TEMPLATES.items():
        original = Path(NATIVE_TEMPLATE_DIR, native).read_text(encoding="utf-8")
        source, _, _ = loader.get_source(Environment(), ours)
        for before, after in fixes:
            assert before in original, f"{native} no longer contains {before!r}"
            assert after in source
        Environment().parse(source)  # still a valid template
    assert 'value="{{username or' in loader.get_source(Environment(), "enertef-native-login.html")[0]
