"""Work that runs while the server starts (e.g. merging notebook scripts) stays off the
spawn's critical path, yet the spawn page still shows its messages and a failed server
start does not leave it running.

The spawner's parent and the Workbench are stand-ins here: what is tested is the
mixin's own ordering, which the e2e tests cannot time.
"""

from __future__ import annotations

import asyncio
import logging
from types import SimpleNamespace

import pytest

from enertef_hub import preparation
from enertef_hub.spawnermixin import EnerTEFSpawnerMixin
from enertef_hub.workbench import ProvisionResult, Workbench


class _MlflowStores:
    def __init__(self, timeline, new_store=False):
        self.timeline, self.new_store = timeline, new_store

    async def read(self, result):
        return [SimpleNamespace(schema="u_alice", revision=None if self.new_store else "head")]

    async def ensure(self, result, stores, tables=True, progress=None, actor="spawner"):
        if tables:
            self.timeline.append("tables began")
            await asyncio.sleep(0.2)
            self.timeline.append("tables done")
        return []


class _Workbench:
    prepare = Workbench.prepare  # the real order of the steps, over the stand-ins below

    def __init__(self, timeline, new_store=False):
        self.mlflow = _MlflowStores(timeline, new_store)

    async def provision(self, username, teams, actor):
        resources = SimpleNamespace(schema=f"u_{username}", bucket=f"user-{username}")
        return ProvisionResult(resources, {"MLFLOW_TRACKING_URI": "postgresql://x"}, False, 0.0)


class _BaseSpawner:
    """What JupyterHub's Spawner offers the mixin: start(), an empty progress(), and the
    spawn's state (JupyterHub keeps the spawn pending until the server answers)."""

    http_timeout = 30
    start_timeout = 60

    def __init__(self, timeline, fail=False):
        self.timeline, self.fail = timeline, fail
        self.pending, self.ready = "spawn", False

    async def start(self):
        self.timeline.append("server started")
        if self.fail:
            raise RuntimeError("server would not start")
        return ("127.0.0.1", 1)

    def server_answers(self):
        """What JupyterHub does once the started server answers its poll."""
        self.timeline.append("server up")
        self.pending, self.ready = None, True

    def spawn_fails(self):
        """What JupyterHub does when the server never answers: it stops it."""
        self.pending, self.ready = None, False

    async def progress(self):
        return
        yield


class _Spawner(EnerTEFSpawnerMixin, _BaseSpawner):
    log = logging.getLogger("test")
    user = SimpleNamespace(name="alice", groups=[])
    authenticator = None

    def __init__(self, timeline, fail=False, seed_seconds=0.2, new_store=False):
        super().__init__(timeline, fail)
        self.seed_seconds = seed_seconds
        self._workbench = _Workbench(timeline, new_store)

    @property
    def workbench(self):
        return self._workbench

    async def prepare_home(self, result):
        self.run_alongside_server(self._seed())

    async def _seed(self):
        self.timeline.append("seeding began")
        await asyncio.sleep(self.seed_seconds)
        self._enertef_progress(45, "Notebook scripts: skipped 1 file(s)")
        self.timeline.append("seeding done")


async def _follow(spawner):
    return [event["message"] async for event in spawner.progress()]


def test_server_starts_before_seeding_ends_and_start_waits_for_it():
    async def main():
        timeline = []
        spawner = _Spawner(timeline)
        follower = asyncio.ensure_future(_follow(spawner))
        started = await spawner.start()
        messages = await asyncio.wait_for(follower, 5)
        return timeline, started, messages

    timeline, started, messages = asyncio.run(main())
    assert started == ("127.0.0.1", 1)
    # Seeding began once the server was launched (starting its subprocess blocks the
    # hub's event loop, which must not delay the launch), and start() returned only after it.
    assert timeline == ["server started", "seeding began", "seeding done"]
    # Its message reached the spawn page, after "Starting your server…".
    assert messages[-2:] == ["Starting your server…", "Notebook scripts: skipped 1 file(s)"]


def test_failed_server_start_cancels_the_work_alongside():
    async def main():
        timeline = []
        spawner = _Spawner(timeline, fail=True, seed_seconds=5)
        follower = asyncio.ensure_future(_follow(spawner))
        with pytest.raises(RuntimeError):
            await spawner.start()
        await asyncio.sleep(0)  # let the cancellation land
        messages = await asyncio.wait_for(follower, 5)  # the stream ends: nothing left to wait for
        return timeline, spawner, messages

    timeline, spawner, messages = asyncio.run(main())
    assert "seeding done" not in timeline
    assert all(task.cancelled() for task in spawner._enertef_alongside)
    assert "Starting your server…" in messages


