"""Supervised units: train an encoder with a phone CTC head, then k-means over one of its layers.

    python -m training.finetune_units --corpus corpus --out runs/units-ctc --max-minutes 25
    python -m training.finetune_units --arch conformer --corpus corpus --out runs/units-conformer --max-minutes 35
    python -m training.finetune_units --arch conformer --init codec/pretrained/units/conformer --phone-units \
        --corpus corpus --out runs/units-phone --max-minutes 15
    python -m training.unit_quality --units runs/units-ctc/units codec/pretrained/units/mfcc

Recommended for the phone recognizer (the third command plus augmentation; every augmentation flag is off by
default, so the commands above reproduce the runs they made):

    python -m training.finetune_units --arch conformer --init codec/pretrained/units/conformer --phone-units \
        --speed-perturb 0.9,1.0,1.1 --vtlp 0.1 --noise-snr 15,40 --noise-prob 0.5 --gain-db 6 --freq-masks 2 \
        --corpus corpus --out runs/units-phone-aug --max-minutes 15

Without it the phone recognizer overfits the corpus's ~38 synthetic voices (phone error rate 2-4% on espeak-ng
training voices, 31-70% on held-out non-espeak ones). Speed perturbation (Kaldi's 0.9/1.0/1.1) and VTLP
(+-10%) simulate other speakers' tempo, pitch and vocal tract length; noise (white or pink at 15-40 dB SNR on
half the utterances), gain and two SpecAugment frequency masks simulate channels and keep the model from
leaning on a few bands (:mod:`training.augment`). Augmented batches cost their log-mels each step, and
augmented data converge more slowly: give it more minutes where the budget allows.

HuBERT's own recipe refines units by clustering a trained model's features (iteration 2, ``train_units``); on
this machine's budget the masked-prediction HuBERT does not beat MFCC k-means (README, QUALITY.md). Fine-tuning
that HuBERT with CTC on phone sequences (as HuBERT/wav2vec 2.0 are fine-tuned for ASR) makes its upper layers
phonetic and far less speaker-dependent, and k-means over such an ASR-trained encoder gives *supervised semantic
tokens* (the CosyVoice S3 tokenizer's idea: quantize an ASR encoder). The result is an ordinary ``"hubert"``
:class:`~codec.units.UnitTokenizer` (same architecture, new weights), so nothing downstream changes.

``--arch conformer`` trains a small Conformer (:func:`codec.units.small_conformer_config`, a transformers
``Wav2Vec2BertModel``) from scratch on stacked log-mels instead: on this CPU a log-mel Conformer learns phones
far faster per second than the raw-waveform HuBERT (the legacy CTC baseline's lesson), and the result is a
``"conformer"`` tokenizer. ``--init DIR`` starts it from a saved ``"conformer"`` or ``"phone"`` tokenizer's
Conformer instead of from scratch (and from a ``"phone"`` tokenizer's head when the phone inventory matches).
``--phone-units`` keeps the phone head and writes a ``"phone"`` tokenizer (units = the frame-wise best phone
symbol, blank included) in place of step 3's k-means; continued from a ``"phone"`` tokenizer it keeps that
tokenizer's phone inventory (so unit ids, and a decoder's vocabulary over them, stay valid).

``--corpus A,B`` trains on several corpora at once (each up to ``--hours``, each an equal share of the validation
utterances), e.g. a full-mix corpus beside one of the engines the full mix under-represents
(``alm data synth --engines mbrola,flite,pico,rhvoice``).

1. Phones: ``espeak-ng -q --ipa -v LANG TEXT`` for each training sentence (cached in ``OUT/phones.json``); the
   targets are its IPA characters with stress marks dropped and ``|`` between words: one inventory for English
   and Spanish, so the same units serve both languages.
2. CTC fine-tuning of the shipped HuBERT (``codec/pretrained/units/hubert``) plus a linear phone head on whole
   utterances (batches of similar length, SpecAugment-style time masking with the model's mask embedding; with
   the flags, speed perturbation, noise and gain of the waveform and VTLP and frequency masks of the log-mels,
   training batches only: :mod:`training.augment`), AdamW, warmup + cosine; ``--max-minutes`` times the schedule
   to a budget; ``OUT/state`` checkpoints atomically and a rerun resumes (augmentation draws included).
   Greedy phone error rate on validation utterances is logged.
3. k-means (``--clusters``, 100 by default: the same vocabulary size as the MFCC units, so a model trained on
   those keeps its layout) over layer ``--feature-layer`` -> ``OUT/units``; curves in ``OUT/finetune.png``.
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import math
import random
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rapidfuzz.distance import Levenshtein
from tqdm import tqdm
from transformers import Wav2Vec2BertModel

from codec.base import atomic_write, atomic_write_text
from codec.units import (
    HOP_LENGTH,
    SAMPLE_RATE,
    UnitConfig,
    UnitTokenizer,
    conformer_arch,
    conformer_inputs,
    hubert_padding,
    num_frames,
    small_conformer_config,
)
from codec.word_phones import BLANK, ESPEAK_VOICE, phonemize
from training.augment import AugmentConfig, as_float, augment_features, augment_waveform
from training.data.corpus import read_split_rows
from training.plots import png_figure
from training.seed import seed_everything
from training.train_units import _hours, _take_hours, fit_conformer_units, fit_hubert_units, span_mask

log = logging.getLogger(__name__)

DEFAULT_HUBERT = Path(__file__).resolve().parents[1] / "codec/pretrained/units/hubert"


# --- phones ------------------------------------------------------------------------------------------------------

def phone_table(records: list[dict[str, Any]], cache: Path | None, progress: bool = True) -> dict[str, list[str]]:
    """``{lang + tab + text: phones}`` for every record, read from / added to the JSON ``cache`` (``None``: none)."""
    table: dict[str, list[str]] = json.loads(cache.read_text()) if cache is not None and cache.is_file() else {}
    todo = [r for r in records if f"{r['lang']}\t{r['text']}" not in table]
    for r in tqdm(todo, desc="espeak-ng phones", unit="sent", disable=not (progress and todo)):
        table[f"{r['lang']}\t{r['text']}"] = phonemize(r["text"], r["lang"])
    if todo and cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(cache, json.dumps(table, ensure_ascii=False))
    return table


# --- data --------------------------------------------------------------------------------------------------------

def read_split(corpus: Path, split: str, max_hours: float, max_seconds: float, seed: int
               ) -> tuple[list[np.ndarray], list[dict[str, Any]]]:
    """Shuffled int16 ``[T]`` waveforms and their manifest rows (``max_seconds`` at most each, ``max_hours`` all)."""
    return read_split_rows(corpus, split, max_hours, seed,
                           keep=lambda r: r["lang"] in ESPEAK_VOICE and r.get("duration", 0) <= max_seconds)


def read_corpora(corpora: list[Path], args: argparse.Namespace
                 ) -> tuple[list[np.ndarray], list[dict[str, Any]], list[np.ndarray], list[dict[str, Any]]]:
    """Train and valid waveforms and rows of one or more corpora: each gives up to ``--hours`` of training audio
    and an equal share of the ``--valid-utts`` validation utterances."""
    train_wavs: list[np.ndarray] = []
    train_rows: list[dict[str, Any]] = []
    valid_wavs: list[np.ndarray] = []
    valid_rows: list[dict[str, Any]] = []
    per_corpus = max(1, args.valid_utts // len(corpora))
    for corpus in corpora:
        wavs, rows = read_split(corpus, "train", args.hours, args.max_seconds, args.seed)
        train_wavs += wavs
        train_rows += rows
        wavs, rows = read_split(corpus, "valid", 1.0, args.max_seconds, args.seed)
        valid_wavs += wavs[:per_corpus]
        valid_rows += rows[:per_corpus]
    return train_wavs, train_rows, valid_wavs, valid_rows


def make_batches(lengths: list[int], max_samples: int, rng: random.Random) -> list[list[int]]:
    """Indices grouped by similar length so that ``rows x longest`` stays within ``max_samples``; shuffled."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    batches, cur = [], []
    for i in order:
        if cur and (len(cur) + 1) * lengths[i] > max_samples:
            batches.append(cur)
            cur = []
        cur.append(i)
    if cur:
        batches.append(cur)
    rng.shuffle(batches)
    return batches


