"""Train HuBERT-style units: MFCC k-means (iteration 1), a small HuBERT on those targets, k-means on it (iteration 2).

    python -m training.train_units --corpus corpus --out codec/pretrained/units --steps 3000

1. ``fit_mfcc_units``: 39-dim MFCCs (with deltas) at 50 Hz, mean/variance normalised, MiniBatchKMeans with 100
   clusters -> ``OUT/mfcc``.
2. ``train_hubert``: a randomly initialised small HuBERT (:func:`codec.units.small_hubert_config`) plus a linear
   projection to cluster logits learns masked prediction: spans of 10 frames (200 ms) starting at a fraction
   ``mask_prob`` of the frames are replaced by the model's learned mask embedding (``mask_time_indices``) and the
   iteration-1 unit of every masked frame is predicted (cross-entropy on masked frames only, as HuBERT with
   ``alpha = 1``).
3. ``fit_hubert_units``: k-means (500 clusters by default) on the normalised outputs of a middle transformer
   layer -> ``OUT/hubert``.

The loss curve is written to ``OUT/hubert_training.png`` and the run's settings, timings and final loss/accuracy
to ``OUT/training.json``. With ``--state-dir`` the HuBERT loop checkpoints there (atomically) and a rerun resumes.
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import math
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.cluster import MiniBatchKMeans
from tqdm import tqdm
from transformers import HubertConfig, HubertModel, Wav2Vec2BertModel

from codec.base import atomic_write, atomic_write_text
from codec.units import (
    HOP_LENGTH,
    SAMPLE_RATE,
    UnitConfig,
    UnitTokenizer,
    conformer_arch,
    hubert_arch,
    hubert_padding,
    num_frames,
    small_hubert_config,
)
from training.data.corpus import read_split_audio
from training.plots import png_figure
from training.seed import seed_everything

log = logging.getLogger(__name__)

IGNORE = -100  # label of padded frames: no loss, no accuracy
KMEANS_BATCH = 10000  # MiniBatchKMeans batch (fairseq's HuBERT k-means uses the same)


@dataclass
class HubertTrainConfig:
    """Settings of the masked-prediction loop (:func:`train_hubert`)."""

    steps: int = 3000
    batch_size: int = 4
    crop_seconds: float = 2.0  # training crops; 100 frames at 50 Hz
    lr: float = 5e-4
    warmup_steps: int = 200
    weight_decay: float = 0.01
    mask_prob: float = 0.65  # fraction of frames that start a masked span (spans overlap: ~50% of frames masked)
    mask_length: int = 10  # frames per span (200 ms)
    grad_clip: float = 1.0
    log_every: int = 100
    ckpt_every: int = 500
    seed: int = 0


@dataclass
class HubertTrainResult:
    """What :func:`train_hubert` returns: the trained network (eval mode), its logit head and the history."""

    model: HubertModel
    head: torch.nn.Linear
    history: list[dict[str, float]] = field(default_factory=list)


# --- data --------------------------------------------------------------------------------------------------------


def _as_float(w: np.ndarray | torch.Tensor) -> torch.Tensor:
    """``[T]`` int16 or float waveform -> float32 tensor in [-1, 1]."""
    a = w.numpy() if isinstance(w, torch.Tensor) else np.asarray(w)
    return torch.from_numpy(a.astype(np.float32) / 32768.0 if a.dtype == np.int16 else a.astype(np.float32))


def _hours(wavs: list[np.ndarray]) -> float:
    return round(sum(len(w) for w in wavs) / SAMPLE_RATE / 3600, 3)


def _take_hours(wavs: list[np.ndarray], hours: float) -> list[np.ndarray]:
    """The first waveforms of ``wavs`` that add up to ``hours``."""
    out, total = [], 0
    for w in wavs:
        if total >= hours * 3600 * SAMPLE_RATE:
            break
        out.append(w)
        total += len(w)
    return out


# --- k-means -----------------------------------------------------------------------------------------------------

def codebook_features(tokenizer: UnitTokenizer, wavs: Iterable[np.ndarray | torch.Tensor]) -> list[torch.Tensor]:
    """The tokenizer's un-normalised ``[F, D]`` features of each ``[T]`` waveform (int16 or float, 16 kHz)."""
    return [tokenizer.features(_as_float(w))[0] for w in wavs]


