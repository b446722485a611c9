"""The README's and docs/' promises that can drift from the code."""

import runpy
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_configuration_reference_is_generated_from_the_traitlets():
    make_reference = runpy.run_path(str(ROOT / "scripts" / "config_reference.py"))["make_reference"]
    assert make_reference() in (ROOT / "docs" / "configuration.md").read_text(), (
        "docs/configuration.md is stale: run `.venv/bin/python scripts/config_reference.py --write`"
    )


def test_readme_starts_with_the_two_commands_and_ci_runs_the_same_test_command():
    readme = (ROOT / "README.md").read_text()
    first_block = readme.split("```sh", 1)[1].split("```", 1)[0]
    commands = [line.split("#")[0].strip() for line in first_block.strip().splitlines()]
    assert commands == ["scripts/workbench.sh", "scripts/run-tests.sh"]
    assert "scripts/run-tests.sh" in (ROOT / ".ci" / "run").read_text()


def test_cli_usage_in_the_docs_matches_the_cli():
    out = subprocess.run([sys.executable, "-m", "enertef_hub.cli", "--help"], capture_output=True, text=True).stdout
    readme = (ROOT / "docs" / "administration.md").read_text()
    for command in ("provision", "deprovision", "restore", "rotate", "status", "check", "sync"):
        assert command in out and f"enertef-hub {command}" in readme
