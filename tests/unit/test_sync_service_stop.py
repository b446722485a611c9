"""The team-sync hub service stops at once on SIGINT/SIGTERM, so stopping the hub does not wait for it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_sync_loop_ends_promptly_on_the_hubs_stop_signal(signum, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ENERTEF_", "JUPYTERHUB_"))}
    # Nothing answers here: the loop reports the failure and waits for its next round.
    env.update(ENERTEF_POSTGRES_ADMIN_URL="postgresql://nobody:x@127.0.0.1:9/none",
               ENERTEF_MINIO_ENDPOINT="http://127.0.0.1:9", ENERTEF_SECRET_KEY="k" * 40)
    log = tmp_path / "sync.log"
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "enertef_hub.cli", "sync", "--loop", "600"],
                                stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.monotonic() + 60
        while "retrying in 600" not in log.read_text():  # in its wait between rounds
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        sent = time.monotonic()
        proc.send_signal(signum)
        assert proc.wait(timeout=20) == 0
        assert time.monotonic() - sent < 3, "the hub would wait for its stop timeouts"
        assert "team sync stopped" in log.read_text()
    finally:
        proc.kill()
        proc.wait()
