"""Per-model pieces of the baseline trainer: the loss module the engine drives, batches, the HiFi-GAN step,
and evaluation (ASR: greedy CER/WER; LAS with a CTC head: also the valid attention and CTC losses and the CER of
the CTC head's greedy transcripts; LAS, Tacotron 2: alignment PNGs; TTS: valid mel L1; HiFi-GAN: mel L1 of
resynthesis).

Batches (tensors on the device) by model, ``B`` utterances, ``T`` frames, ``U`` characters, ``L`` symbols::

    ctc, rnnt     features [B, T, n_mels], lengths [B], targets [B, U] (0-padded), target_lengths [B]
    las           features, lengths, targets [B, U + 1] (characters, then the end id; 0-padded), attention_weight
                  (the guided attention weight: LASConfig's, 0 outside guided_attention_start..guided_attention_steps)
    tacotron2     text_ids [B, L], text_lengths [B], mels [B, T, n_mels], mel_lengths [B], attention_weight
    fastspeech2   text_ids, text_lengths, durations [B, L], pitch [B, T], energy [B, T], mels [B, T, n_mels]
    hifigan       wav [B, S] (random segments; the generator reads their log-mel)
    translatotron src_mel [B, T_s, n_mels], src_lengths, tgt_mel [B, T, n_mels], tgt_lengths, source_ids [B, U_s],
                  target_ids [B, U_t] (0-padded characters of both sides, for the auxiliary decoders),
                  attention_weight
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jiwer
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from alm.textnorm import normalize_for_eval
from codec.features import FeatureConfig
from legacy_seq2seq.alignment_plot import plot_alignment
from legacy_seq2seq.hifigan import (
    MEL_LOSS_WEIGHT,
    LogMel,
    MultiPeriodDiscriminator,
    MultiScaleDiscriminator,
    discriminator_loss,
    multi_resolution_stft_loss,
)
from legacy_seq2seq.hifigan import generator_loss as hifigan_generator_loss
from legacy_seq2seq.inference import las_token_ids
from legacy_seq2seq.las_decoding import greedy_decode as las_greedy_decode
from legacy_seq2seq.text import CharVocab
from training.legacy.config import ASR_MODELS, LegacyTrainConfig
from training.legacy.data import NpyCache, Utterance, pad_stack

log = logging.getLogger(__name__)


def text_ids(vocab: CharVocab, text: str) -> list[int]:
    """Ids of ``text``'s characters that are in ``vocab`` (valid and test text may hold unseen ones)."""
    known = set(vocab.chars)
    return vocab.encode("".join(c for c in text if c in known))


@dataclass
class LegacyData:
    """What a run's batches and evaluations read."""

    kind: str
    vocab: CharVocab | None
    features: FeatureConfig
    train: list[Utterance]
    valid: list[Utterance]
    mels: NpyCache
    prosody: NpyCache | None = None
    durations: NpyCache | None = None
    targets: dict[str, Utterance] = field(default_factory=dict)  # Translatotron: source id -> target utterance
    ids: dict[str, list[int]] = field(default_factory=dict)  # utterance id -> symbol ids
    speakers: tuple[str, ...] = ()  # a multi-speaker TTS model's voices: batches carry speaker_ids

    def __post_init__(self) -> None:
        if self.vocab is not None:
            every = self.train + self.valid + list(self.targets.values())
            self.ids = {u.id: text_ids(self.vocab, u.text) for u in every}

            def spelled(u: Utterance) -> bool:  # a pair needs characters on both sides
                return bool(self.ids[u.id]) and (u.id not in self.targets or bool(self.ids[self.targets[u.id].id]))

            self.train = [u for u in self.train if spelled(u)]
            self.valid = [u for u in self.valid if spelled(u)]
        self.by_id = {u.id: u for u in self.train + self.valid}


