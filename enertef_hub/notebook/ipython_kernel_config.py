"""IPython kernel configuration that enertef-hub installs for every kernel of its environment.

pip puts a copy in ``{sys.prefix}/etc/ipython/`` (``[options.data_files]`` in setup.cfg),
one of the folders IPython reads configuration from before the user's own profile
(``~/.ipython/profile_default/``), so every notebook kernel of the server runs it as it
starts, wherever the notebook is.

It puts the user's seeded ``~/notebook-scripts`` at the END of ``sys.path``, so that
``import mlflow_group_utils`` and ``import tensorboard_logger`` work from any notebook
and load the copy in the user's home (with the user's edits, if any: there is no
other copy). Last, so a file there never stands in for an installed package or the
standard library; a notebook's own folder still comes first, as Python always puts it.

Plain code rather than a setting (``exec_lines``, ``extensions``): a user's own
configuration that sets those would replace ours, and this must hold whatever the
user configures.
"""

import os as _os
import sys as _sys

_scripts = _os.path.join(_os.path.expanduser("~"), "notebook-scripts")
if _scripts not in _sys.path:
    _sys.path.append(_scripts)
del _os, _sys, _scripts
