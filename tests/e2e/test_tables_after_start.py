"""A first spawn that nothing prepared gets MLflow's tables once the server is up, and MLflow just works.

A user an admin made (no sign-up, so no approval prepared anything) spawns: the
spawn provisions the store and starts the server without waiting for MLflow's
tables; the hub gives the store its tables after JupyterHub found the server up
(``store-tables`` event), and a run logged with the server's own environment lands
in the store.
"""

from __future__ import annotations

import json

from tests.harness.hub import server_environment, start_server, wait_for_event
from tests.harness.names import unique_name
from tests.harness.services import run_as_user


def test_an_unprepared_first_spawn_gets_its_tables_after_the_server_is_up(hub):
    name = unique_name("late")
    hub.api("POST", f"/users/{name}").raise_for_status()
    start_server(hub, name)
    tables = wait_for_event(hub, name, "store-tables")
    assert tables["stores"] == [f"u_{name}"]

    lines = hub.log_text().splitlines()
    server_up = next(i for i, line in enumerate(lines) if f"User {name} took" in line)  # JupyterHub's, once it answered
    made = next(i for i, line in enumerate(lines) if '"event": "store-tables"' in line and f'"user": "{name}"' in line)
    assert made > server_up

    proc = run_as_user(server_environment(hub, name), """
        import json, mlflow
        with mlflow.start_run() as run:
            mlflow.log_metric("loss", 0.5)
        print(json.dumps(mlflow.get_run(run.info.run_id).data.metrics))
    """)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == {"loss": 0.5}
