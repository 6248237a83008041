"""Draw an attention alignment (output steps against encoder frames) as a PNG.

Shared by the attention-based baselines: LAS (characters against listener frames), Tacotron 2 (mel frames
against text tokens) and Translatotron. Rendering is headless: the figure is drawn on matplotlib's Agg canvas
directly, without pyplot, so importing this module changes no global matplotlib state and leaks no figures.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

DPI = 100
MIN_INCHES, MAX_INCHES = 3.0, 16.0  # figure side limits; in between, the size follows the matrix shape
CELLS_PER_INCH = 25  # alignment cells per inch of figure before the limits apply


def _as_matrix(weights: Any) -> np.ndarray:
    if hasattr(weights, "detach"):  # a torch tensor, without importing torch here
        weights = weights.detach().float().cpu().numpy()
    matrix = np.asarray(weights, dtype=np.float32)
    if matrix.ndim != 2 or 0 in matrix.shape:
        raise ValueError(f"weights must be a non-empty [U, T] matrix, got shape {list(matrix.shape)}")
    if not np.isfinite(matrix).all():
        raise ValueError("weights contain NaN or infinite values")
    return matrix


def plot_alignment(
    weights: Any,
    path: str | os.PathLike,
    title: str | None = None,
    xlabel: str = "encoder frame",
    ylabel: str = "output step",
    dpi: int = DPI,
) -> Path:
    """Write a heat map of ``weights`` to ``path`` as a PNG (atomically: temporary file, then rename).

    Args:
        weights: ``[U, T]`` attention weights (torch tensor or array-like); row ``u`` is output step ``u``.
        path: the PNG to write; its directory is created if missing.
        title: optional figure title.
        xlabel: label of the encoder axis (columns).
        ylabel: label of the output axis (rows).
        dpi: resolution.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        ValueError: ``weights`` is not a finite, non-empty 2-D matrix.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    matrix = _as_matrix(weights)
    rows, cols = matrix.shape
    width = min(MAX_INCHES, max(MIN_INCHES, cols / CELLS_PER_INCH + 1.5))
    height = min(MAX_INCHES, max(MIN_INCHES, rows / CELLS_PER_INCH + 1.0))
    fig = Figure(figsize=(width, height), dpi=dpi)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    image = ax.imshow(matrix, aspect="auto", origin="lower", interpolation="nearest", cmap="viridis")
    fig.colorbar(image, ax=ax)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    fig.tight_layout()

    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.stem}.{os.getpid()}.tmp.png")
    try:
        fig.savefig(tmp, format="png", dpi=dpi)
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            tmp.unlink()
    logger.debug("wrote a %dx%d alignment plot to %s", rows, cols, out)
    return out
