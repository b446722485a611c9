"""jupyterhub-idle-culler as a hub service that ends the moment the hub stops it.

The hub stops a managed service with SIGINT and then waits
``LocalProcessSpawner.interrupt_timeout`` (30 s) before it sends SIGTERM. The culler
does not always end on SIGINT: it inherits SIGINT ignored from a hub started in the
background (a script's ``&``, some supervisors), and even with Python's handler a
KeyboardInterrupt can land in a callback that swallows it. Measured on the
single-machine workbench: stopping the hub took 35 s, 31 of them waiting for the
culler. It keeps no state worth a graceful stop (each cull is one hub API call,
repeated next round), so SIGINT and SIGTERM end it at once, by the kernel.
"""

from __future__ import annotations

import signal
import sys


def main(argv: list[str] | None = None) -> None:
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, signal.SIG_DFL)
    from jupyterhub_idle_culler import main as culler_main

    sys.argv = ["jupyterhub-idle-culler", *(sys.argv[1:] if argv is None else argv)]
    culler_main()


if __name__ == "__main__":
    main()
