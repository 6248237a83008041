"""TensorBoard event files for a run (``tensorboard --logdir OUT/tensorboard``), written by the main process."""

from __future__ import annotations

import math
from pathlib import Path


class TensorBoard:
    """Scalars by name and step; ``None`` and non-finite values are left out. Disabled: every call is a no-op
    (the other processes of a distributed run, or ``tensorboard: false``)."""

    def __init__(self, directory: str | Path, enabled: bool = True) -> None:
        self.writer = None
        if enabled:
            from torch.utils.tensorboard import SummaryWriter  # imports tensorboard: only where it is used

            self.writer = SummaryWriter(log_dir=str(directory))

    def add(self, step: int, scalars: dict[str, float | None]) -> None:
        if self.writer is None:
            return
        for name, value in scalars.items():
            if value is not None and math.isfinite(float(value)):
                self.writer.add_scalar(name, float(value), step)
        self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None