def collate(wavs: list[np.ndarray], pad: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor, list[int]]:
    """``(audio [B, S], sample mask [B, S], frames per row)``: each row laid out as the tokenizer lays it out.

    ``wavs``: int16 (scaled by 1/32768) or float32 ``[T_b]`` waveforms.
    """
    left, right = pad
    frames = [num_frames(len(w)) for w in wavs]
    width = max(frames) * HOP_LENGTH + left + right
    audio = torch.zeros(len(wavs), width)
    mask = torch.zeros(len(wavs), width, dtype=torch.long)
    for b, w in enumerate(wavs):
        audio[b, left: left + len(w)] = torch.from_numpy(as_float(w))
        mask[b, : frames[b] * HOP_LENGTH + left + right] = 1
    return audio, mask, frames


def collate_features(feats: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, list[int]]:
    """``(inputs [B, F, 240], frame mask [B, F], frames per row)`` of per-utterance Conformer inputs ``[F_b, 240]``."""
    frames = [len(f) for f in feats]
    inputs = torch.zeros(len(feats), max(frames), feats[0].shape[1])
    mask = torch.zeros(len(feats), max(frames), dtype=torch.long)
    for b, f in enumerate(feats):
        inputs[b, : len(f)] = f
        mask[b, : len(f)] = 1
    return inputs, mask, frames


