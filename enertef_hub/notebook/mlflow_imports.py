"""What the MLflow UI process leaves out of MLflow's import, to halve its memory.

``import mlflow.server`` loads nearly all of MLflow: ~1,700 modules and ~230 MB, of
which pandas, pyarrow, numpy and scipy are ~80 MB (measured with MLflow 3.17.2). The
UI's handlers never use them: they read the store through SQLAlchemy and answer in
protobuf JSON. MLflow itself is written to import without them (``mlflow-skinny``
has none): every module-level import of these libraries sits in a ``try``/``except
ImportError`` (``mlflow.types``, ``mlflow.data.dataset_registry``,
``mlflow.models``...), and the functions that need one import it when called.

So, while the UI process imports MLflow, :class:`ImportPolicy` answers "not installed"
for :data:`OPTIONAL_AT_IMPORT`, and MLflow loads as it would without them. Once MLflow
is loaded the policy is lifted (:meth:`ImportPolicy.lift`): a handler that does need
pandas (none of the UI's do today) imports it then, at that moment's cost.

:data:`NEVER_SERVED` stays refused for the life of the process: MLflow's basic-auth
app, which the hub replaces (only the server's owner reaches the UI). MLflow's
handlers look for it on every run search and treat its absence as "auth not
installed" (``mlflow.server.handlers.search_runs_impl``); importing it would load the
FastAPI server, the assistant and aiohttp (~12 MB) for nothing.
"""

from __future__ import annotations

import importlib.abc
import sys

#: Libraries MLflow imports only optionally; refused while MLflow itself is imported.
#: (pygments: mako's optional syntax highlighter, loaded by alembic.)
OPTIONAL_AT_IMPORT = ("pandas", "pyarrow", "scipy", "numpy", "pygments")

#: Modules refused for good: MLflow's own basic-auth app (the hub authenticates).
NEVER_SERVED = ("mlflow.server.auth",)


def is_refused(name: str, refused: tuple[str, ...]) -> bool:
    """Whether module *name* is one of *refused* or inside one of those packages (pure)."""
    return any(name == r or name.startswith(r + ".") for r in refused)


class ImportPolicy(importlib.abc.MetaPathFinder):
    """A meta-path finder that makes refused modules look not installed."""

    def __init__(self, optional=OPTIONAL_AT_IMPORT, never=NEVER_SERVED):
        self.optional = tuple(optional)
        self.never = tuple(never)

    def find_spec(self, name, path=None, target=None):
        if is_refused(name, self.never + self.optional):
            # The message names us, so a traceback that reaches a log says why.
            raise ModuleNotFoundError(f"No module named {name!r} (left out of the MLflow UI process)", name=name)
        return None  # let the next finder import it as usual

    def install(self) -> ImportPolicy:
        """Put the policy first on ``sys.meta_path`` (once); returns self."""
        if self not in sys.meta_path:
            sys.meta_path.insert(0, self)
        return self

    def lift(self) -> None:
        """Allow :data:`OPTIONAL_AT_IMPORT` again (MLflow is loaded); :data:`NEVER_SERVED` stays refused."""
        self.optional = ()