class LossModule(nn.Module):
    """A text model with its training loss: ``forward(**batch)`` -> scalar loss (what the engine calls);
    :attr:`model` is the module that is saved. :attr:`terms` holds the last call's loss components worth logging
    (detached scalars; LAS with a CTC head or guided attention: ``attention_loss`` and ``ctc_loss`` and/or
    ``guided_loss``; empty otherwise)."""

    def __init__(self, kind: str, model: nn.Module) -> None:
        super().__init__()
        self.kind, self.model = kind, model
        self.terms: dict[str, torch.Tensor] = {}

    def forward(self, **b: Any) -> torch.Tensor:
        m = self.model
        dtype = next(m.parameters()).dtype  # a DeepSpeed bf16/fp16 engine holds low-precision weights
        b = {k: v.to(dtype) if isinstance(v, torch.Tensor) and v.is_floating_point() else v for k, v in b.items()}
        if self.kind in ("ctc", "rnnt"):
            return m.loss(b["features"], b["lengths"], b["targets"], b["target_lengths"])
        if self.kind == "las":
            out = m(b["features"], b["lengths"], b["targets"],
                    guided_attention_weight=float(b["attention_weight"]) if "attention_weight" in b else None)
            extra = {"ctc_loss": out.ctc_loss, "guided_loss": out.guided_loss}  # parts of a joint loss: log them all
            extra = {key: value.detach() for key, value in extra.items() if value is not None}
            self.terms = {"attention_loss": out.attention_loss.detach(), **extra} if extra else {}
            return out.loss
        if self.kind == "tacotron2":
            return m(b["text_ids"], b["text_lengths"], b["mels"], b["mel_lengths"], float(b["attention_weight"]),
                     speaker_ids=b.get("speaker_ids")).loss
        if self.kind == "translatotron":
            return m(b["src_mel"], b["src_lengths"], b["tgt_mel"], b["tgt_lengths"], b["source_ids"], b["target_ids"],
                     attention_loss_weight=float(b["attention_weight"])).loss
        return m(b["text_ids"], b["text_lengths"], b["durations"], b["pitch"], b["energy"], b["mels"],
                 speaker_ids=b.get("speaker_ids")).loss


def make_batch(data: LegacyData, ids: list[str], device: torch.device, attention_weight: float = 0.0
               ) -> dict[str, Any]:
    """The model inputs of utterances ``ids`` (see the module docstring)."""
    if data.kind == "translatotron":
        return translatotron_batch(data, ids, device, attention_weight)
    mels, mel_lengths = pad_stack([np.asarray(data.mels.load(i)) for i in ids])
    t = {"mels": torch.from_numpy(mels), "mel_lengths": torch.from_numpy(mel_lengths)}
    end = [las_token_ids(data.vocab)[2]] if data.kind == "las" else []
    symbols, symbol_lengths = pad_stack([np.array(data.ids[i] + end, dtype=np.int64) for i in ids])
    if data.kind in ASR_MODELS:
        b = {"features": t["mels"], "lengths": t["mel_lengths"], "targets": torch.from_numpy(symbols)}
        if data.kind != "las":
            b["target_lengths"] = torch.from_numpy(symbol_lengths)
        else:
            b["attention_weight"] = attention_weight
    else:
        b = {"text_ids": torch.from_numpy(symbols), "text_lengths": torch.from_numpy(symbol_lengths), **t}
        if data.speakers:  # a voice the model does not know (none in the corpus's train/valid) reads as voice 0
            index = {name: k for k, name in enumerate(data.speakers)}
            b["speaker_ids"] = torch.tensor([index.get(data.by_id[i].speaker, 0) for i in ids], dtype=torch.long)
        if data.kind == "tacotron2":
            b["attention_weight"] = attention_weight
        else:
            b.pop("mel_lengths")
            b["durations"] = torch.from_numpy(pad_stack([np.asarray(data.durations.load(i)) for i in ids])[0])
            prosody = pad_stack([np.asarray(data.prosody.load(i)).T for i in ids])[0]  # [B, T, 2]
            b["pitch"], b["energy"] = torch.from_numpy(prosody[..., 0]), torch.from_numpy(prosody[..., 1])
    return {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in b.items()}