def fit_codebook(tokenizer: UnitTokenizer, feats: list[torch.Tensor], seed: int = 0, max_frames: int = 1_000_000,
                 n_init: int = 3) -> dict[str, float]:
    """Fit ``tokenizer``'s normalisation and k-means codebook on features (in place).

    Args:
        tokenizer: the tokenizer the features came from (see :func:`codebook_features`).
        feats: ``[F, D]`` features per utterance.
        seed: k-means seed.
        max_frames: frames clustered at most (a random subset beyond that; mean/std use all frames).
        n_init: k-means++ initialisations tried.

    Returns:
        ``{"kmeans_frames", "kmeans_inertia", "kmeans_seconds"}`` (inertia: mean squared distance to the centroid,
        in normalised units).
    """
    t0 = time.time()
    x = torch.cat(feats).numpy()  # [N, D]
    if len(x) < tokenizer.num_units:
        raise ValueError(f"{len(x)} frames cannot make {tokenizer.num_units} clusters")
    mean, std = x.mean(0), x.std(0) + 1e-5
    z = (x - mean) / std
    if len(z) > max_frames:
        z = z[np.random.default_rng(seed).choice(len(z), max_frames, replace=False)]
    km = MiniBatchKMeans(n_clusters=tokenizer.num_units, batch_size=min(KMEANS_BATCH, len(z)), n_init=n_init,
                         max_iter=100, max_no_improvement=20, reassignment_ratio=0.0, random_state=seed)
    km.fit(z)
    tokenizer.set_codebook(km.cluster_centers_, mean, std)
    stats = {"kmeans_frames": len(z), "kmeans_inertia": float(km.inertia_) / len(z),
             "kmeans_seconds": round(time.time() - t0, 1)}
    log.info("k-means %s K=%d: %d frames of %d dims, inertia/frame %.3f, %.0f s", tokenizer.kind,
             tokenizer.num_units, len(z), z.shape[1], stats["kmeans_inertia"], stats["kmeans_seconds"])
    return stats


def fit_mfcc_units(wavs_iter: Iterable[np.ndarray | torch.Tensor], n_clusters: int = 100, seed: int = 0,
                   max_frames: int = 1_000_000) -> UnitTokenizer:
    """HuBERT iteration 1: k-means over normalised 39-dim MFCC features at 50 Hz.

    Args:
        wavs_iter: ``[T]`` waveforms at 16 kHz (int16 or float).
        n_clusters: number of units ``K``.
        seed: k-means seed.
        max_frames: frames clustered at most.
    """
    tok = UnitTokenizer(UnitConfig(kind="mfcc", num_units=n_clusters, feature_dim=39))
    tok.config.info = fit_codebook(tok, codebook_features(tok, wavs_iter), seed, max_frames, n_init=3)
    return tok


def fit_hubert_units(model: HubertModel, wavs: Iterable[np.ndarray | torch.Tensor], n_clusters: int = 500,
                     feature_layer: int | None = None, seed: int = 0, max_frames: int = 500_000) -> UnitTokenizer:
    """HuBERT iteration 2: k-means over a transformer layer's outputs (the model is copied, not changed).

    Args:
        model: a trained HuBERT (see :func:`train_hubert`).
        wavs: ``[T]`` waveforms at 16 kHz (int16 or float).
        n_clusters: number of units ``K``.
        feature_layer: 1-based layer whose output is clustered; ``None``: ``num_layers // 2 + 1`` (4 of 6).
        seed: k-means seed.
        max_frames: frames clustered at most.
    """
    cfg = model.config
    layer = feature_layer if feature_layer is not None else cfg.num_hidden_layers // 2 + 1
    tok = UnitTokenizer(UnitConfig(kind="hubert", num_units=n_clusters, feature_dim=cfg.hidden_size,
                                   feature_layer=layer, hubert=hubert_arch(cfg)), hubert=copy.deepcopy(model))
    tok.config.info = fit_codebook(tok, codebook_features(tok, wavs), seed, max_frames, n_init=1)
    return tok