def test_an_exception_alongside_does_not_fail_the_spawn(caplog):
    class Broken(_Spawner):
        async def _seed(self):
            raise OSError("disk full")

    async def main():
        return await Broken([]).start()

    with caplog.at_level(logging.ERROR, logger="test"):
        assert asyncio.run(main()) == ("127.0.0.1", 1)
    assert "disk full" in caplog.text


def _tables_task():
    return preparation._in_flight.get(("alice", "mlflow-tables"))


def test_a_new_store_gets_its_tables_once_the_server_is_up_not_while_it_starts():
    async def main():
        timeline = []
        spawner = _Spawner(timeline, new_store=True, seed_seconds=0)
        await spawner.start()
        timeline.append("start() returned")
        await asyncio.sleep(0.3)  # the server is still starting: nothing competes with it
        spawner.server_answers()
        await asyncio.wait_for(_tables_task(), 5)
        return timeline

    timeline = asyncio.run(main())
    assert timeline == ["server started", "seeding began", "seeding done", "start() returned",
                        "server up", "tables began", "tables done"]


def test_no_tables_for_a_spawn_that_failed_and_none_for_a_store_that_has_them():
    async def main(new_store, outcome):
        timeline = []
        spawner = _Spawner(timeline, new_store=new_store, seed_seconds=0)
        await spawner.start()
        task = _tables_task()
        outcome(spawner)
        if task is not None:
            await asyncio.wait_for(task, 5)
        return timeline, task

    timeline, _ = asyncio.run(main(True, _BaseSpawner.spawn_fails))
    assert "tables began" not in timeline
    timeline, task = asyncio.run(main(False, _BaseSpawner.server_answers))
    assert task is None and "tables began" not in timeline


def test_revocation_cancels_tables_in_flight():
    async def main():
        timeline = []
        spawner = _Spawner(timeline, new_store=True, seed_seconds=0)
        await spawner.start()
        spawner.server_answers()
        while "tables began" not in timeline:
            await asyncio.sleep(0.01)
        await preparation.stop_preparing("alice")  # what deletion and withdrawal call first
        return timeline

    timeline = asyncio.run(main())
    assert "tables done" not in timeline
    assert _tables_task() is None


def test_tables_wait_while_another_server_of_the_hub_is_starting():
    class Users(dict):
        """JupyterHub's UserDict, as far as the mixin reads it."""
        starting = 1

        def count_active_users(self):
            return {"spawn_pending": self.starting}

    async def main():
        timeline = []
        spawner = _Spawner(timeline, new_store=True, seed_seconds=0)
        users = Users()
        spawner.user = SimpleNamespace(name="alice", groups=[], settings={"users": users})
        await spawner.start()
        spawner.server_answers()
        await asyncio.sleep(0.5)  # another user's server is still starting
        timeline.append("the other server is up")
        users.starting = 0
        await asyncio.wait_for(_tables_task(), 5)
        return timeline

    timeline = asyncio.run(main())
    assert timeline.index("the other server is up") < timeline.index("tables began")


def test_a_spawn_that_failed_before_the_server_start_shows_no_progress_of_the_spawner():
    """KubeSpawner's progress is the pod's events: a spawn that failed in provisioning
    has no pod, and its stream (which JupyterHub cancels when the spawn ends) must not
    show an earlier pod's events or start KubeSpawner's event watch."""
    from enertef_hub.errors import ServiceUnavailableError

    class Outage(_Workbench):
        async def provision(self, username, teams, actor):
            raise ServiceUnavailableError("The object storage (MinIO) is unreachable.")

    class PodEvents(_BaseSpawner):
        async def progress(self):
            self.timeline.append("spawner progress")
            yield {"progress": 90, "message": "[Normal] Started container notebook (an earlier pod)"}

    class Spawner(_Spawner, PodEvents):  # the mixin's super().progress() is PodEvents'
        pass

    async def main():
        timeline = []
        spawner = Spawner(timeline)
        spawner._workbench = Outage(timeline)
        follower = asyncio.ensure_future(_follow(spawner))
        with pytest.raises(ServiceUnavailableError):
            await spawner.start()
        messages = await asyncio.wait_for(follower, 5)
        # The next spawn reaches the server start: the spawner's progress is shown again.
        spawner._workbench = _Workbench(timeline)
        follower = asyncio.ensure_future(_follow(spawner))
        await spawner.start()
        return timeline, messages, await asyncio.wait_for(follower, 5)

    timeline, failed, started = asyncio.run(main())
    assert failed == ["Preparing your MLflow store and object storage…",
                      "Could not prepare your workbench: The object storage (MinIO) is unreachable."]
    assert timeline.count("spawner progress") == 1
    assert "[Normal] Started container notebook (an earlier pod)" in started
