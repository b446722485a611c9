"""Log training curves to your TensorBoard with no setup.

    from tensorboard_logger import TensorBoardLogger

    tb = TensorBoardLogger()              # a new run folder, named after the time
    for step in range(100):
        tb.scalar("loss", loss, step)
    tb.histogram("weights", weights, step)
    tb.hparams({"learning_rate": 0.01, "layers": 3}, {"loss": final_loss})
    tb.close()

Open TensorBoard from the JupyterLab launcher: it shows every run in your log folder,
``$ENERTEF_TENSORBOARD_LOGDIR`` (default ``~/tensorboard-logs``), one sub-folder per
run. Delete a run's folder to remove it from TensorBoard.

Only the ``tensorboard`` package is needed (no TensorFlow, no PyTorch): the event files
are written with TensorBoard's own writer, as PyTorch's ``SummaryWriter`` does.
"""

from __future__ import annotations

import os
import re
import time
from datetime import datetime
from pathlib import Path

__all__ = ["TensorBoardLogger", "default_logdir"]


def default_logdir() -> Path:
    """Your TensorBoard log folder: ``$ENERTEF_TENSORBOARD_LOGDIR`` or ``~/tensorboard-logs``."""
    configured = os.environ.get("ENERTEF_TENSORBOARD_LOGDIR")
    return Path(configured).expanduser() if configured else Path.home() / "tensorboard-logs"


class TensorBoardLogger:
    """Write scalars, histograms and hyper-parameters of one run for TensorBoard.

    Args:
        run_name: folder name of this run inside the log folder; default: the current
            date and time (``2024-05-01_14-03-22``). Letters, digits, ``-``, ``_`` and
            ``.`` are kept, anything else becomes ``_``.
        logdir: the log folder TensorBoard reads (default: :func:`default_logdir`).
    """

    def __init__(self, run_name: str | None = None, logdir: str | os.PathLike | None = None):
        from tensorboard.summary.writer.event_file_writer import EventFileWriter

        if run_name is None:
            run_name = datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
        safe_name = re.sub(r"[^A-Za-z0-9._-]", "_", run_name).strip(".") or "run"
        self.run_name = safe_name
        self.run_dir = Path(logdir).expanduser() if logdir else default_logdir()
        self.run_dir = self.run_dir / safe_name
        self.run_dir.mkdir(parents=True, exist_ok=True)
        # Flush every few seconds so curves show up while a notebook cell still runs.
        self._writer = EventFileWriter(str(self.run_dir), flush_secs=5)

    # -- what you log -------------------------------------------------------------
    def scalar(self, tag: str, value: float, step: int) -> None:
        """One point of the curve *tag* (e.g. ``"loss"`` or ``"accuracy/val"``)."""
        from tensorboard.compat.proto.summary_pb2 import Summary

        self._write(Summary(value=[Summary.Value(tag=tag, simple_value=float(value))]), step)

    def scalars(self, values: dict[str, float], step: int) -> None:
        """Several curves at once: ``tb.scalars({"loss": 0.3, "acc": 0.9}, step)``."""
        for tag, value in values.items():
            self.scalar(tag, value, step)

    def histogram(self, tag: str, values, step: int, bins: int = 30) -> None:
        """Distribution of *values* (any array-like of numbers) at *step*."""
        import numpy as np
        from tensorboard.compat.proto.summary_pb2 import HistogramProto, Summary

        data = np.asarray(values, dtype=float).ravel()
        data = data[np.isfinite(data)]
        if data.size == 0:
            return
        counts, edges = np.histogram(data, bins=bins)
        histo = HistogramProto(
            min=float(data.min()),
            max=float(data.max()),
            num=float(data.size),
            sum=float(data.sum()),
            sum_squares=float(np.dot(data, data)),
            bucket_limit=[float(e) for e in edges[1:]],
            bucket=[float(c) for c in counts],
        )
        self._write(Summary(value=[Summary.Value(tag=tag, histo=histo)]), step)

    def hparams(self, hparams: dict, metrics: dict[str, float] | None = None) -> None:
        """Record this run's hyper-parameters (HPARAMS tab) and, optionally, final metrics.

        Values may be numbers, strings or booleans. Metrics are logged as scalars so the
        HPARAMS tab can show them next to the parameters.
        """
        from tensorboard.plugins.hparams import summary_v2

        clean = {str(k): (v if isinstance(v, (bool, int, float, str)) else str(v)) for k, v in hparams.items()}
        self._write(summary_v2.hparams_pb(clean, trial_id=self.run_name), 0)
        for tag, value in (metrics or {}).items():
            self.scalar(tag, value, 0)

    # -- housekeeping -------------------------------------------------------------
    def flush(self) -> None:
        """Make everything logged so far visible to TensorBoard now."""
        self._writer.flush()

    def close(self) -> None:
        """Flush and close the event file; the logger cannot be used afterwards."""
        self._writer.close()

    def __enter__(self) -> "TensorBoardLogger":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _write(self, summary, step: int) -> None:
        from tensorboard.compat.proto.event_pb2 import Event

        self._writer.add_event(Event(wall_time=time.time(), step=int(step), summary=summary))

    def __repr__(self) -> str:
        return f"TensorBoardLogger(run_dir={str(self.run_dir)!r})"
