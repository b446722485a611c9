"""A cancelled spawn-page stream never leaves KubeSpawner's shared event watch half-started.

KubeSpawner keeps one pod and one event reflector per hub process; every start, stop
and poll waits for its first list of the cluster. Seen in tests/e2e/test_kube_journey.py
(storage outage): on a fresh hub, a spawn failing on a MinIO outage had its spawn
page's progress stream start the event reflector; JupyterHub cancelled the stream when
the spawn ended, during that first list, and every later spawn hung for good.

KubeSpawner's own reflector start runs here (EnerTEFKubeSpawner, with KubeSpawner's
test mode for the user and hub); only the cluster is replaced: its event list answers
after a delay, as a real API server does, and nothing is watched afterwards.
"""

from __future__ import annotations

import asyncio
import json

import pytest
from kubespawner.spawner import EventReflector

from enertef_hub.kubespawner import EnerTEFKubeSpawner

LIST_SECONDS = 0.3


class _Response:
    ok, status, reason = True, 200, "OK"

    async def read(self):
        return json.dumps({"metadata": {"resourceVersion": "1"}, "items": []}).encode()


class _SlowCluster:
    def __init__(self):
        self.lists = 0

    async def list_namespaced_event(self, **kwargs):
        self.lists += 1
        await asyncio.sleep(LIST_SECONDS)
        return _Response()


class _Reflector(EventReflector):
    """KubeSpawner's event reflector on the slow cluster (its start() and first list are its own)."""

    cluster = None

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.api = self.cluster

    async def _watch_and_update(self):
        await asyncio.Event().wait()  # the watch that follows: nothing happens here


@pytest.fixture(autouse=True)
def _no_cluster_config(monkeypatch):
    # No cluster in this tier: KubeSpawner's reading of the cluster's address and
    # credentials is left out (the reflectors here talk to _SlowCluster).
    monkeypatch.setattr("kubespawner.spawner.load_config", lambda **kwargs: None)
    yield
    EnerTEFKubeSpawner.reflectors.clear()  # KubeSpawner's, class-wide: none left for other tests


def _spawner() -> EnerTEFKubeSpawner:
    EnerTEFKubeSpawner.reflectors.clear()  # one set per hub process (class-wide)
    return EnerTEFKubeSpawner(_mock=True, namespace="enertef")


async def _start_events(spawner):
    return await spawner._start_reflector(kind="events", reflector_class=_Reflector,
                                          fields={"involvedObject.kind": "Pod"})


def test_a_cancelled_first_caller_does_not_leave_the_reflector_unloaded():
    async def main():
        _Reflector.cluster = cluster = _SlowCluster()
        spawner = _spawner()
        # The spawn page's stream starts the event watch, then the spawn fails and
        # JupyterHub cancels the stream while the first list is under way.
        stream = asyncio.ensure_future(_start_events(spawner))
        await asyncio.sleep(LIST_SECONDS / 3)
        assert cluster.lists == 1
        stream.cancel()
        await asyncio.gather(stream, return_exceptions=True)
        # The next spawn (any user's) gets the loaded reflector, it does not wait forever.
        reflector = await asyncio.wait_for(_start_events(_spawner_again(spawner)), 5)
        return reflector, cluster

    reflector, cluster = asyncio.run(main())
    assert reflector.first_load_future.done() and not reflector.first_load_future.cancelled()
    assert cluster.lists == 1  # the same reflector, loaded once


def test_a_cancelled_waiter_does_not_cancel_the_first_load_for_the_others():
    async def main():
        _Reflector.cluster = _SlowCluster()
        spawner = _spawner()
        starting = asyncio.ensure_future(_start_events(spawner))  # a spawn's start
        await asyncio.sleep(0)
        waiter = asyncio.ensure_future(_start_events(spawner))  # a stream waiting for the same list
        await asyncio.sleep(LIST_SECONDS / 3)
        waiter.cancel()
        await asyncio.gather(waiter, return_exceptions=True)
        return await asyncio.wait_for(starting, 5)

    reflector = asyncio.run(main())
    assert reflector.first_load_future.done() and not reflector.first_load_future.cancelled()


def _spawner_again(spawner: EnerTEFKubeSpawner) -> EnerTEFKubeSpawner:
    """Another spawner of the same hub process (the reflectors are shared, not re-made)."""
    return EnerTEFKubeSpawner(_mock=True, namespace=spawner.namespace)
