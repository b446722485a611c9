"""seed_home on a real filesystem: what users rely on across spawns and upgrades."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from enertef_hub.provisioners.seeding import (
    MANIFEST_NAME,
    SCRIPTS_DIRNAME,
    SeedingError,
    seed_home,
)


def write_tree(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


@pytest.fixture
def source(tmp_path: Path) -> Path:
    return write_tree(
        tmp_path / "source",
        {
            "helpers.py": "v1 helpers\n",
            "requirements.txt": "numpy\n",
            "examples/01.ipynb": "{}\n",
        },
    )


@pytest.fixture
def home(tmp_path: Path) -> Path:
    home = tmp_path / "home"
    home.mkdir()
    return home


def scripts(home: Path) -> Path:
    return home / SCRIPTS_DIRNAME


def test_fresh_home_gets_every_script_and_a_manifest(source: Path, home: Path) -> None:
    report = seed_home(source, home)

    assert sorted(report.created) == ["examples/01.ipynb", "helpers.py", "requirements.txt"]
    assert (scripts(home) / "helpers.py").read_text() == "v1 helpers\n"
    assert (scripts(home) / "examples/01.ipynb").read_text() == "{}\n"
    manifest = json.loads((scripts(home) / MANIFEST_NAME).read_text())
    assert set(manifest["files"]) == {"examples/01.ipynb", "helpers.py", "requirements.txt"}
    # No temporary files left behind.
    assert not [p for p in scripts(home).rglob("*") if "enertef-tmp" in p.name]


def test_second_spawn_keeps_user_edits(source: Path, home: Path) -> None:
    seed_home(source, home)
    (scripts(home) / "helpers.py").write_text("my own helpers\n")

    report = seed_home(source, home)

    assert (scripts(home) / "helpers.py").read_text() == "my own helpers\n"
    assert report.kept_edited == ["helpers.py"]
    assert report.created == [] and report.updated == []


def test_new_version_updates_untouched_files_only(source: Path, home: Path) -> None:
    seed_home(source, home)
    (scripts(home) / "requirements.txt").write_text("numpy\nmy-package\n")
    write_tree(source, {"helpers.py": "v2 helpers\n", "requirements.txt": "numpy\npandas\n", "new.py": "new\n"})

    report = seed_home(source, home)

    assert (scripts(home) / "helpers.py").read_text() == "v2 helpers\n"
    assert (scripts(home) / "requirements.txt").read_text() == "numpy\nmy-package\n"
    assert (scripts(home) / "new.py").read_text() == "new\n"
    assert report.updated == ["helpers.py"]
    assert report.kept_edited == ["requirements.txt"]
    assert report.created == ["new.py"]


def test_user_deleted_file_is_not_recreated(source: Path, home: Path) -> None:
    seed_home(source, home)
    (scripts(home) / "helpers.py").unlink()
    write_tree(source, {"helpers.py": "v2 helpers\n"})

    report = seed_home(source, home)

    assert not (scripts(home) / "helpers.py").exists()
    assert report.kept_deleted == ["helpers.py"]


def test_user_deleted_folder_is_not_recreated(source: Path, home: Path) -> None:
    seed_home(source, home)
    (scripts(home) / "examples/01.ipynb").unlink()
    (scripts(home) / "examples").rmdir()

    report = seed_home(source, home)

    assert not (scripts(home) / "examples").exists()
    assert report.kept_deleted == ["examples/01.ipynb"]


def test_user_file_with_a_new_upstream_name_is_kept(source: Path, home: Path) -> None:
    seed_home(source, home)
    (scripts(home) / "later.py").write_text("mine\n")
    write_tree(source, {"later.py": "upstream\n"})

    report = seed_home(source, home)

    assert (scripts(home) / "later.py").read_text() == "mine\n"
    assert report.kept_edited == ["later.py"]


def test_damaged_manifest_never_overwrites(source: Path, home: Path) -> None:
    seed_home(source, home)
    (scripts(home) / "helpers.py").write_text("mine\n")
    (scripts(home) / MANIFEST_NAME).write_text("not json")
    write_tree(source, {"helpers.py": "v2\n"})

    seed_home(source, home)

    assert (scripts(home) / "helpers.py").read_text() == "mine\n"


def test_symlinked_file_is_refused_and_target_untouched(source: Path, home: Path, tmp_path: Path) -> None:
    seed_home(source, home)
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    (scripts(home) / "helpers.py").unlink()
    (scripts(home) / "helpers.py").symlink_to(victim)
    # A new file placed where the user planted a link before the first seeding:
    (scripts(home) / "new.py").symlink_to(tmp_path / "would-be-created.txt")
    write_tree(source, {"helpers.py": "v2\n", "new.py": "new\n"})

    report = seed_home(source, home)

    assert victim.read_text() == "precious\n"
    assert not (tmp_path / "would-be-created.txt").exists()
    assert sorted(report.refused) == ["helpers.py", "new.py"]
    assert (scripts(home) / "helpers.py").is_symlink()


def test_symlinked_scripts_folder_is_refused(source: Path, home: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    scripts(home).symlink_to(elsewhere)

    with pytest.raises(SeedingError, match="symlink"):
        seed_home(source, home)

    assert list(elsewhere.iterdir()) == []


def test_symlinked_subfolder_is_refused(source: Path, home: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    scripts(home).mkdir()
    (scripts(home) / "examples").symlink_to(elsewhere)

    report = seed_home(source, home)

    assert report.refused == ["examples/01.ipynb"]
    assert list(elsewhere.iterdir()) == []
    assert (scripts(home) / "helpers.py").exists()


def test_fifo_in_place_of_a_script_does_not_hang(source: Path, home: Path) -> None:
    scripts(home).mkdir()
    os.mkfifo(scripts(home) / "helpers.py")

    report = seed_home(source, home)

    assert report.refused == ["helpers.py"]


def test_executable_bit_follows_source(source: Path, home: Path) -> None:
    (source / "run.sh").write_text("#!/bin/sh\n")
    (source / "run.sh").chmod(0o755)

    seed_home(source, home)

    assert os.stat(scripts(home) / "run.sh").st_mode & 0o777 == 0o755
    assert os.stat(scripts(home) / "helpers.py").st_mode & 0o777 == 0o644


def test_command_line_prints_one_line_summary(source: Path, home: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "enertef_hub.provisioners.seeding", "--source", str(source), "--home", str(home)],
        capture_output=True,
        text=True,
        check=True,
    )
    assert result.stdout.count("\n") == 1
    assert "3 created" in result.stdout
    # It must stay light: it runs at every server start.
    probe = subprocess.run(
        [sys.executable, "-c", "import sys, enertef_hub.provisioners.seeding; "
         "print(sorted(m for m in sys.modules if m.split('.')[0] in {'mlflow', 'boto3', 'tensorboard'}))"],
        capture_output=True, text=True, check=True,
    )
    assert probe.stdout.strip() == "[]"


def test_a_file_named_notebook_scripts_is_left_alone(source: Path, home: Path) -> None:
    scripts(home).write_text("my notes\n")

    with pytest.raises(SeedingError, match="Rename it"):
        seed_home(source, home)

    assert scripts(home).read_text() == "my notes\n"
