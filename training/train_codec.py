"""Train the neural codec on a corpus: a visible loop, with validation, samples, plots, atomic checkpoints, resume.

Stage 1 (steps < ``adv_start``): waveform L1 + multi-scale mel loss + commitment loss; the quantizer's codebooks
learn by EMA with k-means init and dead-code replacement; each batch uses a random number of codebooks
(quantizer dropout) so every prefix decodes. Stage 2 (``adv_start`` and later, if set): adds a multi-scale STFT
discriminator with hinge and feature-matching losses.

    python -m training.train_codec --corpus corpus --out runs/codec --steps 20000

Running the same command again resumes from ``OUT/checkpoint`` (the latest complete one; checkpoints are written
to a temporary directory and renamed, so a killed run never leaves a half-written one).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import random
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from codec.audio import save_audio
from codec.base import AudioTokenizer
from codec.neural import CodecConfig, NeuralCodec
from training.codec_losses import (
    MultiScaleMelLoss,
    MultiScaleSTFTDiscriminator,
    discriminator_loss,
    generator_losses,
    mel_distance,
)
from training.data.corpus import read_split_audio
from training.plots import png_figure
from training.seed import seed_everything

log = logging.getLogger(__name__)


@dataclass
class TrainCodecConfig:
    steps: int = 20000
    batch_size: int = 8
    segment_seconds: float = 1.0
    lr: float = 1e-3
    max_hours: float = 4.0  # train audio held in memory (int16)
    adv_start: int | None = None  # step at which the adversarial stage starts; None: never
    lambda_time: float = 1.0  # 0.1 (EnCodec's) left the decoder on an input-independent plateau for 1000s of steps
    lambda_mel: float = 1.0
    lambda_commit: float = 1.0
    lambda_adv: float = 0.1
    lambda_fm: float = 1.0
    mel_loss: str = "encodec"  # or "log_l1" (see training.codec_losses.MultiScaleMelLoss)
    valid_every: int = 500
    ckpt_every: int = 250
    valid_clips: int = 16
    seed: int = 0
    threads: int = 0  # 0: torch's default
    codec: CodecConfig = field(default_factory=CodecConfig)


# --- data ------------------------------------------------------------------------------------------------------


class SegmentSampler:
    """Random fixed-length segments (speech-weighted: clips are drawn in proportion to their length)."""

    def __init__(self, wavs: list[np.ndarray], segment: int, seed: int):
        self.wavs, self.segment = wavs, segment
        lengths = np.array([len(w) for w in wavs], dtype=np.float64)
        self.p = lengths / lengths.sum()
        self.rng = np.random.default_rng(seed)

    def batch(self, n: int) -> torch.Tensor:
        out = np.zeros((n, self.segment), dtype=np.float32)
        for b, i in enumerate(self.rng.choice(len(self.wavs), size=n, p=self.p)):
            w = self.wavs[i]
            if len(w) <= self.segment:
                out[b, : len(w)] = w / 32768.0
            else:
                s = self.rng.integers(0, len(w) - self.segment)
                out[b] = w[s: s + self.segment] / 32768.0
        return torch.from_numpy(out)


# --- checkpoints ----------------------------------------------------------------------------------------------

def save_checkpoint(out: Path, model: NeuralCodec, opt: torch.optim.Optimizer, step: int, history: list,
                    disc: torch.nn.Module | None = None, opt_d: torch.optim.Optimizer | None = None) -> None:
    """Write ``out/checkpoint`` atomically: a temp directory renamed over the old one."""
    tmp = out / f".checkpoint.tmp{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp / "codec")
    state = {"step": step, "opt": opt.state_dict(), "rng": torch.get_rng_state()}
    if disc is not None and opt_d is not None:
        state.update(disc=disc.state_dict(), opt_d=opt_d.state_dict())
    torch.save(state, tmp / "trainer.pt")
    (tmp / "history.json").write_text(json.dumps(history))
    final, old = out / "checkpoint", out / ".checkpoint.old"
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        final.rename(old)
    tmp.rename(final)
    shutil.rmtree(old, ignore_errors=True)


def load_checkpoint(out: Path) -> tuple[NeuralCodec, dict, list] | None:
    ck = out / "checkpoint"
    if not (ck / "trainer.pt").is_file():
        old = out / ".checkpoint.old"  # killed between the two renames
        if (old / "trainer.pt").is_file():
            old.rename(ck)
        else:
            return None
    model = AudioTokenizer.from_pretrained(ck / "codec")
    assert isinstance(model, NeuralCodec)
    state = torch.load(ck / "trainer.pt", weights_only=True)
    return model, state, json.loads((ck / "history.json").read_text())


# --- validation -------------------------------------------------------------------------------------------------

@torch.no_grad()
def validate(model: NeuralCodec, clips: list[torch.Tensor], mel: MultiScaleMelLoss) -> dict[str, float]:
    """Mel distance and SNR of reconstructions at 1, 2, 4 and 8 codebooks (lower / higher is better)."""
    model.eval()
    res: dict[str, float] = {}
    for k in sorted({1, 2, 4, model.max_codebooks}):
        model.set_num_codebooks(k)
        d, snr = [], []
        for x in clips:
            y = model.decode(model.encode(x))[0, : len(x)]
            d.append(mel_distance(y[None], x[None], mel))
            snr.append(float(10 * torch.log10(x.pow(2).sum() / ((y - x).pow(2).sum() + 1e-9))))
        res[f"mel_k{k}"], res[f"snr_k{k}"] = float(np.mean(d)), float(np.mean(snr))
    model.set_num_codebooks(model.max_codebooks)
    model.train()
    return res


def write_samples(model: NeuralCodec, clips: list[torch.Tensor], out: Path, step: int) -> None:
    """Original/reconstructed WAVs of the first clips and a spectrogram PNG."""
    from codec.features import log_mel

    out.mkdir(parents=True, exist_ok=True)
    model.eval()
    png = out / f"spectrogram_step{step:07d}.png"
    with torch.no_grad(), png_figure(png, 3, 2, figsize=(12, 7), squeeze=False) as (fig, axes):
        for i, x in enumerate(clips[:3]):
            y = model.decode(model.encode(x))[0, : len(x)]
            save_audio(out / f"step{step:07d}_{i}_orig.wav", x, 16000)
            save_audio(out / f"step{step:07d}_{i}_codec.wav", y.clamp(-1, 1), 16000)
            for j, (w, name) in enumerate(((x, "original"), (y, f"codec {model.bitrate / 1000:.1f} kbps"))):
                axes[i][j].imshow(log_mel(w).numpy(), origin="lower", aspect="auto", cmap="magma")
                axes[i][j].set_title(f"clip {i}: {name}", fontsize=9)
        fig.suptitle(f"codec reconstructions at step {step}")
    model.train()


def plot_history(history: list[dict], path: Path) -> None:
    """Training loss and validation log-mel distance per bitrate against the step."""
    train = [h for h in history if "loss" in h]
    valid = [h for h in history if "mel_k8" in h]
    with png_figure(path, 1, 2) as (_, ax):
        if train:
            ax[0].plot([h["step"] for h in train], [h["loss"] for h in train], label="train loss")
            ax[0].set_yscale("log")
        for key in ("mel_k1", "mel_k2", "mel_k4", "mel_k8"):
            if valid and key in valid[0]:
                ax[1].plot([h["step"] for h in valid], [h[key] for h in valid], marker="o", label=key)
        for a, t in zip(ax, ("training loss", "validation log-mel distance")):
            a.set_title(t)
            a.set_xlabel("step")
            a.legend()


# --- the loop ---------------------------------------------------------------------------------------------------

def train(corpus: str | Path, out: str | Path, cfg: TrainCodecConfig, progress: bool = True) -> NeuralCodec:
    """Train (or resume) a codec; returns the model at the last step. ``out/final`` holds the saved codec."""
    corpus, out = Path(corpus), Path(out)
    out.mkdir(parents=True, exist_ok=True)
    seed_everything(cfg.seed)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    resumed = load_checkpoint(out)
    if resumed:
        model, state, history = resumed
        start = state["step"]
        log.info("resuming from step %d", start)
    else:
        model, state, history, start = NeuralCodec(cfg.codec), None, [], 0
        (out / "train_config.json").write_text(json.dumps(asdict(cfg), indent=2))
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, betas=(0.5, 0.9))
    disc = MultiScaleSTFTDiscriminator() if cfg.adv_start is not None else None
    opt_d = torch.optim.Adam(disc.parameters(), lr=cfg.lr, betas=(0.5, 0.9)) if disc is not None else None
    if state:
        opt.load_state_dict(state["opt"])
        torch.set_rng_state(state["rng"])
        if disc is not None and "disc" in state:
            disc.load_state_dict(state["disc"])
            opt_d.load_state_dict(state["opt_d"])
    mel = MultiScaleMelLoss(model.sample_rate, kind=cfg.mel_loss)
    segment = int(cfg.segment_seconds * model.sample_rate) // model.hop_length * model.hop_length
    sampler = SegmentSampler(read_split_audio(corpus, "train", cfg.max_hours, cfg.seed), segment, cfg.seed + start)
    valid = [torch.from_numpy(w[: 4 * 16000] / 32768.0).float()
             for w in read_split_audio(corpus, "valid", 0.05, cfg.seed)[: cfg.valid_clips]]
    rng = random.Random(cfg.seed + start)
    if not resumed:
        model.init_from_data(sampler.batch(max(cfg.batch_size, 16)))
    t0, bar = time.time(), tqdm(range(start, cfg.steps), initial=start, total=cfg.steps, disable=not progress,
                                desc="codec", unit="step")
    for step in bar:
        x = sampler.batch(cfg.batch_size)
        n_q = rng.randint(1, model.max_codebooks)  # quantizer dropout
        y, _, commit = model(x, n_q=n_q)
        l_time, l_mel = (y - x).abs().mean(), mel(y, x)
        loss = cfg.lambda_time * l_time + cfg.lambda_mel * l_mel + cfg.lambda_commit * commit
        rec = {"step": step + 1, "loss": float(loss), "time": float(l_time), "mel": float(l_mel),
               "commit": float(commit), "n_q": n_q}
        if disc is not None and cfg.adv_start is not None and step >= cfg.adv_start:
            adv, fm = generator_losses(disc(x), disc(y))
            loss = loss + cfg.lambda_adv * adv + cfg.lambda_fm * fm
            opt_d.zero_grad()
            d_loss = discriminator_loss(disc(x), disc(y.detach()))
            d_loss.backward()
            opt_d.step()
            rec.update(adv=float(adv), fm=float(fm), d_loss=float(d_loss))
        if not math.isfinite(float(loss)):
            raise FloatingPointError(f"loss became {float(loss)} at step {step + 1}; lower --lr")
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)
        opt.step()
        rec["revived"] = model.revive_dead_codes(model._last_latents, n_q) if model._last_latents is not None else 0
        history.append(rec)
        bar.set_postfix(loss=f"{rec['loss']:.3f}", mel=f"{rec['mel']:.3f}", revived=rec["revived"])
        done = step + 1
        if done % cfg.valid_every == 0 or done == cfg.steps:
            v = validate(model, valid, mel)
            history.append({"step": done, "elapsed_s": round(time.time() - t0, 1), **v})
            log.info("step %d: %s", done, " ".join(f"{k}={val:.3f}" for k, val in v.items()))
            write_samples(model, valid, out / "samples", done)
            plot_history(history, out / "training_curves.png")
        if done % cfg.ckpt_every == 0 or done == cfg.steps:
            save_checkpoint(out, model, opt, done, history, disc, opt_d)
    model.config.extra = {"steps": cfg.steps, "corpus": str(corpus), "train_hours": cfg.max_hours}
    model.eval()
    model.save_pretrained(out / "final")
    return model


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--corpus", required=True)
    p.add_argument("--out", required=True)
    d = TrainCodecConfig()
    for name in ("steps", "batch_size", "segment_seconds", "lr", "max_hours", "valid_every", "ckpt_every",
                 "seed", "threads", "adv_start", "lambda_time", "mel_loss"):
        default = getattr(d, name)
        p.add_argument(f"--{name.replace('_', '-')}", type=type(default) if default is not None else int,
                       default=default)
    p.add_argument("--n-filters", type=int, default=d.codec.n_filters)
    p.add_argument("--dimension", type=int, default=d.codec.dimension)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S")
    cfg = TrainCodecConfig(**{k: v for k, v in vars(args).items() if k in TrainCodecConfig.__dataclass_fields__
                              and k != "codec"},
                           codec=CodecConfig(n_filters=args.n_filters, dimension=args.dimension))
    train(args.corpus, args.out, cfg)


if __name__ == "__main__":
    main()