def ctc_min_frames(target: list[int]) -> int:
    """The fewest frames a CTC alignment of ``target`` needs: one per symbol plus a blank between repeats."""
    return len(target) + sum(a == b for a, b in zip(target, target[1:]))


def augment_config(args: argparse.Namespace) -> AugmentConfig:
    """The :class:`~training.augment.AugmentConfig` the command line's augmentation flags ask for."""
    aug = AugmentConfig(speeds=tuple(args.speed_perturb), vtlp=args.vtlp,
                        noise_snr=tuple(args.noise_snr) if args.noise_snr else None, noise_prob=args.noise_prob,
                        gain_db=args.gain_db, freq_masks=args.freq_masks, freq_mask_width=args.freq_mask_width)
    if aug.features and args.arch != "conformer":
        raise ValueError("--vtlp and --freq-masks augment log-mels: they need --arch conformer")
    return aug


class PhoneCTC(torch.nn.Module):
    """Encoder + dropout + linear phone head; ``forward(inputs, mask) -> log-probs [B, F, V]``.

    The encoder is a ``HubertModel`` (``inputs``: audio ``[B, S]``, ``mask`` per sample) or a
    ``Wav2Vec2BertModel`` (``inputs``: stacked log-mels ``[B, F, 240]``, ``mask`` per frame).
    """

    def __init__(self, encoder: torch.nn.Module, num_symbols: int, dropout: float = 0.1) -> None:
        super().__init__()
        self.encoder = encoder
        self.dropout = torch.nn.Dropout(dropout)
        self.head = torch.nn.Linear(encoder.config.hidden_size, num_symbols)

    def forward(self, inputs: torch.Tensor, mask: torch.Tensor, time_mask: torch.Tensor | None = None
                ) -> torch.Tensor:
        if isinstance(self.encoder, Wav2Vec2BertModel):
            out = self.encoder(input_features=inputs, attention_mask=mask, mask_time_indices=time_mask)
        else:
            out = self.encoder(inputs, attention_mask=mask, mask_time_indices=time_mask)
        return self.head(self.dropout(out.last_hidden_state)).log_softmax(-1)


def greedy(log_probs: torch.Tensor, frames: list[int]) -> list[list[int]]:
    """Best path per row of ``[B, F, V]`` with repeats merged and blanks (id 0) removed."""
    out = []
    for row, n in zip(log_probs.argmax(-1), frames, strict=True):
        ids = torch.unique_consecutive(row[:n]).tolist()
        out.append([i for i in ids if i != 0])
    return out