def translatotron_batch(data: LegacyData, ids: list[str], device: torch.device, attention_weight: float = 0.0
                        ) -> dict[str, Any]:
    """Translatotron inputs: source and target log-mel and both sides' character ids (see the module docstring)."""
    tgt = [data.targets[i].id for i in ids]
    src_mel, src_lengths = pad_stack([np.asarray(data.mels.load(i)) for i in ids])
    tgt_mel, tgt_lengths = pad_stack([np.asarray(data.mels.load(i)) for i in tgt])
    source_ids = pad_stack([np.array(data.ids[i], dtype=np.int64) for i in ids])[0]
    target_ids = pad_stack([np.array(data.ids[i], dtype=np.int64) for i in tgt])[0]
    b = {"src_mel": src_mel, "src_lengths": src_lengths, "tgt_mel": tgt_mel, "tgt_lengths": tgt_lengths,
         "source_ids": source_ids, "target_ids": target_ids}
    return {**{k: torch.from_numpy(v).to(device) for k, v in b.items()}, "attention_weight": attention_weight}


def valid_batches(utts: list[Utterance], batch_seconds: float, max_batch_size: int) -> list[list[str]]:
    """Valid utterances cut in order into batches of at most ``batch_seconds`` / ``max_batch_size``."""
    batches: list[list[str]] = [[]]
    total = 0.0
    for u in utts:
        if batches[-1] and (total + u.seconds > batch_seconds or len(batches[-1]) >= max_batch_size):
            batches.append([])
            total = 0.0
        batches[-1].append(u.id)
        total += u.seconds
    return [b for b in batches if b]


def _error_rates(refs: list[tuple[str, str]], hyps: list[str]) -> dict[str, float]:
    """Corpus CER and WER (jiwer) of ``(reference, lang)`` pairs against hypotheses, on normalized text."""
    pairs = [(normalize_for_eval(r, lang), normalize_for_eval(h, lang)) for (r, lang), h in zip(refs, hyps)]
    pairs = [(r, h) for r, h in pairs if r]
    if not pairs:
        return {}
    r, h = [p[0] for p in pairs], [p[1] for p in pairs]
    return {"cer": float(jiwer.cer(r, h)), "wer": float(jiwer.wer(r, h))}


