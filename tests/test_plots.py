"""PNG writing: complete files or none, and each trainer's curve plot from a small history."""

from __future__ import annotations

from pathlib import Path

import pytest

from training.plots import png_figure

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_png_figure_writes_whole_files_or_none(tmp_path: Path) -> None:
    import matplotlib.pyplot as plt

    path = tmp_path / "a.png"
    with png_figure(path, 1, 2) as (fig, ax):
        ax[0].plot([0, 1], [1, 0])
    assert path.read_bytes()[:8] == PNG_MAGIC
    with pytest.raises(RuntimeError), png_figure(tmp_path / "b.png") as (fig, ax):
        raise RuntimeError("drawing failed")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png"]  # no partial file, no temp file left
    assert not plt.get_fignums()  # every figure closed


def test_trainer_curve_plots(tmp_path: Path) -> None:
    from training import train_alm, train_codec, train_units

    train_alm.plot_history([{"step": 1, "loss": 3.0}, {"step": 2, "loss": 2.0, "valid_loss": 2.5,
                                                        "valid_loss/asr": 2.4}], tmp_path / "alm.png")
    train_codec.plot_history([{"step": 1, "loss": 1.0}, {"step": 2, "mel_k1": 1.0, "mel_k8": 0.5}],
                             tmp_path / "codec.png")
    train_units.plot_history([{"step": 1, "loss": 4.0, "acc_masked": 0.1, "acc_unmasked": 0.2}], tmp_path / "u.png")
    for name in ("alm.png", "codec.png", "u.png"):
        assert (tmp_path / name).read_bytes()[:8] == PNG_MAGIC