def phone_tokenizer(model: PhoneCTC, symbols: list[str]) -> UnitTokenizer:
    """A ``"phone"`` :class:`~codec.units.UnitTokenizer` from a trained Conformer :class:`PhoneCTC` (copied):
    unit ``f`` = the head's best symbol at frame ``f`` of the last layer (``symbols[0]`` the blank)."""
    enc = model.encoder
    if not isinstance(enc, Wav2Vec2BertModel):
        raise ValueError("phone units need a Conformer (Wav2Vec2BertModel) encoder")
    cfg = enc.config
    tok = UnitTokenizer(UnitConfig(kind="phone", num_units=len(symbols), feature_dim=cfg.hidden_size,
                                   feature_layer=cfg.num_hidden_layers, conformer=conformer_arch(cfg),
                                   phones=list(symbols)), conformer=copy.deepcopy(enc))
    tok.set_phone_head(model.head.weight, model.head.bias)
    return tok


# --- the recipe --------------------------------------------------------------------------------------------------

def finetune(args: argparse.Namespace) -> dict[str, Any]:
    corpora, out = [Path(c) for c in args.corpus.split(",") if c.strip()], Path(args.out)
    if not corpora:
        raise ValueError("--corpus names no corpus")
    out.mkdir(parents=True, exist_ok=True)
    seed_everything(args.seed)
    if args.threads:
        torch.set_num_threads(args.threads)
    conformer = args.arch == "conformer"
    if args.phone_units and not conformer:
        raise ValueError("--phone-units needs --arch conformer")
    aug = augment_config(args)
    init = args.init if args.init is not None or conformer else str(DEFAULT_HUBERT)
    base = UnitTokenizer.from_pretrained(init) if init is not None else None
    if base is not None and not conformer and base.hubert is None:
        raise ValueError(f"{init} holds {base.kind!r} units; fine-tuning needs a HuBERT tokenizer")
    if base is not None and conformer and base.conformer is None:
        raise ValueError(f"{init} holds {base.kind!r} units; --arch conformer starts from a Conformer tokenizer")
    train_wavs, train_rows, valid_wavs, valid_rows = read_corpora(corpora, args)
    table = phone_table(train_rows + valid_rows, out / "phones.json")
    symbols = [BLANK] + sorted({p for r in train_rows for p in table[f"{r['lang']}\t{r['text']}"]})
    if args.phone_units and base is not None and base.kind == "phone" and base.config.phones:
        # Keep the recognizer's inventory, so its unit ids (and a decoder's vocabulary built on them) stay valid;
        # a phone it does not know is left out of the targets.
        unknown = sorted(set(symbols) - set(base.config.phones))
        if unknown:
            log.warning("%s does not know the phone(s) %s; they are left out of the targets", init, unknown)
        symbols = list(base.config.phones)
    index = {s: i for i, s in enumerate(symbols)}

    def targets(rows: list[dict[str, Any]]) -> list[list[int]]:
        return [[index[p] for p in table[f"{r['lang']}\t{r['text']}"] if p in index] for r in rows]

    train_y, valid_y = targets(train_rows), targets(valid_rows)
    log.info("%d train utterances (%.2f h), %d valid; %d phone symbols", len(train_wavs), _hours(train_wavs),
             len(valid_wavs), len(symbols))

    if conformer:
        if base is not None:  # continue a trained Conformer (its architecture, not --hidden / --layers)
            assert base.conformer is not None
            encoder: torch.nn.Module = base.conformer
            encoder.config.mask_time_prob = args.mask_prob
        else:
            encoder = Wav2Vec2BertModel(small_conformer_config(
                hidden_size=args.hidden, num_layers=args.layers, intermediate_size=4 * args.hidden,
                mask_time_prob=args.mask_prob))
        # log-mels once per utterance (cheap to keep: 240 floats per 20 ms); an augmented waveform needs its own
        train_x = [] if aug.waveform else [conformer_inputs(torch.from_numpy(as_float(w)))
                                           for w in tqdm(train_wavs, desc="log-mels", unit="utt")]
        valid_x = [conformer_inputs(torch.from_numpy(as_float(w))) for w in valid_wavs]
    else:
        assert base is not None and base.hubert is not None
        encoder = base.hubert
        encoder.config.mask_time_prob = args.mask_prob
        pad = hubert_padding(encoder.config)
    model = PhoneCTC(encoder, len(symbols))
    if base is not None and base.kind == "phone":
        if base.config.phones != symbols:
            log.warning("%s has another phone inventory; its head is not reused", init)
        else:
            with torch.no_grad():
                model.head.weight.copy_(base.head_weight)
                model.head.bias.copy_(base.head_bias)
    model.encoder.train()
    log.info("%s encoder: %.2f M parameters", args.arch, sum(p.numel() for p in encoder.parameters()) / 1e6)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, betas=(0.9, 0.98), weight_decay=0.01)

    def batch(wavs: list[np.ndarray], feats: list[torch.Tensor], idx: list[int]
              ) -> tuple[torch.Tensor, torch.Tensor, list[int]]:
        if conformer:
            return collate_features([feats[i] for i in idx])
        return collate([wavs[i] for i in idx], pad)

    max_samples = int(args.max_seconds * SAMPLE_RATE)
    mask_rng = np.random.default_rng(args.seed + 1)
    aug_rng = np.random.default_rng(args.seed + 2)  # every augmentation draw; saved and restored like mask_rng

    def train_batch(idx: list[int]) -> tuple[torch.Tensor, torch.Tensor, list[int]]:
        """A training batch, augmented as ``aug`` says (validation batches never are)."""
        if not (aug.waveform or aug.features):
            return batch(train_wavs, train_x if conformer else [], idx)
        if aug.waveform:  # the CTC targets stay; lengths stay within --max-seconds and what CTC needs
            wavs = [augment_waveform(train_wavs[i], aug, aug_rng,
                                     min_samples=(ctc_min_frames(train_y[i]) - 1) * HOP_LENGTH + 1,
                                     max_samples=max(max_samples, len(train_wavs[i]))) for i in idx]
            if not conformer:
                return collate(wavs, pad)
            feats = [conformer_inputs(torch.from_numpy(w)) for w in wavs]
        else:
            feats = [train_x[i] for i in idx]
        return collate_features([augment_features(f, aug, aug_rng) for f in feats])

    if aug.waveform or aug.features:
        log.info("training augmentation: %s", aug)
    state_path = out / "state" / "ctc_state.pt"
    step, elapsed0, history, epoch, pos = 0, 0.0, [], 0, 0
    if state_path.is_file():
        state = torch.load(state_path, weights_only=True)
        if state["symbols"] != symbols or state.get("arch", "hubert") != args.arch:
            raise ValueError(f"{state_path} was written for another phone inventory or encoder; "
                             f"delete {out / 'state'}")
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        step, elapsed0, history = int(state["step"]), float(state["elapsed_s"]), state["history"]
        epoch, pos = int(state["epoch"]), int(state["pos"])
        mask_rng.bit_generator.state = json.loads(state["mask_rng"])
        if "aug_rng" in state:  # states written before augmentation existed lack it (and had no draws)
            aug_rng.bit_generator.state = json.loads(state["aug_rng"])
        torch.set_rng_state(state["torch_rng"])
        log.info("resuming CTC fine-tuning at step %d (%.0f s done)", step, elapsed0)
    t0 = time.time() - elapsed0
    budget = args.max_minutes * 60 if args.max_minutes else math.inf

    def progress() -> float:  # fraction of the run done: steps or the time budget, whichever is further
        return max(step / args.steps, (time.time() - t0) / budget)

    def lr_now() -> float:
        if step < args.warmup:
            return args.lr * (step + 1) / args.warmup
        return args.lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress()))))

    def evaluate() -> float:
        model.eval()
        errors = total = 0
        with torch.no_grad():
            for a in range(0, len(valid_wavs), 8):
                audio, mask, frames = batch(valid_wavs, valid_x if conformer else [],
                                            list(range(a, min(a + 8, len(valid_wavs)))))
                for hyp, ref in zip(greedy(model(audio, mask), frames), valid_y[a: a + 8], strict=True):
                    errors += Levenshtein.distance(hyp, ref)
                    total += len(ref)
        model.train()
        return errors / max(1, total)

    def save_state() -> None:  # atomically: a run killed while writing keeps the previous state
        state = {"step": step, "model": model.state_dict(), "opt": opt.state_dict(), "symbols": symbols,
                 "arch": args.arch,
                 "history": history, "elapsed_s": time.time() - t0, "epoch": epoch, "pos": pos,
                 "mask_rng": json.dumps(mask_rng.bit_generator.state),
                 "aug_rng": json.dumps(aug_rng.bit_generator.state), "torch_rng": torch.get_rng_state()}
        state_path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(state_path, lambda p: torch.save(state, p))

    trained = step
    bar = tqdm(total=args.steps, initial=step, desc="phone CTC", unit="step")
    window: list[float] = []
    while step < args.steps and progress() < 1.0:
        # planned at the longest a speed perturbation can make each utterance: a batch stays within the budget
        batches = make_batches([math.ceil(len(w) * aug.max_stretch) for w in train_wavs],
                               int(args.batch_seconds * SAMPLE_RATE), random.Random(args.seed + epoch))
        while pos < len(batches) and step < args.steps and progress() < 1.0:
            idx = batches[pos]
            audio, mask, frames = train_batch(idx)
            time_mask = span_mask(frames, max(frames), args.mask_prob, 10, mask_rng) if args.mask_prob else None
            log_probs = model(audio, mask, time_mask)  # [B, F, V]
            ys = [train_y[i] for i in idx]
            loss = torch.nn.functional.ctc_loss(
                log_probs.transpose(0, 1), torch.tensor([s for y in ys for s in y]), torch.tensor(frames),
                torch.tensor([len(y) for y in ys]), blank=0, reduction="mean", zero_infinity=True)
            for g in opt.param_groups:
                g["lr"] = lr_now()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            opt.step()
            step, pos = step + 1, pos + 1
            window.append(float(loss.detach()))
            bar.update(1)
            bar.set_postfix(loss=f"{window[-1]:.3f}")
            if step % args.eval_every == 0 or step == args.steps:
                rec = {"step": step, "loss": float(np.mean(window)), "valid_per": evaluate(), "lr": lr_now(),
                       "elapsed_s": round(time.time() - t0, 1)}
                history.append(rec)
                window.clear()
                log.info("step %d: ctc loss %.3f, valid phone error rate %.3f, %.0f s", step, rec["loss"],
                         rec["valid_per"], rec["elapsed_s"])
                save_state()
        if pos >= len(batches):
            epoch, pos = epoch + 1, 0
    bar.close()
    if step != trained and step % args.eval_every:
        save_state()  # the weights the units come from
    final_per = evaluate()
    if not history or history[-1]["step"] != step:
        history.append({"step": step, "loss": float(np.mean(window)) if window else math.nan, "valid_per": final_per,
                        "lr": lr_now(), "elapsed_s": round(time.time() - t0, 1)})
    log.info("fine-tuned %d steps in %.0f s: valid phone error rate %.3f", step, time.time() - t0, final_per)

    model.eval()
    if conformer and base is not None:  # the saved architecture keeps its mask embedding (a weight it holds)
        assert base.config.conformer is not None
        model.encoder.config.mask_time_prob = base.config.conformer["mask_time_prob"]
    t = time.time()
    kmeans_wavs = [] if args.phone_units else _take_hours(train_wavs, args.kmeans_hours)
    if args.phone_units:
        tok = phone_tokenizer(model, symbols)
    elif conformer:
        tok = fit_conformer_units(model.encoder, kmeans_wavs, args.clusters, args.feature_layer, args.seed)
    else:
        assert base is not None and base.config.hubert is not None
        tok = fit_hubert_units(model.encoder, kmeans_wavs, args.clusters, args.feature_layer, args.seed)
        assert tok.config.hubert is not None
        tok.config.hubert["mask_time_prob"] = base.config.hubert["mask_time_prob"]
    tok.config.info.update(corpus=",".join(map(str, corpora)), init=str(init) if init is not None else "scratch",
                           finetuned="phone CTC (espeak-ng IPA)",
                           steps=step, train_hours=_hours(train_wavs), kmeans_hours=_hours(kmeans_wavs),
                           valid_phone_error_rate=round(final_per, 4), phone_symbols=len(symbols))
    tok.save_pretrained(out / args.units_name)
    with png_figure(out / "finetune.png", 1, 2, figsize=(10, 3.6)) as (_, ax):
        steps = [h["step"] for h in history]
        ax[0].plot(steps, [h["loss"] for h in history])
        ax[0].set_title("phone CTC loss (train)")
        ax[1].plot(steps, [h["valid_per"] for h in history])
        ax[1].set_title("valid phone error rate (greedy)")
        for a in ax:
            a.set_xlabel("step")
            a.grid(alpha=0.3)
    report = {"args": vars(args), "steps": step, "seconds": round(time.time() - t0, 1),
              "kmeans_seconds": round(time.time() - t, 1), "valid_phone_error_rate": final_per,
              "symbols": symbols, "history": history}
    atomic_write_text(out / "training.json", json.dumps(report, indent=1, ensure_ascii=False))
    return report


