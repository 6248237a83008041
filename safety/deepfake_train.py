"""Training the spoofing countermeasure: :func:`train_detector` (bona fide clips vs generated clips -> a detector).

The loop: every clip is prepared once (trimmed, level-normalized, see :func:`safety.deepfake.prepare`) and turned into
LFCCs; a stratified share of the clips is held out for validation; each step draws a balanced batch (half bona fide,
half generated, whatever the class sizes) of random ``crop_seconds`` crops and takes an AdamW step on the binary
cross-entropy, the learning rate following a cosine from ``lr`` to zero. At the end the validation clips are scored as
:meth:`DeepfakeDetector.detect` scores them, and the equal-error-rate threshold on those scores becomes the
detector's decision threshold.

Seeding: the run is reproducible from ``seed`` (same data, same thread count). It draws from its own numpy generator
and runs inside ``torch.random.fork_rng``, so it neither depends on nor disturbs the caller's random state
(training/seed.py's ``seed_everything`` is the training scripts' helper; ``safety`` does not import ``training``).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from safety.deepfake_model import LCNN, SAMPLE_RATE, DeepfakeConfig

log = logging.getLogger(__name__)

MIN_VALID_PER_CLASS = 2  # fewer validation clips than this per class: no EER threshold (0.5 is kept)


def _features(detector: Any, clips: Sequence[Any], what: str, sample_rate: int | None) -> list[torch.Tensor]:
    from safety.deepfake import prepare

    out = []
    for i, clip in enumerate(clips):
        try:
            wav = prepare(clip, detector.config, sample_rate)
        except ValueError as e:
            raise type(e)(f"{what}[{i}]: {e}") from e
        out.append(detector.features(wav))  # [D, F]
    return out


def _split(n: int, fraction: float, rng: np.random.Generator) -> tuple[list[int], list[int]]:
    """Shuffled ``(train, valid)`` indices of ``n`` clips; at least one clip stays in training."""
    order = rng.permutation(n).tolist()
    k = min(n - 1, round(n * fraction)) if fraction > 0 else 0
    return order[k:], order[:k]


def _batch(feats: list[torch.Tensor], idx: list[int], n: int, frames: int, rng: np.random.Generator) -> torch.Tensor:
    """``n`` random crops ``[n, D, frames]`` from the clips ``idx`` (drawn with replacement)."""
    from safety.deepfake import crop_or_tile

    crops = []
    for j in rng.choice(idx, size=n):
        f = feats[j]
        start = int(rng.integers(0, max(1, f.shape[1] - frames + 1)))
        crops.append(crop_or_tile(f, frames, start))
    return torch.stack(crops)


def train_detector(bona_fide: Sequence[Any], spoof: Sequence[Any], *, config: DeepfakeConfig | None = None,
                   steps: int = 800, batch_size: int = 32, lr: float = 2e-3, weight_decay: float = 1e-3,
                   valid_fraction: float = 0.15, seed: int = 0, sample_rate: int | None = SAMPLE_RATE,
                   progress: bool = True, info: dict[str, Any] | None = None) -> Any:
    """Train an LFCC-LCNN to tell ``spoof`` (generated speech) from ``bona_fide`` (recordings / corpus audio).

    Args:
        bona_fide: clips of real speech: ``[T]`` waveforms at ``sample_rate`` Hz, or audio file paths.
        spoof: clips of generated speech, same forms.
        config: front end and network (default :class:`DeepfakeConfig`).
        steps: optimizer steps; batch_size: crops per step (half of each class; even, >= 2).
        lr, weight_decay: AdamW's (cosine decay of ``lr`` to 0 over the steps).
        valid_fraction: share of each class held out to set the threshold (0: keep 0.5).
        seed: fixes the split, the crops, the initialization and dropout.
        sample_rate: Hz of array clips (resampled to the config's rate when different).
        progress: show a tqdm bar.
        info: extra facts to store with the detector (e.g. the corpus and generators it saw).

    Returns:
        A :class:`safety.deepfake.DeepfakeDetector` in eval mode; its ``info`` holds the training facts
        (clip counts, final loss, validation EER and threshold, seconds).

    Raises:
        ValueError: no clips of a class, bad hyperparameters; :class:`safety.deepfake.DeepfakeInputError` naming a
            clip that is empty, silent or NaN.
    """
    from safety.deepfake import DeepfakeDetector, eer_threshold, equal_error_rate

    config = config or DeepfakeConfig()
    if not bona_fide or not spoof:
        raise ValueError(f"training needs clips of both classes, got {len(bona_fide)} bona fide and {len(spoof)} spoof")
    if steps < 1 or batch_size < 2 or batch_size % 2:
        raise ValueError(f"steps must be >= 1 and batch_size even and >= 2, got steps={steps}, batch_size={batch_size}")
    if not 0 <= valid_fraction < 1:
        raise ValueError(f"valid_fraction must be in [0, 1), got {valid_fraction}")
    t0 = time.perf_counter()
    rng = np.random.default_rng(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        detector = DeepfakeDetector(LCNN(config))
        model = detector.model
        feats = {"bona": _features(detector, bona_fide, "bona_fide", sample_rate),
                 "spoof": _features(detector, spoof, "spoof", sample_rate)}
        parts = {k: _split(len(v), valid_fraction, rng) for k, v in feats.items()}
        train_frames = torch.cat([feats[k][i] for k in feats for i in parts[k][0]], dim=1)  # [D, all frames]
        model.set_feature_stats(train_frames.mean(1), train_frames.std(1))

        opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * s / steps)))
        labels = torch.cat([torch.zeros(batch_size // 2), torch.ones(batch_size // 2)])  # [B]: bona, then spoof
        model.train()
        losses: list[float] = []
        bar = tqdm(range(steps), desc="deepfake detector", disable=not progress, leave=False)
        for _ in bar:
            x = torch.cat([_batch(feats[k], parts[k][0], batch_size // 2, config.crop_frames, rng)
                           for k in ("bona", "spoof")])  # [B, D, crop_frames]
            loss = torch.nn.functional.binary_cross_entropy_with_logits(model(x), labels)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            losses.append(loss.item())
            bar.set_postfix(loss=f"{np.mean(losses[-20:]):.3f}")
        model.eval()

    facts: dict[str, Any] = {
        "bona_fide_clips": len(bona_fide), "spoof_clips": len(spoof), "steps": steps, "batch_size": batch_size,
        "lr": lr, "weight_decay": weight_decay, "seed": seed, "parameters": model.num_parameters(),
        "final_loss": round(float(np.mean(losses[-50:])), 4)}
    valid = {k: [float(detector.window_scores(feats[k][i]).mean()) for i in parts[k][1]] for k in feats}
    if min(len(v) for v in valid.values()) >= MIN_VALID_PER_CLASS:
        detector.threshold = eer_threshold(valid["bona"], valid["spoof"])
        facts.update(valid_eer=round(equal_error_rate(valid["bona"], valid["spoof"]), 4),
                     valid_clips={k: len(v) for k, v in valid.items()})
    else:
        log.warning("fewer than %d validation clips per class: the decision threshold stays at 0.5",
                    MIN_VALID_PER_CLASS)
    facts.update(threshold=round(detector.threshold, 6), train_seconds=round(time.perf_counter() - t0, 1))
    detector.info = {**(info or {}), "training": facts}
    log.info("deepfake detector trained: %s", facts)
    return detector