@torch.no_grad()
def evaluate(data: LegacyData, module: LossModule, step: int, out: Path | None, cfg: LegacyTrainConfig,
             device: torch.device) -> tuple[dict[str, float], list[dict[str, str]]]:
    """Valid loss and the model's own measures at ``step``; returns ``(metrics, ASR samples)``.

    Writes ``out/alignments/step-N.png`` for LAS and Tacotron 2 (the first valid utterance's attention) unless
    ``out`` is None.
    """
    model, kind = module.model, data.kind
    was_training = model.training
    model.eval()
    valid = data.valid[: cfg.eval_utterances]
    metrics: dict[str, float] = {}
    samples: list[dict[str, str]] = []
    total, count, l1_sum, l1_frames = 0.0, 0, 0.0, 0.0
    term_sums: dict[str, float] = {}
    for ids in valid_batches(valid, cfg.batch_seconds, cfg.max_batch_size):
        b = make_batch(data, ids, device)
        module.terms = {}
        total, count = total + float(module(**b)) * len(ids), count + len(ids)
        for key, value in module.terms.items():
            term_sums[key] = term_sums.get(key, 0.0) + float(value) * len(ids)
        if kind == "tacotron2":
            o = model(b["text_ids"], b["text_lengths"], b["mels"], b["mel_lengths"], speaker_ids=b.get("speaker_ids"))
            mask = (torch.arange(b["mels"].shape[1], device=device)[None] < b["mel_lengths"][:, None])[..., None]
            l1_sum += float(((o.mel_after - b["mels"]).abs() * mask).sum())
            l1_frames += float(mask.sum()) * b["mels"].shape[2]
        elif kind == "translatotron":
            o = model(b["src_mel"], b["src_lengths"], b["tgt_mel"], b["tgt_lengths"])
            mask = (torch.arange(b["tgt_mel"].shape[1], device=device)[None] < b["tgt_lengths"][:, None])[..., None]
            l1_sum += float(((o.mel_after - b["tgt_mel"]).abs() * mask).sum())
            l1_frames += float(mask.sum()) * b["tgt_mel"].shape[2]
        elif kind == "fastspeech2":
            o = model(b["text_ids"], b["text_lengths"], b["durations"], b["pitch"], b["energy"], b["mels"],
                      speaker_ids=b.get("speaker_ids"))
            frames = float(o.mel_lengths.sum())
            l1_sum, l1_frames = l1_sum + float(o.mel_loss) * frames, l1_frames + frames
    if count:
        metrics["valid_loss"] = total / count
        metrics.update({f"valid_{key}": value / count for key, value in term_sums.items()})
    if l1_frames:
        metrics["mel_l1"] = l1_sum / l1_frames
    if valid and out is not None and kind in ("las", "tacotron2", "translatotron"):
        b = make_batch(data, [valid[0].id], device)
        if kind == "las":
            att = model(b["features"], b["lengths"], b["targets"]).attention[0]  # [U, T']
            labels = ("listener frame", "output character")
        elif kind == "translatotron":
            att = model(b["src_mel"], b["src_lengths"], b["tgt_mel"], b["tgt_lengths"]).alignments[0]  # [T_r, T']
            labels = ("source encoder frame", "decoder step")
        else:
            att = model(b["text_ids"], b["text_lengths"], b["mels"], b["mel_lengths"],
                        speaker_ids=b.get("speaker_ids")).alignments[0]  # [T_r, L]
            labels = ("text symbol", "decoder step")
        plot_alignment(att, out / "alignments" / f"step-{step}.png", title=f"{kind} step {step}: {valid[0].id}",
                       xlabel=labels[0], ylabel=labels[1])
    if kind in ASR_MODELS and cfg.num_samples:
        chosen = data.valid[: cfg.num_samples]
        hyps = [decode(model, kind, data, u, device) for u in chosen]
        metrics.update(_error_rates([(u.text, u.lang) for u in chosen], hyps))
        samples = [{"id": u.id, "reference": u.text, "hypothesis": h} for u, h in zip(chosen, hyps)]
        if kind == "las" and getattr(model, "ctc_head", None) is not None:  # has the listener learned to align?
            ctc_hyps = [decode(model, "las_ctc", data, u, device) for u in chosen]
            ctc_rates = _error_rates([(u.text, u.lang) for u in chosen], ctc_hyps)
            metrics.update({f"ctc_{key}": value for key, value in ctc_rates.items()})
            for sample, h in zip(samples, ctc_hyps):
                sample["ctc_hypothesis"] = h
    model.train(was_training)
    return metrics, samples


@torch.no_grad()
def decode(model: nn.Module, kind: str, data: LegacyData, utt: Utterance, device: torch.device) -> str:
    """Greedy transcript of one cached utterance (``kind="las_ctc"``: of a LAS model's CTC head)."""
    feats = torch.from_numpy(np.array(data.mels.load(utt.id)))[None].to(device)
    lengths = torch.tensor([feats.shape[1]], device=device)
    if kind == "las":
        ids = [i for i in las_greedy_decode(model, feats, lengths)[0].tokens if 0 < i < len(data.vocab)]
    elif kind == "las_ctc":
        ids = [i for i in model.ctc_greedy_decode(feats, lengths)[0] if 0 < i < len(data.vocab)]
    else:
        ids = model.greedy_decode(feats, lengths)[0]
    return data.vocab.decode(ids)


