"""Files the package installs into the server's environment (setup.cfg ``[options.data_files]``).

- ``etc/ipython/ipython_kernel_config.py``: every kernel has ``~/notebook-scripts`` at
  the end of ``sys.path`` (the helpers import from any notebook; nothing there shadows
  an installed module);
- ``share/jupyter/lab/settings/overrides.d/enertef-hub.json``: no Jupyter news pop-up.

A kernel in a real notebook server imports the helpers from the home's root in
tests/e2e/test_teams_in_notebooks.py; the launcher in Chromium, without the pop-up,
in tests/e2e/test_launcher.py.
"""

from __future__ import annotations

import configparser
import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def data_files() -> dict[str, list[str]]:
    setup = configparser.ConfigParser(interpolation=None)
    setup.optionxform = str
    setup.read(REPO / "setup.cfg")
    return {target: [s.strip() for s in sources.splitlines() if s.strip()]
            for target, sources in setup["options.data_files"].items()}  # fmt: skip


def test_the_files_go_where_ipython_and_jupyterlab_read_them() -> None:
    from IPython.core.application import ENV_CONFIG_DIRS
    from jupyterlab.commands import get_app_dir

    files = data_files()
    assert files["etc/ipython"] == ["enertef_hub/notebook/ipython_kernel_config.py"]
    assert files["share/jupyter/lab/settings/overrides.d"] == ["enertef_hub/notebook/lab_overrides/enertef-hub.json"]
    # Relative to sys.prefix, as pip installs data files.
    assert os.path.join(sys.prefix, "etc", "ipython") in ENV_CONFIG_DIRS
    assert Path(get_app_dir()) == Path(sys.prefix, "share", "jupyter", "lab")
    # This environment (users' servers on one machine run from it) has the current copies:
    # scripts/bootstrap.sh copies them, since pip's editable install leaves data files out.
    for target, sources in files.items():
        for source in sources:
            installed = Path(sys.prefix, target, Path(source).name)
            assert installed.read_bytes() == (REPO / source).read_bytes(), f"{installed}: run scripts/bootstrap.sh"


def test_kernels_find_the_seeded_helpers_last_on_their_path(tmp_path) -> None:
    scripts = tmp_path / "notebook-scripts"
    scripts.mkdir()
    (scripts / "helper_here.py").write_text("VALUE = 42\n")
    (scripts / "json.py").write_text("raise SystemExit('the standard library was shadowed')\n")
    config = REPO / "enertef_hub" / "notebook" / "ipython_kernel_config.py"
    code = (f"exec(open({str(config)!r}).read(), {{}})\n"
            f"exec(open({str(config)!r}).read(), {{}})\n"  # loaded twice: one entry
            "import sys, json, helper_here\n"
            "print(json.dumps([sys.path.count(sys.path[-1]), sys.path[-1], helper_here.VALUE, json.__file__]))")
    out = subprocess.run([sys.executable, "-c", code], env={**os.environ, "HOME": str(tmp_path)}, cwd="/",
                         capture_output=True, text=True, check=True).stdout  # fmt: skip
    count, last, value, json_file = json.loads(out)
    assert (count, last, value) == (1, str(scripts), 42)
    assert not json_file.startswith(str(scripts))


def test_the_news_pop_up_is_off_by_a_valid_setting() -> None:
    from jupyterlab.commands import get_app_dir

    overrides = json.loads((REPO / "enertef_hub/notebook/lab_overrides/enertef-hub.json").read_text())
    plugin = "@jupyterlab/apputils-extension:notification"
    assert overrides == {plugin: {"fetchNews": "false", "checkForUpdates": False}}
    # The names and values are JupyterLab's own (an unknown one would be ignored silently).
    schema = json.loads(Path(get_app_dir(), "schemas", "@jupyterlab", "apputils-extension", "notification.json").read_text())
    assert "false" in [choice["const"] for choice in schema["properties"]["fetchNews"]["oneOf"]]
    assert schema["properties"]["checkForUpdates"]["type"] == "boolean"
