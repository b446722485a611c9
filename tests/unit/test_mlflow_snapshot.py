"""What a recording of MLflow's table creation keeps, and what it refuses (pure)."""

import pytest

from enertef_hub import mlflow_snapshot


def test_a_recording_that_names_its_scratch_schema_is_refused():
    statements = [["CREATE TABLE experiments (id int)", {}],
                  ["ALTER TABLE enertef_snapshot_ab12.runs ADD x int", {}]]
    with pytest.raises(mlflow_snapshot.SnapshotError, match="scratch schema"):
        mlflow_snapshot.make_replay_statements(statements, "enertef_snapshot_ab12")


def test_look_ups_are_not_replayed():
    statements = [["SELECT relname FROM pg_class WHERE relname = %(name)s", {"name": "experiments"}],
                  ["CREATE TABLE experiments (id int)", {}]]
    assert mlflow_snapshot.make_replay_statements(statements, "enertef_snapshot_x") == [statements[1]]

