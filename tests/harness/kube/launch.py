"""Container start, run inside a fresh mount and PID namespace (``unshare``).

``python launch.py SPEC.json``: bind-mounts each volume at its mountPath (the
namespace is private, so nothing shows outside), changes to the working directory,
drops to the pod's user and groups, and execs the container's command with exactly
the environment in the spec. Mount points that do not exist on the machine are
created empty first (a mount needs a place to land).
"""

import json
import os
import subprocess
import sys


def main(spec_path: str) -> None:
    with open(spec_path) as f:
        spec = json.load(f)
    for source, target, read_only in spec["mounts"]:
        if os.path.isdir(source):
            os.makedirs(target, exist_ok=True)
        else:
            os.makedirs(os.path.dirname(target), exist_ok=True)
            if not os.path.exists(target):
                open(target, "a").close()
        subprocess.run(["mount", "--bind", source, target], check=True)
        if read_only:
            subprocess.run(["mount", "-o", "remount,bind,ro", target], check=True)
    os.chdir(spec["workdir"])
    os.setgroups(spec["groups"])
    os.setgid(spec["gid"])
    os.setuid(spec["uid"])
    os.execvpe(spec["argv"][0], spec["argv"], spec["env"])


if __name__ == "__main__":
    main(sys.argv[1])
