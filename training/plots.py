"""One way to draw a PNG: :func:`png_figure` (headless matplotlib, atomic write, the figure always closed)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


@contextmanager
def png_figure(path: str | os.PathLike, nrows: int = 1, ncols: int = 1, figsize: tuple[float, float] = (11, 4),
               dpi: int = 80, **subplots: Any) -> Iterator[tuple[Any, Any]]:
    """``with png_figure(path, 1, 2) as (fig, ax): ...`` draws on ``plt.subplots(nrows, ncols)``'s axes, then lays the
    figure out and writes it to ``path`` (via a temporary file and a rename, so a reader never sees half a PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(nrows, ncols, figsize=figsize, **subplots)
    try:
        yield fig, ax
        fig.tight_layout()
        path = Path(path)
        tmp = path.with_name(f".{path.stem}.tmp{os.getpid()}.png")
        fig.savefig(tmp, dpi=dpi)
        os.replace(tmp, path)
    finally:
        plt.close(fig)