def fit_conformer_units(model: Wav2Vec2BertModel, wavs: Iterable[np.ndarray | torch.Tensor], n_clusters: int = 100,
                        feature_layer: int | None = None, seed: int = 0, max_frames: int = 500_000) -> UnitTokenizer:
    """Supervised units: k-means over a layer of a phone-CTC-trained Conformer (the model is copied, not changed).

    Args:
        model: the trained Conformer (``training/finetune_units.py --arch conformer``).
        wavs: ``[T]`` waveforms at 16 kHz (int16 or float).
        n_clusters: number of units ``K``.
        feature_layer: 1-based layer whose output is clustered; ``None``: ``num_layers // 2 + 1``.
        seed: k-means seed.
        max_frames: frames clustered at most.
    """
    cfg = model.config
    layer = feature_layer if feature_layer is not None else cfg.num_hidden_layers // 2 + 1
    tok = UnitTokenizer(UnitConfig(kind="conformer", num_units=n_clusters, feature_dim=cfg.hidden_size,
                                   feature_layer=layer, conformer=conformer_arch(cfg)), conformer=copy.deepcopy(model))
    tok.config.info = fit_codebook(tok, codebook_features(tok, wavs), seed, max_frames, n_init=1)
    return tok


# --- masked prediction -------------------------------------------------------------------------------------------

def span_mask(lengths: list[int], total: int, prob: float, span: int, rng: np.random.Generator) -> torch.Tensor:
    """HuBERT/wav2vec 2.0 span masking: ``[B, total]`` bool, spans of ``span`` frames within each row's length.

    Each row gets ``round(prob * length / span)`` (at least one) span starts drawn without replacement; spans
    may overlap, so somewhat less than ``prob`` of the frames end up masked.
    """
    mask = np.zeros((len(lengths), total), dtype=bool)
    for b, n in enumerate(lengths):
        width = min(span, n)
        starts = n - width + 1
        k = min(starts, max(1, int(prob * n / width + rng.random())))
        for s in rng.choice(starts, size=k, replace=False):
            mask[b, s: s + width] = True
    return torch.from_numpy(mask)


class CropSampler:
    """Random frame-aligned crops of waveforms with their frame labels (utterances drawn by length).

    A crop of ``F`` frames starting at frame ``a`` is samples ``[320 a - left, 320 (a + F) + right)`` (zeros
    outside the utterance), exactly what :class:`~codec.units.UnitTokenizer` feeds the network for those frames.
    """

    def __init__(self, wavs: list[np.ndarray], labels: list[np.ndarray], frames: int, pad: tuple[int, int],
                 seed: int) -> None:
        for w, y in zip(wavs, labels, strict=True):
            if len(y) != num_frames(len(w)):
                raise ValueError(f"{len(y)} labels for {len(w)} samples: expected ceil(T / 320)")
        self.wavs, self.labels, self.frames, self.pad = wavs, labels, frames, pad
        lengths = np.array([len(y) for y in labels], dtype=np.float64)
        self.p = lengths / lengths.sum()
        self.rng = np.random.default_rng(seed)

    def batch(self, n: int) -> tuple[torch.Tensor, torch.Tensor, list[int]]:
        """``(audio [n, 320 F + left + right], labels [n, F] with -100 past the end, valid frames per row)``."""
        left, right = self.pad
        audio = np.zeros((n, self.frames * HOP_LENGTH + left + right), dtype=np.float32)
        labels = np.full((n, self.frames), IGNORE, dtype=np.int64)
        valid = []
        for b, i in enumerate(self.rng.choice(len(self.wavs), size=n, p=self.p)):
            w, y = self.wavs[i], self.labels[i]
            a = int(self.rng.integers(0, max(1, len(y) - self.frames + 1)))
            m = min(self.frames, len(y) - a)
            lo, hi = a * HOP_LENGTH - left, (a + m) * HOP_LENGTH + right
            seg = w[max(0, lo): min(len(w), hi)]
            audio[b, max(0, -lo): max(0, -lo) + len(seg)] = seg / 32768.0 if w.dtype == np.int16 else seg
            labels[b, :m] = y[a: a + m]
            valid.append(m)
        return torch.from_numpy(audio), torch.from_numpy(labels), valid