# --- HiFi-GAN -------------------------------------------------------------------------------------------------
class Discriminators(nn.Module):
    """HiFi-GAN's multi-period and multi-scale discriminators as one module (one optimizer):
    ``wav [B, S]`` -> (all logits, all feature maps)."""

    def __init__(self, config: Any) -> None:
        super().__init__()
        self.mpd, self.msd = MultiPeriodDiscriminator(config), MultiScaleDiscriminator(config)

    def forward(self, wav: torch.Tensor) -> tuple[list[torch.Tensor], list[list[torch.Tensor]]]:
        (l1, f1), (l2, f2) = self.mpd(wav), self.msd(wav)
        return l1 + l2, f1 + f2


def gan_step(g: Any, d: Any, mel_fn: LogMel, wav: torch.Tensor, adversarial: bool = True) -> dict[str, float]:
    """One HiFi-GAN update: discriminators on real vs generated segments, then the generator (adversarial +
    feature matching + mel L1). ``g`` and ``d`` are engines; returns the losses and the generator's grad norm
    (NaN where an update was skipped for a non-finite loss).

    ``adversarial=False`` is the warm-up: the discriminators are not run and the generator alone learns
    ``45 * (mel L1 + multi-resolution STFT loss)``.
    """
    hop = mel_fn.features.hop_length
    frames = wav.shape[1] // hop
    real = wav[:, : frames * hop]
    mel = mel_fn(real)[..., :frames]  # [B, n_mels, frames]: centred frames, the last one dropped
    fake = g(mel=mel)
    nan = float("nan")
    if not adversarial:
        mel_l1 = F.l1_loss(mel_fn(fake)[..., :frames], mel)
        stft = multi_resolution_stft_loss(fake, real)
        total = MEL_LOSS_WEIGHT * (mel_l1 + stft)
        g_ok = g.all_finite(total.detach())
        if g_ok:
            g.backward(total)
        grad_norm = g.step(apply=g_ok)
        return {"loss": total.item() if g_ok else nan, "train_mel_l1": mel_l1.item(),
                "train_stft": stft.item(), "grad_norm": grad_norm}
    real_logits, _ = d(wav=real)
    fake_logits, _ = d(wav=fake.detach())
    d_loss = discriminator_loss(real_logits, fake_logits)
    d_ok = d.all_finite(d_loss.detach())
    if d_ok:
        d.backward(d_loss)
    d.step(apply=d_ok)
    fake_logits, fake_fmaps = d(wav=fake)
    with torch.no_grad():
        _, real_fmaps = d(wav=real)
    loss = hifigan_generator_loss(fake_logits, real_fmaps, fake_fmaps, mel_fn(fake)[..., :frames], mel)
    g_ok = g.all_finite(loss.total.detach())
    if g_ok:
        g.backward(loss.total)
    grad_norm = g.step(apply=g_ok)
    d.optimizer.zero_grad(set_to_none=True)  # the generator's loss left gradients in the discriminators
    return {"loss": loss.total.item() if g_ok else nan, "d_loss": d_loss.item() if d_ok else nan,
            "train_mel_l1": loss.mel.item(), "grad_norm": grad_norm}


@torch.no_grad()
def evaluate_vocoder(generator: nn.Module, data: LegacyData, cfg: LegacyTrainConfig, device: torch.device
                     ) -> dict[str, float]:
    """Mean L1 between valid utterances' log-mel and the log-mel of the generator's resynthesis of it."""
    was_training = generator.training
    generator.eval()
    mel_fn = LogMel(data.features).to(device)
    errors = []
    for u in data.valid[: cfg.eval_utterances]:
        mel = torch.from_numpy(np.array(data.mels.load(u.id))).T[None].to(device)  # [1, n_mels, F]
        errors.append(float((mel_fn(generator(mel))[..., : mel.shape[-1]] - mel).abs().mean()))
    generator.train(was_training)
    return {"mel_l1": float(np.mean(errors))} if errors else {}
