"""The hub learns the MLflow schema head from MLflow's migration files, in milliseconds, not from importing MLflow."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap


def test_the_hub_reads_mlflows_schema_head_without_importing_mlflow():
    code = """
        import json, sys
        from enertef_hub.mlflow_tables import read_schema_head
        head = read_schema_head()
        assert "mlflow" not in sys.modules, "MLflow was imported"
        from enertef_hub.mlflow_tables import schema_head
        print(json.dumps([head, schema_head()]))
    """
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    fast, slow = json.loads(proc.stdout)
    assert fast == slow