def main_parser() -> argparse.ArgumentParser:
    """The command line's arguments (``finetune(main_parser().parse_args(argv))`` runs it without logging set-up)."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--corpus", required=True, help="manifest corpus (train split trains, valid split scores); "
                   "several as A,B: each gives up to --hours and a share of --valid-utts")
    p.add_argument("--out", required=True, help="writes OUT/units, OUT/finetune.png, OUT/training.json, OUT/state")
    p.add_argument("--init", default=None, help="the unit tokenizer to start from: a HuBERT one for --arch hubert "
                   "(default: the shipped one), a Conformer or phone one for --arch conformer (default: scratch)")
    p.add_argument("--arch", choices=("hubert", "conformer"), default="hubert",
                   help="hubert: fine-tune --init; conformer: train a log-mel Conformer (from scratch or --init)")
    p.add_argument("--phone-units", action="store_true",
                   help="write 'phone' units (the CTC head's frame-wise decisions) instead of k-means ones")
    p.add_argument("--hidden", type=int, default=144, help="Conformer width (feed-forward 4x)")
    p.add_argument("--layers", type=int, default=6, help="Conformer layers")
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--max-minutes", type=float, default=0.0, help="time budget; the cosine decay ends with it")
    p.add_argument("--batch-seconds", type=float, default=32.0, help="padded audio per batch")
    p.add_argument("--max-seconds", type=float, default=10.0, help="longer utterances are left out")
    p.add_argument("--hours", type=float, default=10.0, help="training audio at most (per corpus)")
    p.add_argument("--lr", type=float, default=5e-4)
    p.add_argument("--warmup", type=int, default=100)
    p.add_argument("--mask-prob", type=float, default=0.05, help="fraction of frames starting a 10-frame mask")
    aug = p.add_argument_group("training augmentation (training batches only; all off by default: "
                               "training.augment)")
    aug.add_argument("--speed-perturb", type=_floats, default=(), metavar="F,F,...",
                     help="speed factors drawn per utterance, e.g. 0.9,1.0,1.1 (tempo and pitch; soxr resampling)")
    aug.add_argument("--vtlp", type=float, default=0.0, metavar="A",
                     help="vocal tract length perturbation: log-mel frequency warp by a factor in [1-A, 1+A]")
    aug.add_argument("--noise-snr", type=_floats, default=None, metavar="LO,HI",
                     help="white or pink noise at an SNR uniform in [LO, HI] dB")
    aug.add_argument("--noise-prob", type=float, default=1.0, help="fraction of utterances --noise-snr applies to")
    aug.add_argument("--gain-db", type=float, default=0.0, metavar="G",
                     help="gain uniform in [-G, G] dB (capped so that audio does not clip)")
    aug.add_argument("--freq-masks", type=int, default=0, metavar="N", help="SpecAugment frequency masks")
    aug.add_argument("--freq-mask-width", type=int, default=27, metavar="F", help="at most F mel bands each")
    p.add_argument("--eval-every", type=int, default=100)
    p.add_argument("--valid-utts", type=int, default=64)
    p.add_argument("--clusters", type=int, default=100)
    p.add_argument("--feature-layer", type=int, default=None, help="1-based; default num_layers // 2 + 1")
    p.add_argument("--kmeans-hours", type=float, default=1.0)
    p.add_argument("--units-name", default="units", help="OUT/NAME receives the tokenizer (a rerun of a finished run "
                   "only refits the k-means: another layer or K)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=0)
    return p


def _floats(text: str) -> tuple[float, ...]:
    """``"0.9,1.0,1.1"`` -> ``(0.9, 1.0, 1.1)`` (an argparse type)."""
    try:
        return tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from e


def main(argv: list[str] | None = None) -> None:
    args = main_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S")
    finetune(args)


if __name__ == "__main__":
    main()