def train_hubert(
    wavs: list[np.ndarray],
    labels: list[np.ndarray],
    num_classes: int,
    config: HubertConfig | None = None,
    cfg: HubertTrainConfig | None = None,
    state_dir: str | Path | None = None,
    progress: bool = True,
) -> HubertTrainResult:
    """Train a HuBERT from scratch by masked prediction of frame labels.

    Args:
        wavs: ``[T]`` waveforms at 16 kHz (int16 or float32).
        labels: per waveform ``[ceil(T / 320)]`` int targets in ``[0, num_classes)`` (iteration-1 units).
        num_classes: number of target classes (the projection's output size).
        config: the network (default :func:`codec.units.small_hubert_config`).
        cfg: loop settings.
        state_dir: where to checkpoint every ``cfg.ckpt_every`` steps and resume from (``None``: no checkpoints).
        progress: show a tqdm bar.

    Returns:
        The model in eval mode, the ``[hidden -> num_classes]`` head and per-``log_every`` history of
        ``{"step", "loss", "acc_masked", "acc_unmasked", "lr", "elapsed_s"}``.
    """
    config = config or small_hubert_config()
    cfg = cfg or HubertTrainConfig()
    seed_everything(cfg.seed)
    model, head = HubertModel(config), torch.nn.Linear(config.hidden_size, num_classes)
    params = list(model.parameters()) + list(head.parameters())
    opt = torch.optim.AdamW(params, lr=cfg.lr, betas=(0.9, 0.98), weight_decay=cfg.weight_decay)
    sampler = CropSampler(wavs, labels, int(cfg.crop_seconds * 50), hubert_padding(config), cfg.seed)
    mask_rng = np.random.default_rng(cfg.seed + 1)
    history: list[dict[str, float]] = []
    start, elapsed0 = 0, 0.0
    ckpt = Path(state_dir) / "hubert_state.pt" if state_dir is not None else None
    if ckpt is not None and ckpt.is_file():
        state = torch.load(ckpt, weights_only=True)
        if state["arch"] != json.dumps(hubert_arch(config)) or state["num_classes"] != num_classes:
            raise ValueError(f"{ckpt} was written for another model; delete it or pick another --state-dir")
        model.load_state_dict(state["model"])
        head.load_state_dict(state["head"])
        opt.load_state_dict(state["opt"])
        start, history, elapsed0 = int(state["step"]), state["history"], float(state["elapsed_s"])
        sampler.rng.bit_generator.state = json.loads(state["sampler_rng"])
        mask_rng.bit_generator.state = json.loads(state["mask_rng"])
        torch.set_rng_state(state["torch_rng"])
        log.info("resuming HuBERT training from step %d (%s)", start, ckpt)

    def lr_at(step: int) -> float:  # linear warmup, cosine decay to 5% of the peak
        if step < cfg.warmup_steps:
            return cfg.lr * (step + 1) / cfg.warmup_steps
        t = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
        return cfg.lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(1.0, t))))

    model.train()
    head.train()
    t0 = time.time() - elapsed0
    window: list[tuple[float, float, float]] = []
    bar = tqdm(range(start, cfg.steps), initial=start, total=cfg.steps, disable=not progress, desc="hubert",
               unit="step")
    for step in bar:
        audio, y, valid = sampler.batch(cfg.batch_size)  # [B, S], [B, F]
        mask = span_mask(valid, y.shape[1], cfg.mask_prob, cfg.mask_length, mask_rng)  # [B, F]
        hidden = model(audio, mask_time_indices=mask).last_hidden_state  # [B, F, H]
        logits = head(hidden)  # [B, F, K]
        target = y.masked_fill(~mask, IGNORE)
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, num_classes), target.reshape(-1),
                                                 ignore_index=IGNORE)
        loss_value = float(loss.detach())
        if not math.isfinite(loss_value):
            raise FloatingPointError(f"loss became {loss_value} at step {step + 1}; lower the learning rate")
        for g in opt.param_groups:
            g["lr"] = lr_at(step)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
        opt.step()
        with torch.no_grad():
            hit, ok = logits.argmax(-1) == y, y != IGNORE
            acc_m = float(hit[mask & ok].float().mean())
            acc_u = float(hit[~mask & ok].float().mean()) if (~mask & ok).any() else float("nan")
        window.append((loss_value, acc_m, acc_u))
        done = step + 1
        bar.set_postfix(loss=f"{loss_value:.3f}", acc=f"{acc_m:.3f}")
        if done % cfg.log_every == 0 or done == cfg.steps:
            loss_w, acc_w, accu_w = (float(np.nanmean(c)) for c in zip(*window, strict=True))
            rec = {"step": done, "loss": loss_w, "acc_masked": acc_w, "acc_unmasked": accu_w, "lr": lr_at(step),
                   "elapsed_s": round(time.time() - t0, 1)}
            history.append(rec)
            window.clear()
            log.info("step %d/%d: loss %.3f, masked-frame accuracy %.3f (unmasked %.3f), lr %.2e, %.0f s", done,
                     cfg.steps, loss_w, acc_w, accu_w, rec["lr"], rec["elapsed_s"])
        if ckpt is not None and (done % cfg.ckpt_every == 0 or done == cfg.steps):
            state = {"step": done, "model": model.state_dict(), "head": head.state_dict(), "opt": opt.state_dict(),
                     "history": history, "elapsed_s": time.time() - t0, "arch": json.dumps(hubert_arch(config)),
                     "num_classes": num_classes, "torch_rng": torch.get_rng_state(),
                     "sampler_rng": json.dumps(sampler.rng.bit_generator.state),
                     "mask_rng": json.dumps(mask_rng.bit_generator.state)}
            ckpt.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(ckpt, lambda p, s=state: torch.save(s, p))
    return HubertTrainResult(model.eval(), head.eval(), history)


