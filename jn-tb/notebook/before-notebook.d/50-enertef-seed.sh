#!/bin/bash
# Sourced by docker-stacks' start.sh before the server starts (as the notebook user,
# home volume mounted). Merges the image's notebook scripts into $HOME; files the
# user changed are left alone (see enertef_hub.provisioners.seeding).
#
# This file is sourced, not executed: no `exit` and no `set -e`, or a failure here
# would stop the user's server instead of starting it without the scripts.
if [ -d /opt/enertef/notebook-scripts ]; then
    if ! python -m enertef_hub.provisioners.seeding \
            --source /opt/enertef/notebook-scripts --home "${HOME}"; then
        echo "enertef: WARNING: could not copy the notebook scripts into ${HOME}; the server starts without them (see the messages above)." >&2
    fi
fi
