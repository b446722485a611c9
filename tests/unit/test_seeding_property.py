"""Property: whatever users and upstream do, no user edit is lost and untouched files follow upstream."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from enertef_hub.provisioners.seeding import SCRIPTS_DIRNAME, seed_home

NAMES = ["a.py", "b.txt", "sub/c.py", "sub/d.ipynb"]

# Upstream and user contents come from disjoint alphabets, so a user edit can never
# coincide with an upstream version (which seeding would rightly treat as untouched).
upstream_change = st.tuples(st.just("upstream"), st.sampled_from(NAMES), st.integers(0, 3))
upstream_remove = st.tuples(st.just("retire"), st.sampled_from(NAMES), st.just(0))
user_edit = st.tuples(st.just("edit"), st.sampled_from(NAMES), st.integers(0, 3))
user_delete = st.tuples(st.just("delete"), st.sampled_from(NAMES), st.just(0))
spawn = st.tuples(st.just("spawn"), st.just(""), st.just(0))
steps = st.lists(st.one_of(upstream_change, upstream_remove, user_edit, user_delete, spawn), max_size=25)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(initial=st.dictionaries(st.sampled_from(NAMES), st.integers(0, 3), min_size=1), steps=steps)
def test_no_user_edit_is_lost_and_untouched_files_track_upstream(initial, steps) -> None:
    root = Path(tempfile.mkdtemp())
    try:
        source, home = root / "source", root / "home"
        source.mkdir()
        home.mkdir()
        upstream: dict[str, str] = {}
        # The model: files the user wrote or deleted (content or None), and the
        # files the user never touched since they were seeded.
        user_owned: dict[str, str | None] = {}
        # Names seeding has placed in the home at least once; deleting one of those is
        # a decision to keep. Deleting a file of one's own before upstream shipped a
        # file of that name is not, and the upstream file then appears.
        seeded: set[str] = set()

        def set_upstream(name: str, version: int) -> None:
            upstream[name] = f"upstream {name} v{version}-{len(upstream)}\n"
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            (source / name).write_text(upstream[name])

        def do_spawn() -> None:
            seed_home(source, home)
            target = home / SCRIPTS_DIRNAME
            for name in NAMES:
                path = target / name
                if name in user_owned:
                    expected = user_owned[name]
                    assert (path.read_text() if path.exists() else None) == expected, name
                elif name in upstream:
                    assert path.read_text() == upstream[name], name
                    seeded.add(name)

        for name, version in initial.items():
            set_upstream(name, version)
        do_spawn()
        for action, name, number in steps:
            path = home / SCRIPTS_DIRNAME / name
            if action == "upstream":
                set_upstream(name, number)
            elif action == "retire" and name in upstream:
                del upstream[name]
                (source / name).unlink()
            elif action == "edit":
                path.parent.mkdir(parents=True, exist_ok=True)
                user_owned[name] = f"user {name} {number}\n"
                path.write_text(user_owned[name])
            elif action == "delete" and path.exists():
                path.unlink()
                if name in seeded:
                    user_owned[name] = None
                else:
                    user_owned.pop(name, None)
            elif action == "spawn":
                do_spawn()
        do_spawn()
    finally:
        shutil.rmtree(root)
