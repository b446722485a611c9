"""The wheel the hub image installs carries every file of the package, not only its modules.

The hub image (``jn-tb/hub/Dockerfile``) installs enertef_hub from a wheel, where only
``setup.cfg``'s package data travels beside the modules; the tests run it from the
source tree, where every file is there anyway. A template or script missing from the
wheel breaks the chart's hub alone (e.g. the admin panel's delete confirmation: its
script then answers 404 and the delete button stays hidden).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_wheel_holds_every_file_of_the_package(tmp_path):
    # What the Dockerfile copies into the image before `pip install` (no egg-info from
    # a development install, whose file list would fill the gaps package data leaves).
    context = tmp_path / "context"
    context.mkdir()
    for name in ("setup.cfg", "pyproject.toml", "README.md"):
        shutil.copy(REPO / name, context / name)
    shutil.copytree(REPO / "enertef_hub", context / "enertef_hub", ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(context)],
                   check=True, capture_output=True, timeout=600)
    (wheel,) = tmp_path.glob("enertef_hub-*.whl")
    in_wheel = set(zipfile.ZipFile(wheel).namelist())
    package = REPO / "enertef_hub"
    in_source = {
        path.relative_to(REPO).as_posix()
        for path in package.rglob("*")
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc"
    }
    assert in_source - in_wheel == set()
