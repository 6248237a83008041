"""Symbol durations for FastSpeech 2 from a trained CTC model: Viterbi forced alignment of the known transcript.

The CTC baseline (:mod:`legacy_seq2seq.ctc`) gives per-frame label log-probabilities at a quarter of the log-mel's
frame rate. Forcing its path through the utterance's own characters (blank, c1, blank, c2, ..., blank; a label may
repeat over frames, a blank between two equal labels is required) gives each character a run of frames; blank
frames between two characters are split at their midpoint, leading ones go to the first character and trailing
ones to the last. The boundaries are then scaled to log-mel frames, so the durations sum to the utterance's frame
count exactly. :func:`unit_durations` does the same with the ALM's ``"phone"`` recognizer
(``codec/pretrained/units/phone``) over espeak-ng phones, for phoneme TTS models.

Written here because the maintained implementation (``torchaudio.functional.forced_align``) cannot be installed on
these machines (NOTES-deps.md: torchaudio); the recursion is the standard CTC Viterbi trellis, tested against
brute-force enumeration of every path on tiny inputs.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import torch

from codec.units import UnitTokenizer
from legacy_seq2seq.ctc import CTCModel
from legacy_seq2seq.text import BLANK_ID

_NEG = -1e30


class UnalignableError(ValueError):
    """The transcript has more characters (plus adjacent repeats) than the model has frames: no CTC path fits."""


def ctc_forced_align(log_probs: np.ndarray, labels: list[int], blank: int = BLANK_ID) -> np.ndarray:
    """The most probable CTC path of ``labels`` through ``log_probs``.

    Args:
        log_probs: ``[T, V]`` per-frame log-probabilities.
        labels: ``L`` label ids (not the blank), in order.
        blank: the blank id.

    Returns:
        ``[T]`` int64: for each frame the index (0 .. L-1) of the label it emits, or -1 for a blank frame.

    Raises:
        UnalignableError: no path fits (``T`` < ``L`` plus the number of adjacent repeats).
        ValueError: ``labels`` is empty or holds the blank.
    """
    lp = np.asarray(log_probs, dtype=np.float64)
    n_frames, n_labels = lp.shape[0], len(labels)
    if n_labels == 0 or blank in labels:
        raise ValueError("labels must be a non-empty sequence without the blank")
    repeats = sum(a == b for a, b in zip(labels, labels[1:], strict=False))
    if n_frames < n_labels + repeats:
        raise UnalignableError(f"{n_frames} frames cannot carry {n_labels} labels ({repeats} adjacent repeats)")
    ext = np.full(2 * n_labels + 1, blank, dtype=np.int64)  # blank, l1, blank, l2, ..., blank
    ext[1::2] = labels
    n_states = len(ext)
    # state s may come from s - 2 when it is a label different from the label two states back
    skip = np.zeros(n_states, dtype=bool)
    skip[3::2] = ext[3::2] != ext[1:-2:2]
    emit = lp[:, ext]  # [T, S]
    score = np.full(n_states, _NEG)
    score[:2] = emit[0, :2]
    back = np.zeros((n_frames, n_states), dtype=np.int8)  # 0: stay, 1: from s-1, 2: from s-2
    for t in range(1, n_frames):
        prev1 = np.concatenate([[_NEG], score[:-1]])
        prev2 = np.where(skip, np.concatenate([[_NEG, _NEG], score[:-2]]), _NEG)
        cand = np.stack([score, prev1, prev2])
        back[t] = cand.argmax(0)
        score = cand.max(0) + emit[t]
    state = n_states - 1 if score[-1] >= score[-2] else n_states - 2
    path = np.empty(n_frames, dtype=np.int64)
    for t in range(n_frames - 1, -1, -1):
        path[t] = state
        state -= int(back[t, state])
    return np.where(path % 2 == 1, path // 2, -1)


def durations_from_path(path: np.ndarray, n_labels: int, n_out_frames: int) -> np.ndarray:
    """Per-label durations in ``n_out_frames`` frames from a forced path over ``len(path)`` (coarser) frames.

    Each label owns its run of frames; the blanks between two labels are split at their midpoint (the first label
    takes the leading blanks, the last the trailing ones); boundaries are scaled by ``n_out_frames / len(path)``
    and rounded, so the result sums to ``n_out_frames``.

    Returns:
        ``[n_labels]`` int64 (a label may get 0 frames when the scaled boundaries coincide).
    """
    n_frames = len(path)
    first = np.array([np.flatnonzero(path == i)[0] for i in range(n_labels)])
    last = np.array([np.flatnonzero(path == i)[-1] for i in range(n_labels)])
    starts = np.concatenate([[0.0], (last[:-1] + 1 + first[1:]) / 2, [n_frames]])  # label i: [starts[i], starts[i+1])
    bounds = np.rint(starts * n_out_frames / n_frames).astype(np.int64)
    bounds[-1] = n_out_frames
    return np.diff(np.maximum.accumulate(bounds))


@torch.no_grad()
def ctc_durations(model: CTCModel, text_ids: list[int], mel: np.ndarray) -> np.ndarray:
    """Mel frames per symbol of one utterance from ``model``'s forced alignment of ``text_ids``.

    Args:
        model: a trained CTC model over the same character vocabulary (eval mode).
        text_ids: the utterance's symbol ids.
        mel: its log-mel ``[F, n_mels]``.

    Returns:
        ``[L]`` int64 durations summing to ``F``.
    """
    device = next(model.parameters()).device
    feats = torch.tensor(np.array(mel, dtype=np.float32), device=device)[None]
    log_probs, lengths = model(feats, torch.tensor([feats.shape[1]], device=device))
    lp = log_probs[0, : int(lengths[0])].float().cpu().numpy()
    path = ctc_forced_align(lp, list(text_ids))
    return durations_from_path(path, len(text_ids), feats.shape[1])


def is_phone_units(directory: str | os.PathLike | None) -> bool:
    """Whether ``directory`` holds a saved ``"phone"`` :class:`codec.units.UnitTokenizer` (a phone recognizer)."""
    if directory is None:
        return False
    path = Path(directory) / "config.json"
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return False
    return isinstance(config, dict) and config.get("tokenizer_class") == "UnitTokenizer" \
        and config.get("kind") == "phone"


@torch.no_grad()
def unit_durations(units: UnitTokenizer, labels: list[int], wav: np.ndarray, n_frames: int) -> np.ndarray:
    """Frames per phone of one utterance from a ``"phone"`` unit tokenizer's forced alignment of ``labels``.

    Args:
        units: a ``"phone"`` :class:`codec.units.UnitTokenizer` (its CTC head: blank 0, ``config.phones``).
        labels: the utterance's phone ids in that inventory (the word separator ``|`` included, as it was trained).
        wav: ``[T]`` float waveform at the tokenizer's 16 kHz.
        n_frames: frames to distribute (the utterance's log-mel length).

    Returns:
        ``[L]`` int64 durations summing to ``n_frames``.

    Raises:
        UnalignableError: more phones than the recognizer's 20 ms frames can carry.
    """
    logits = units.phone_logits(units.features(wav)[0])  # [F, K] at 50 frames/s
    path = ctc_forced_align(logits.log_softmax(-1).float().cpu().numpy(), list(labels))
    return durations_from_path(path, len(labels), n_frames)
