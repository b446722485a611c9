"""Runs carry the hub username, not the server's OS account ("jovyan" for everyone on Kubernetes)."""

from __future__ import annotations

import json

from tests.harness.names import unique_name
from tests.harness.services import run_as_user

START_RUNS = """
    import json, mlflow
    mlflow.set_experiment("attribution")
    with mlflow.start_run() as plain:
        pass
    with mlflow.start_run(tags={"mlflow.user": "ci-bot"}) as chosen:
        pass
    runs = {r.info.run_id: r for r in (mlflow.get_run(plain.info.run_id), mlflow.get_run(chosen.info.run_id))}
    print(json.dumps([[runs[i].info.user_id, runs[i].data.tags["mlflow.user"]]
                      for i in (plain.info.run_id, chosen.info.run_id)]))
"""


async def test_a_run_says_which_hub_user_made_it(workbench):
    result = await workbench.provision(unique_name("attrib"), teams=[])
    await workbench.mlflow.ensure(result)
    env = dict(result.environment, JUPYTERHUB_USER=result.resources.username, LOGNAME="jovyan", USER="jovyan")
    proc = run_as_user(env, START_RUNS)
    assert proc.returncode == 0, proc.stderr[-3000:]
    plain, chosen = json.loads(proc.stdout.strip().splitlines()[-1])
    assert plain == [result.resources.username, result.resources.username]
    assert chosen[1] == "ci-bot"  # an explicit choice is kept
