"""Speaker similarity without a downloaded speaker model: utterance statistics of MFCCs projected by LDA.

A classical speaker-verification front end (the i-vector era's "LDA on utterance statistics"): each utterance
becomes the mean and standard deviation of its 20 MFCCs and their deltas over frames with speech energy; a
``scikit-learn`` standardizer + linear discriminant analysis is fitted on labelled utterances of *training*
speakers, and two utterances score the cosine of their centred projections (1: same direction). Scored speakers
need not be among the fitted ones (the test split's speakers are held out). The scorer's own reference points,
same-speaker and different-speaker similarity on real (not generated) test audio, are given by
:meth:`SpeakerSimilarity.reference_scores` so that a generated sample's score can be read against them.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from itertools import combinations

import numpy as np
import torch
from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from codec.features import mfcc

log = logging.getLogger(__name__)

N_MFCC = 20
SILENT_FRACTION = 0.3  # the quietest 30% of frames (by c0, the log energy) are left out as pauses


def utterance_stats(wav: np.ndarray | torch.Tensor, sample_rate: int = 16000) -> np.ndarray:
    """``[4 * N_MFCC]`` mean and std of MFCCs + deltas over the frames with speech energy of a ``[T]`` waveform."""
    feats = mfcc(torch.as_tensor(np.asarray(wav, dtype=np.float32)), sample_rate, n_mfcc=N_MFCC, deltas=True)
    feats = feats[: 2 * N_MFCC].numpy().T  # [F, 2 * N_MFCC]: statics and deltas
    if feats.shape[0] < 3:
        raise ValueError(f"audio too short for a speaker embedding ({feats.shape[0]} frames)")
    voiced = feats[feats[:, 0] >= np.quantile(feats[:, 0], SILENT_FRACTION)]
    return np.concatenate([voiced.mean(0), voiced.std(0)]).astype(np.float64)


class SpeakerSimilarity:
    """Fit on ``(waveform, speaker)`` pairs, then :meth:`score` two waveforms (cosine in [-1, 1])."""

    def __init__(self, sample_rate: int = 16000) -> None:
        self.sample_rate = sample_rate
        self._model = None
        self._center: np.ndarray | None = None

    def fit(self, wavs: Sequence[np.ndarray], speakers: Sequence[str]) -> SpeakerSimilarity:
        """Learn the projection from labelled utterances (at least 2 speakers, one of them with 2 utterances)."""
        if len(wavs) != len(speakers):
            raise ValueError(f"{len(wavs)} waveforms but {len(speakers)} speaker labels")
        counts = {s: list(speakers).count(s) for s in set(speakers)}
        if len(counts) < 2 or max(counts.values()) < 2:
            raise ValueError(f"need >= 2 speakers and some speaker with >= 2 utterances, got {counts}")
        x = np.stack([utterance_stats(w, self.sample_rate) for w in wavs])
        n = min(len(counts) - 1, x.shape[1])
        self._model = make_pipeline(StandardScaler(), LinearDiscriminantAnalysis(n_components=n))
        z = self._model.fit_transform(x, list(speakers))
        self._center = z.mean(0)
        log.info("speaker similarity: LDA to %d dims on %d utterances of %d speakers", n, len(wavs), len(counts))
        return self

    def embed(self, wav: np.ndarray | torch.Tensor) -> np.ndarray:
        """Unit-length ``[D]`` embedding of a ``[T]`` waveform."""
        if self._model is None:
            raise RuntimeError("call fit() first")
        z = self._model.transform(utterance_stats(wav, self.sample_rate)[None])[0] - self._center
        return z / max(float(np.linalg.norm(z)), 1e-9)

    def score(self, a: np.ndarray | torch.Tensor, b: np.ndarray | torch.Tensor) -> float:
        """Cosine similarity of two waveforms' embeddings."""
        return float(self.embed(a) @ self.embed(b))

    def reference_scores(self, wavs: Sequence[np.ndarray], speakers: Sequence[str],
                         max_pairs: int = 2000, seed: int = 0) -> dict[str, float]:
        """Mean similarity of real same-speaker and different-speaker pairs, and the equal error rate of
        telling them apart by a threshold (what a generated sample's similarity is read against)."""
        emb = [self.embed(w) for w in wavs]
        pairs = list(combinations(range(len(wavs)), 2))
        rng = np.random.default_rng(seed)
        if len(pairs) > max_pairs:
            pairs = [pairs[i] for i in rng.choice(len(pairs), max_pairs, replace=False)]
        same = [float(emb[i] @ emb[j]) for i, j in pairs if speakers[i] == speakers[j]]
        diff = [float(emb[i] @ emb[j]) for i, j in pairs if speakers[i] != speakers[j]]
        if not same or not diff:
            raise ValueError("need both same-speaker and different-speaker pairs")
        return {"same_speaker": float(np.mean(same)), "different_speaker": float(np.mean(diff)),
                "eer": equal_error_rate(same, diff)}


def equal_error_rate(target: Sequence[float], nontarget: Sequence[float]) -> float:
    """EER of scores where ``target`` should be high and ``nontarget`` low (ROC from scikit-learn)."""
    from sklearn.metrics import roc_curve

    y = np.r_[np.ones(len(target)), np.zeros(len(nontarget))]
    fpr, tpr, _ = roc_curve(y, np.r_[target, nontarget])
    fnr = 1 - tpr
    i = int(np.nanargmin(np.abs(fnr - fpr)))
    return float((fpr[i] + fnr[i]) / 2)
