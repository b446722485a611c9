"""The container images under jn-tb/: pinned bases, and what each image must contain."""

from __future__ import annotations

import configparser
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DOCKERFILES = sorted((REPO / "jn-tb").glob("*/Dockerfile"))


def from_images(dockerfile: Path) -> list[str]:
    return re.findall(r"^FROM\s+(?:--platform=\S+\s+)?(\S+)", dockerfile.read_text(), re.MULTILINE)


def test_both_images_exist():
    assert {p.parent.name for p in DOCKERFILES} == {"hub", "notebook"}


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.parent.name)
def test_base_images_are_pinned(dockerfile):
    images = from_images(dockerfile)
    assert images
    for image in images:
        name, _, tag = image.rpartition(":")
        assert name and "/" not in tag, f"{image}: untagged FROM"
        assert tag != "latest", f"{image}: ':latest' moves; pin a version or date tag"
        assert "$" not in image, f"{image}: the base must be pinned in the file, not by a build argument"


def test_hub_image_matches_the_chart_version():
    (image,) = from_images(REPO / "jn-tb" / "hub" / "Dockerfile")
    chart = re.search(r"^Z2JH_CHART_VERSION=(\S+)", (REPO / "scripts" / "start.sh").read_text(), re.MULTILINE)
    assert image == f"quay.io/jupyterhub/k8s-hub:{chart.group(1)}"


def test_hub_image_mlflow_pin_matches_setup_cfg():
    cfg = configparser.ConfigParser()
    cfg.read(REPO / "setup.cfg")
    notebook_extra = cfg["options.extras_require"]["notebook"]
    pin = re.search(r"^\s*mlflow==(\S+)", notebook_extra, re.MULTILINE).group(1)
    dockerfile = (REPO / "jn-tb" / "hub" / "Dockerfile").read_text()
    assert f"ARG MLFLOW_VERSION={pin}" in dockerfile
    assert '"mlflow-skinny==${MLFLOW_VERSION}" sqlalchemy alembic' in dockerfile


def test_hub_image_installs_the_package_and_config_snippets():
    text = (REPO / "jn-tb" / "hub" / "Dockerfile").read_text()
    assert "COPY jupyterhub_config.d/ /usr/local/etc/jupyterhub/jupyterhub_config.d/" in text
    assert "COPY enertef_hub " in text and "pip install" in text
    # The chart runs the hub as uid 1000; an image ending as root would fail its securityContext.
    assert text.rstrip().splitlines()[-1] == "USER 1000"


def test_notebook_image_installs_the_notebook_extra_and_scripts():
    text = (REPO / "jn-tb" / "notebook" / "Dockerfile").read_text()
    assert '[notebook]' in text
    assert "COPY notebook-scripts/ /opt/enertef/notebook-scripts/" in text
    assert re.search(r"^USER \$\{NB_UID\}$", text, re.MULTILINE), "the server must not run as root"


def dockerignore_allows(ignore_file: Path, path: str) -> bool:
    """BuildKit's rule for these files: the last matching pattern wins; a directory pattern covers its contents."""
    allowed = True
    for line in ignore_file.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pattern = line.lstrip("!").rstrip("/")
        if pattern == "**" or path == pattern or path.startswith(pattern + "/"):
            allowed = negate
    return allowed


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.parent.name)
def test_every_copied_path_exists_and_is_in_the_build_context(dockerfile):
    ignore = dockerfile.with_name("Dockerfile.dockerignore")
    assert ignore.is_file()
    for line in re.findall(r"^COPY\s+(.+)$", dockerfile.read_text(), re.MULTILINE):
        parts = [p for p in line.split() if not p.startswith("--")]
        for source in parts[:-1]:
            source = source.rstrip("/")
            assert (REPO / source).exists(), f"{dockerfile.parent.name}: COPY {source}: not in the repository"
            assert dockerignore_allows(ignore, source), f"{dockerfile.parent.name}: {source} is excluded from the context"


def test_start_hook_is_sourced_safely():
    """docker-stacks sources *.sh hooks: an `exit` or `set -e` there would kill the server start."""
    hook = (REPO / "jn-tb" / "notebook" / "before-notebook.d" / "50-enertef-seed.sh").read_text()
    code = "\n".join(line for line in hook.splitlines() if not line.lstrip().startswith("#"))
    assert not re.search(r"^\s*(exit|set -e)", code, re.MULTILINE)
    assert '--source /opt/enertef/notebook-scripts --home "${HOME}"' in hook