def plot_history(history: list[dict[str, float]], path: str | Path) -> None:
    """Loss and masked-frame accuracy against step, as a PNG."""
    steps = [h["step"] for h in history]
    with png_figure(path, 1, 2, figsize=(10, 3.6)) as (_, ax):
        ax[0].plot(steps, [h["loss"] for h in history])
        ax[0].set_title("masked-prediction loss (cross-entropy)")
        ax[1].plot(steps, [h["acc_masked"] for h in history], label="masked frames")
        ax[1].plot(steps, [h["acc_unmasked"] for h in history], label="unmasked frames")
        ax[1].set_title("accuracy on iteration-1 units")
        ax[1].legend()
        for a in ax:
            a.set_xlabel("step")
            a.grid(alpha=0.3)


# --- the recipe --------------------------------------------------------------------------------------------------

def train_units(corpus: str | Path, out: str | Path, args: argparse.Namespace) -> dict[str, Any]:
    """Iteration 1, HuBERT training and iteration 2; saves ``out/mfcc``, ``out/hubert`` and a report."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    seed_everything(args.seed)
    if args.threads:
        torch.set_num_threads(args.threads)
    t_all = time.time()
    pool = read_split_audio(corpus, "train", max(args.hours_for_kmeans, args.hours_for_hubert), args.seed)

    t = time.time()
    train_wavs = _take_hours(pool, args.hours_for_hubert)
    kmeans_wavs = _take_hours(pool, args.hours_for_kmeans)
    mfcc_tok = UnitTokenizer(UnitConfig(kind="mfcc", num_units=args.mfcc_clusters, feature_dim=39))
    feats = codebook_features(mfcc_tok, pool[: max(len(train_wavs), len(kmeans_wavs))])  # one MFCC pass for both
    mfcc_tok.config.info = fit_codebook(mfcc_tok, feats[: len(kmeans_wavs)], args.seed, args.max_kmeans_frames)
    mfcc_tok.config.info.update(corpus=str(corpus), hours=_hours(kmeans_wavs))
    mfcc_tok.save_pretrained(out / "mfcc")
    labels = [mfcc_tok.assign(f).numpy() for f in feats[: len(train_wavs)]]  # iteration-1 targets
    del feats
    t_mfcc = time.time() - t
    log.info("iteration 1 (MFCC k-means and labels for %d utterances) in %.0f s", len(labels), t_mfcc)
    config = small_hubert_config(args.hidden, args.layers, args.heads, 4 * args.hidden, args.conv_dim)
    tcfg = HubertTrainConfig(steps=args.steps, batch_size=args.batch_size, crop_seconds=args.crop_seconds,
                             lr=args.lr, warmup_steps=min(args.warmup, max(1, args.steps // 5)),
                             log_every=args.log_every, seed=args.seed)
    t = time.time()
    result = train_hubert(train_wavs, labels, args.mfcc_clusters, config, tcfg, args.state_dir)
    t_hubert = time.time() - t
    plot_history(result.history, out / "hubert_training.png")

    t = time.time()
    kmeans2_wavs = _take_hours(train_wavs, args.hubert_kmeans_hours)
    hub_tok = fit_hubert_units(result.model, kmeans2_wavs, args.hubert_clusters, args.feature_layer, args.seed)
    last = result.history[-1] if result.history else {}
    hub_tok.config.info.update(corpus=str(corpus), hubert_train_hours=_hours(train_wavs),
                               kmeans_hours=_hours(kmeans2_wavs), train=asdict(tcfg), final_loss=last.get("loss"),
                               final_acc_masked=last.get("acc_masked"))
    hub_tok.save_pretrained(out / "hubert")
    t_kmeans2 = time.time() - t
    seconds = {"mfcc_iteration": t_mfcc, "hubert_train": t_hubert, "hubert_kmeans": t_kmeans2,
               "total": time.time() - t_all}
    report = {"corpus": str(corpus), "hours_in_memory": _hours(pool), "args": vars(args),
              "seconds": {k: round(v, 1) for k, v in seconds.items()}, "history": result.history}
    atomic_write_text(out / "training.json", json.dumps(report, indent=1, default=str) + "\n")
    (out / "training.json").chmod(0o644)
    log.info("done in %.0f s: %s", seconds["total"], report["seconds"])
    return report


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--corpus", required=True, help="corpus directory with manifest.jsonl (train split is used)")
    p.add_argument("--out", required=True, help="writes OUT/mfcc, OUT/hubert, OUT/hubert_training.png")
    p.add_argument("--hours-for-kmeans", type=float, default=3.0, help="audio for the MFCC k-means")
    p.add_argument("--hours-for-hubert", type=float, default=3.0, help="audio pool for HuBERT training")
    p.add_argument("--hubert-kmeans-hours", type=float, default=1.0, help="audio for the HuBERT-feature k-means")
    p.add_argument("--max-kmeans-frames", type=int, default=500_000, help="frames clustered at most (MFCC)")
    p.add_argument("--mfcc-clusters", type=int, default=100)
    p.add_argument("--hubert-clusters", type=int, default=500)
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--crop-seconds", type=float, default=2.0)
    p.add_argument("--lr", type=float, default=5e-4)
    p.add_argument("--warmup", type=int, default=200)
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--layers", type=int, default=6)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--conv-dim", type=int, default=128)
    p.add_argument("--feature-layer", type=int, default=None, help="1-based; default layers // 2 + 1")
    p.add_argument("--log-every", type=int, default=100)
    p.add_argument("--state-dir", default=None, help="checkpoint/resume directory for the HuBERT loop")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S")
    train_units(args.corpus, args.out, args)


if __name__ == "__main__":
    main()
