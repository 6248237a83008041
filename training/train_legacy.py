"""Train a classic baseline on a corpus: CTC, RNN-T, LAS, Tacotron 2, FastSpeech 2, HiFi-GAN or Translatotron.

    python -m training.train_legacy ctc --config training/configs/legacy_ctc.yaml [--corpus DIR --out DIR] [--flags]

Setup -> train -> save, visibly:

1. utterances of the chosen languages (ASR models: those tagged ``asr``; TTS: ``tts``; HiFi-GAN: all;
   Translatotron: ``source_lang`` utterances tagged ``s2st`` with their ``translation_id`` partner as target) up to
   ``max_seconds``; their log-mel is computed once into a resumable .npy cache (:mod:`training.legacy.data`);
2. a :class:`legacy_seq2seq.text.CharVocab` of the train split's normalized text, or with ``phonemes`` (Tacotron 2,
   FastSpeech 2) of its espeak-ng IPA phones (:func:`codec.word_phones.phonemize`, cached in
   ``CACHE/phonemes.json``); FastSpeech 2: the vocabulary of the Tacotron 2 or CTC model in ``durations_from``,
   whose attention or forced alignment gives its durations (:mod:`training.legacy.ctc_alignment`), or for
   ``phonemes`` the forced alignment of the phones by a ``"phone"`` unit tokenizer (the ALM's phone recognizer,
   ``codec/pretrained/units/phone``: no baseline has to be trained first); pitch and energy as described in
   :mod:`training.legacy.prosody`);
3. the model at its preset size (:func:`training.legacy.config.model_config`) inside a loss module, driven by
   :func:`training.distributed.make_engine` (plain or DeepSpeed; HiFi-GAN's two optimizers: plain only);
   AdamW, linear warmup then cosine decay, clipping, gradient accumulation, non-finite steps skipped and counted;
   LAS with ``ctc_weight > 0`` (``model_overrides``) optimizes the joint CTC-attention loss and logs its
   ``attention_loss`` and ``ctc_loss`` next to it; with ``guided_attention_weight > 0`` (``model_overrides``) it
   adds the guided attention loss from step ``guided_attention_start`` to ``guided_attention_steps`` and logs
   ``guided_loss`` (all steps);
4. every ``eval_every`` steps: valid loss; ASR: greedy CER/WER of a few valid utterances, their hypotheses logged
   and appended to ``OUT/samples.jsonl``; LAS, Tacotron 2: ``OUT/alignments/step-N.png``; TTS: valid mel L1;
   HiFi-GAN: mel L1 of resynthesis; ``OUT/training_curves.png``;
5. every ``ckpt_every`` steps an atomic ``OUT/checkpoints/step-NNNNNNN`` (``model/`` as exported, optimizer(s),
   RNG and data-stream state in ``trainer_state.pt``, written last, loaded with ``weights_only=True``); the same
   command resumes from the newest readable one with the same data order. ``OUT/final`` is the model's
   ``save_pretrained`` directory plus ``vocab.json`` and ``features.json``: :func:`legacy_seq2seq.inference.load_legacy`
   loads it alone.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from codec.audio import load_audio
from codec.features import FeatureConfig
from codec.units import UnitTokenizer
from legacy_seq2seq.ctc import CTCModel
from legacy_seq2seq.hifigan import LogMel
from legacy_seq2seq.inference import MODEL_CLASSES, load_features, load_legacy, normalize_text
from legacy_seq2seq.tacotron2 import Tacotron2
from legacy_seq2seq.text import CharVocab
from training.config import add_config_arguments, config_from_arguments
from training.data.corpus import read_manifest
from training.distributed import broadcast, init_process_group, make_engine, pick_device, process_info
from training.finetune_units import phone_table
from training.legacy.checkpoints import export_final, plot_history, resume_checkpoint, save_checkpoint
from training.legacy.config import ASR_MODELS, LANGS, MODELS, TTS_MODELS, LegacyTrainConfig, model_config
from training.legacy.ctc_alignment import UnalignableError, ctc_durations, is_phone_units, unit_durations
from training.legacy.data import (
    MIN_FRAMES,
    BatchStream,
    NpyCache,
    audio_segments,
    compute_log_mel,
    feature_cache,
    file_fingerprint,
    fingerprint,
    select_utterances,
)
from training.legacy.prosody import energy_target, pitch_target, tacotron_durations
from training.legacy.steps import (
    Discriminators,
    LegacyData,
    LossModule,
    evaluate,
    evaluate_vocoder,
    gan_step,
    make_batch,
)
from training.seed import seed_everything
from training.tensorboard import TensorBoard

log = logging.getLogger(__name__)

CLASS_NAMES = {"ctc": "CTCModel", "rnnt": "RNNTModel", "las": "LASModel", "tacotron2": "Tacotron2",  # model_class
               "fastspeech2": "FastSpeech2", "hifigan": "HiFiGANGenerator", "translatotron": "Translatotron"}


@dataclass
class LegacyResult:
    """What :func:`train` returns."""

    model: torch.nn.Module
    vocab: CharVocab | None
    history: list[dict[str, Any]]
    start_step: int  # 0 for a fresh run, the checkpoint's step for a resumed one
    final: Path  # OUT/final


def lr_at(step: int, cfg: LegacyTrainConfig, elapsed_s: float = 0.0) -> float:
    """Linear warmup to ``lr`` over ``warmup_steps``, then cosine decay to ``lr * min_lr_ratio`` at ``steps`` or,
    with a time budget (``max_minutes``), at whichever of the two comes first (``elapsed_s``: training seconds)."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    t = min(1.0, (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps))
    if cfg.max_minutes:
        t = max(t, min(1.0, elapsed_s / (60 * cfg.max_minutes)))
    return cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * t)))


def _optimizer(module: torch.nn.Module, cfg: LegacyTrainConfig, beta1: float = 0.9) -> torch.optim.AdamW:
    return torch.optim.AdamW(module.parameters(), lr=cfg.lr, betas=(beta1, cfg.beta2), weight_decay=cfg.weight_decay)


# --- data -----------------------------------------------------------------------------------------------------
def prepare_data(kind: str, corpus: Path, cfg: LegacyTrainConfig, vocab: CharVocab | None, features: FeatureConfig,
                 progress: bool) -> LegacyData:
    """Select utterances, fill the caches (log-mel; FastSpeech 2: prosody and durations) and wrap them."""
    records = read_manifest(corpus)
    task = "asr" if kind in ASR_MODELS else "tts" if kind in TTS_MODELS else "s2st" if kind == "translatotron" else None
    langs = (cfg.source_lang,) if kind == "translatotron" else cfg.lang_list()
    utts = [u for u in select_utterances(records, task, langs, normalize_text)
            if u.seconds <= cfg.max_seconds and u.split in ("train", "valid")]
    root = Path(cfg.cache_dir) if cfg.cache_dir else corpus / "legacy_features"
    if cfg.phonemes:  # the model reads phones: each utterance's text becomes its phone string
        phones = phone_strings(utts, root / "phonemes.json", progress)
        utts = [replace(u, text=phones[(u.lang, u.text)]) for u in utts]
    targets: dict[str, Any] = {}
    if kind == "translatotron":  # each source utterance's translation (another language, another voice)
        by_id = {r["id"]: r for r in records}
        partner = {u.id: by_id.get(by_id[u.id].get("translation_id", "")) for u in utts}
        wanted = [r for r in partner.values() if r is not None and r["lang"] != cfg.source_lang]
        spoken = {t.id: t for t in select_utterances(wanted, None, LANGS, normalize_text)
                  if t.seconds <= cfg.max_seconds}
        targets = {u.id: spoken[partner[u.id]["id"]] for u in utts
                   if partner[u.id] and partner[u.id]["id"] in spoken}
        utts = [u for u in utts if u.id in targets]
    mels = feature_cache(root, features)
    mels.fill(utts + list({t.id: t for t in targets.values()}.values()), lambda u: compute_log_mel(u, features),
              "log-mel", progress)
    utts = [u for u in utts if mels.load(u.id).shape[0] >= MIN_FRAMES]
    utts = [u for u in utts if u.id not in targets or mels.load(targets[u.id].id).shape[0] >= MIN_FRAMES]
    if vocab is None and kind != "hifigan":
        train_text = [u.text for u in utts if u.split == "train"] + [targets[u.id].text for u in utts
                                                                      if u.split == "train" and u.id in targets]
        vocab = CharVocab.from_texts(train_text)
    data = LegacyData(kind, vocab, features, [u for u in utts if u.split == "train"],
                      [u for u in utts if u.split == "valid"], mels, targets=targets)
    if kind == "fastspeech2":
        data.prosody = NpyCache(root / f"prosody-{fingerprint(asdict(features))}")

        def prosody(u: Any) -> np.ndarray:
            mel = np.asarray(mels.load(u.id))
            wav = load_audio(u.path, features.sample_rate, max_seconds=None).numpy()
            return np.stack([pitch_target(wav, features.sample_rate, features.hop_length, len(mel)),
                             energy_target(mel)])

        data.prosody.fill(data.train + data.valid, prosody, "pitch+energy", progress)
        aligner_dir = Path(cfg.durations_from)
        aligner = UnitTokenizer.from_pretrained(aligner_dir) if is_phone_units(aligner_dir) \
            else load_legacy(aligner_dir).model
        if not isinstance(aligner, Tacotron2 | CTCModel | UnitTokenizer):
            raise ValueError(f"durations_from={cfg.durations_from!r} holds a {type(aligner).__name__}: give a "
                             "trained Tacotron 2 or CTC model directory (or, with phonemes, 'phone' units)")
        data.durations = NpyCache(root / f"durations-{file_fingerprint(aligner_dir / 'model.safetensors')}")
        phone_index = ({p: i for i, p in enumerate(aligner.config.phones)}
                       if isinstance(aligner, UnitTokenizer) else {})

        def durations(u: Any) -> np.ndarray:
            mel = np.asarray(mels.load(u.id))
            if isinstance(aligner, UnitTokenizer):  # the phone recognizer's CTC posteriors, forced through the phones
                symbols = data.vocab.decode(data.ids[u.id])
                if any(s not in phone_index for s in symbols):  # a phone the recognizer never learned
                    return np.zeros(0, dtype=np.int64)
                wav = load_audio(u.path, aligner.config.sample_rate, max_seconds=None).numpy()
                try:
                    return unit_durations(aligner, [phone_index[s] for s in symbols], wav, len(mel))
                except UnalignableError:
                    return np.zeros(0, dtype=np.int64)
            if isinstance(aligner, CTCModel):
                try:
                    return ctc_durations(aligner, data.ids[u.id], mel)
                except UnalignableError:  # too many characters for its frames: no alignment, left out below
                    return np.zeros(0, dtype=np.int64)
            with torch.random.fork_rng():  # Tacotron 2's prenet dropout is always on: seed it per utterance
                torch.manual_seed(cfg.seed)
                return tacotron_durations(aligner, data.ids[u.id], mel)

        data.durations.fill(data.train + data.valid, durations, "durations", progress)
        aligned = {u.id for u in data.train + data.valid
                   if len(data.durations.load(u.id)) == len(data.ids[u.id])}
        if len(aligned) < len(data.train) + len(data.valid):
            log.warning("fastspeech2: %d utterances had no alignment (more symbols than the aligner's frames, or "
                        "a phone it does not know) and are left out",
                        len(data.train) + len(data.valid) - len(aligned))
        data.train = [u for u in data.train if u.id in aligned]
        data.valid = [u for u in data.valid if u.id in aligned]
    log.info("%s: %d train / %d valid utterances (%.2f h of training audio)%s", kind, len(data.train),
             len(data.valid), sum(u.seconds for u in data.train) / 3600, f", {vocab}" if vocab else "")
    return data


def phone_strings(utts: list[Any], cache: Path, progress: bool) -> dict[tuple[str, str], str]:
    """``{(lang, text): phone string}`` for the utterances' normalized texts: espeak-ng IPA phones, one character
    each, ``|`` between words (what :func:`legacy_seq2seq.inference.phonemes_of` gives at inference), from the
    phone recognizer's cached table (:func:`training.finetune_units.phone_table`, JSON ``cache``)."""
    table = phone_table([{"lang": u.lang, "text": u.text} for u in utts], cache, progress)
    return {(u.lang, u.text): "".join(table[f"{u.lang}\t{u.text}"]) for u in utts}


# --- warm start -----------------------------------------------------------------------------------------------
def warm_start_source(kind: str, directory: str, vocab: CharVocab | None, features: FeatureConfig,
                      phonemes: bool = False) -> Any:
    """The trained model directory ``init_from`` names, checked against this run (same model, vocabulary and
    features as the run would otherwise use). A letters model may start a ``phonemes`` run: all but its symbol
    embedding carry over."""
    init = load_legacy(directory)
    if init.kind != CLASS_NAMES[kind]:
        raise ValueError(f"init_from={directory!r} holds a {init.kind}, not a {CLASS_NAMES[kind]}")
    if phonemes != getattr(init.model.config, "phonemes", False):
        if not phonemes:
            raise ValueError(f"init_from={directory!r} reads phonemes: add --phonemes (or start from a letters "
                             "model)")
    elif vocab is not None and init.vocab is not None and init.vocab.chars != vocab.chars:
        raise ValueError(f"init_from={directory!r} spells with another character vocabulary than this run's "
                         f"({len(init.vocab)} vs {len(vocab)} symbols)")
    if init.features != features and kind == "fastspeech2":
        raise ValueError(f"init_from={directory!r} reads other log-mel features ({init.features}) than its "
                         f"durations_from ({features})")
    return init


def load_warm_start(model: torch.nn.Module, source: torch.nn.Module, directory: str) -> None:
    """Copy ``source``'s weights into ``model``; only the speaker table (it starts at zero) and, when the input
    symbols changed (letters -> phonemes), the symbol embedding (as built) may be new."""
    state = source.state_dict()
    fresh = getattr(source.config, "phonemes", False) != getattr(model.config, "phonemes", False)
    if fresh:
        state = {k: v for k, v in state.items() if k != "embedding.weight"}
    missing, unexpected = model.load_state_dict(state, strict=False)
    new = [k for k in missing if not k.startswith("speaker_table.") and not (fresh and k == "embedding.weight")]
    if new or unexpected:
        raise ValueError(f"init_from={directory!r} does not fit this model: missing {new}, unexpected {unexpected}")
    log.info("weights from %s%s", directory, f" (new: {', '.join(missing)})" if missing else "")


# --- the loop -------------------------------------------------------------------------------------------------
def train(kind: str, corpus: str | Path, out: str | Path, cfg: LegacyTrainConfig, progress: bool = True
          ) -> LegacyResult:
    """Train (or resume) baseline ``kind`` on ``corpus``, writing checkpoints, plots and ``final`` under ``out``."""
    if kind not in MODELS:
        raise ValueError(f"unknown model {kind!r}; known: {', '.join(MODELS)}")
    corpus, out = Path(corpus), Path(out)
    cfg.validate()
    if kind == "hifigan" and (cfg.use_deepspeed() or cfg.grad_accum != 1):
        raise ValueError("HiFi-GAN trains two optimizers (generator, discriminators) in turn: it runs on the plain "
                         "engine with grad_accum=1 only; set engine=plain (and no ZeRO/fp16/offload, no launcher)")
    if kind == "fastspeech2" and not (cfg.durations_from and (Path(cfg.durations_from) / "config.json").is_file()):
        raise ValueError(f"FastSpeech 2 needs durations_from: a trained Tacotron 2 or CTC model directory (got "
                         f"{cfg.durations_from!r}); train one with `python -m training.train_legacy tacotron2` "
                         "(or `ctc`)")
    if cfg.phonemes and kind not in TTS_MODELS:
        raise ValueError(f"phonemes is for the TTS models ({', '.join(TTS_MODELS)}), not {kind}")
    if kind == "fastspeech2":
        phone_aligner = is_phone_units(cfg.durations_from)
        aligner_phonemes = phone_aligner or bool(json.loads((Path(cfg.durations_from) / "config.json").read_text(
            encoding="utf-8")).get("phonemes", False))
        if aligner_phonemes != cfg.phonemes:
            raise ValueError(f"durations_from={cfg.durations_from!r} aligns "
                             f"{'phonemes' if aligner_phonemes else 'letters'} but this run reads "
                             f"{'phonemes' if cfg.phonemes else 'letters'}: "
                             + ("add --phonemes" if aligner_phonemes else "give 'phone' units (codec/pretrained/"
                                "units/phone) or a Tacotron 2 trained with --phonemes"))
    info = process_info()
    device = pick_device(cfg, info)
    if cfg.use_deepspeed():
        info = init_process_group(cfg, device)
    out.mkdir(parents=True, exist_ok=True)
    seed_everything(cfg.seed)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)

    ckpt, loaded, trainer = resume_checkpoint(out)
    if loaded is not None and loaded.kind != CLASS_NAMES[kind]:
        raise ValueError(f"{out} holds a {loaded.kind} run, not {kind}: use another --out")
    if loaded is not None:
        model, vocab, features = loaded.model.train(), loaded.vocab, loaded.features
        log.info("resuming from %s (step %d)", ckpt, trainer["step"])
        ignored = {k: v for k, v in cfg.model_overrides.items() if getattr(model.config, k, v) != v}
        if ignored:  # e.g. a recipe that gained ctc_weight, resumed in a run directory trained without it
            log.warning("resuming keeps the checkpoint's model config: model_overrides %s are ignored (use a new "
                        "--out to train with them)", ignored)
    elif kind == "fastspeech2" and is_phone_units(cfg.durations_from):  # phones from the text, features ours
        vocab, features = None, FeatureConfig()
    elif kind == "fastspeech2":
        vocab, features = CharVocab.load(Path(cfg.durations_from) / "vocab.json"), load_features(cfg.durations_from)
    else:
        vocab, features = None, FeatureConfig()
    init = None
    if loaded is None and cfg.init_from:
        init = warm_start_source(kind, cfg.init_from, vocab, features, cfg.phonemes)
        features = init.features
        if cfg.phonemes == getattr(init.model.config, "phonemes", False):
            vocab = init.vocab
    if info.world_size > 1 and not info.is_main:
        torch.distributed.barrier()  # the main process fills the caches first
    data = prepare_data(kind, corpus, cfg, vocab, features, progress and info.is_main)
    if info.world_size > 1 and info.is_main:
        torch.distributed.barrier()
    if loaded is None:
        size = len(data.vocab) if data.vocab is not None else 0
        overrides = dict(cfg.model_overrides)
        if cfg.speaker_ids and kind in TTS_MODELS:
            overrides["speakers"] = tuple(sorted({u.speaker for u in data.train}))
        if cfg.phonemes:
            overrides["phonemes"] = True
        if init is not None:  # the warm start's sizes, with this run's overrides (its speakers, its symbols)
            if data.vocab is not None:
                overrides["vocab_size"] = size
            config = replace(init.model.config, **overrides)
        else:
            config = model_config(kind, cfg.preset, size, features.n_mels, overrides)
        model = MODEL_CLASSES[CLASS_NAMES[kind]](config)
        if init is not None:
            load_warm_start(model, init.model, cfg.init_from)
    if kind in TTS_MODELS:
        data.speakers = model.config.speakers
        if data.speakers:
            log.info("%s: %d voices (%s)", kind, len(data.speakers), ", ".join(data.speakers))
    if kind == "hifigan" and model.config.features != features:
        raise ValueError(f"the vocoder's mel parameters {model.config.features} differ from the features {features}")
    log.info("%s (%s): %.2fM parameters", kind, cfg.preset, sum(p.numel() for p in model.parameters()) / 1e6)

    discriminators, mel_fn = None, None
    if kind == "hifigan":
        discriminators = Discriminators(model.config)
        engines = [make_engine(model, _optimizer(model, cfg, 0.8), cfg, device),
                   make_engine(discriminators, _optimizer(discriminators, cfg, 0.8), cfg, device)]
        mel_fn = LogMel(features).to(device)
        seconds = {u.id: cfg.vocoder_segment_s for u in data.train}
    else:
        module = LossModule(kind, model)
        engines = [make_engine(module, _optimizer(module, cfg), cfg, device)]
        seconds = {u.id: u.seconds + (data.targets[u.id].seconds if u.id in data.targets else 0.0)
                   for u in data.train}
    engine, info = engines[0], engines[0].info
    stream = BatchStream(seconds, cfg.batch_seconds, cfg.max_batch_size, cfg.seed)
    step, elapsed, skipped, history = 0, 0.0, 0, []
    if trainer is not None:
        engine.load_engine(ckpt, trainer)
        if discriminators is not None:
            discriminators.load_state_dict(trainer["discriminators"])
            engines[1].optimizer.load_state_dict(trainer["d_optimizer"])
        stream.load_state_dict(trainer["stream"])
        torch.set_rng_state(trainer["torch_rng"])
        step, elapsed, skipped = int(trainer["step"]), float(trainer["elapsed_s"]), int(trainer["skipped_steps"])
        history = json.loads(trainer["history"])
    start, main = step, info.is_main
    done = start

    def take() -> list[str]:  # every process draws the same stream and keeps every world_size-th batch
        return [stream.next() for _ in range(info.world_size)][info.rank]

    model.train()
    board = TensorBoard(out / "tensorboard", enabled=cfg.tensorboard and main)
    window, bad_in_a_row, extras = [], 0, {}
    term_window: list[dict[str, float]] = []  # the loss components of the window's steps (LAS + CTC)
    bar = tqdm(range(start, cfg.steps), initial=start, total=cfg.steps, disable=not (progress and main), desc=kind,
               unit="step")
    for step in bar:
        t0 = time.time()
        lr = lr_at(step, cfg, elapsed)
        for e in engines:
            e.set_lr(lr)
        if kind == "hifigan":
            utts = [data.by_id[i] for i in take()]
            rng = np.random.default_rng([cfg.seed, step])
            segment = int(cfg.vocoder_segment_s * features.sample_rate)
            wav = torch.from_numpy(audio_segments(utts, segment, rng, features.sample_rate)).to(device)
            extras = gan_step(engines[0], engines[1], mel_fn, wav, adversarial=step >= cfg.vocoder_gan_start_step)
            step_loss, grad_norm = extras.pop("loss"), extras.pop("grad_norm")
        else:
            step_loss, applied, terms = 0.0, True, {}
            guided = cfg.guided_attention_start <= step < cfg.guided_attention_steps
            weight = cfg.guided_attention_weight if guided else 0.0
            if kind == "las":  # LAS's weight is its model config's (model_overrides); the same steps switch it on/off
                weight = model.config.guided_attention_weight if guided else 0.0
            for _ in range(cfg.grad_accum):
                loss = engine(**make_batch(data, take(), device, weight))
                if engine.all_finite(loss.detach()):
                    engine.backward(loss)
                else:
                    applied = False  # this micro-batch is skipped in every process
                step_loss += float(loss.detach()) / cfg.grad_accum
                for key, value in module.terms.items():
                    terms[key] = terms.get(key, 0.0) + float(value) / cfg.grad_accum
            grad_norm = engine.step(apply=applied)
            step_loss = engine.mean(step_loss) if applied else math.nan
            if applied and terms:
                term_window.append({key: engine.mean(value) for key, value in terms.items()})
        done = step + 1
        elapsed += time.time() - t0
        if math.isfinite(step_loss) and math.isfinite(grad_norm):
            bad_in_a_row = 0
            window.append(step_loss)
        else:  # the update was skipped; the data is consumed either way, so a resumed run sees the same batches
            skipped, bad_in_a_row = skipped + 1, bad_in_a_row + 1
            log.warning("step %d: non-finite loss or gradient; update skipped (%d in a row, %d in all)", done,
                        bad_in_a_row, skipped)
            if bad_in_a_row >= cfg.max_bad_steps:
                raise FloatingPointError(f"{bad_in_a_row} steps in a row had a non-finite loss or gradient (last: "
                                         f"step {done}); the run stops. Resume with a lower --lr or --grad-clip")
        bar.set_postfix(loss=f"{step_loss:.3f}", lr=f"{lr:.2e}")
        out_of_time = bool(cfg.max_minutes) and elapsed >= 60 * cfg.max_minutes
        if cfg.max_minutes and info.world_size > 1:  # every process stops at the same step: the main one's clock
            out_of_time = bool(broadcast(out_of_time, info))
        last = done == cfg.steps or out_of_time
        if done % cfg.log_every == 0 or last:
            if kind != "hifigan":  # loss components (LAS + CTC), averaged over the window like the loss
                extras = {key: float(np.mean([t[key] for t in term_window])) for key in term_window[0]} \
                    if term_window else {}
                term_window = []
            rec = {"step": done, "loss": float(np.mean(window)) if window else None, "lr": lr,
                   "grad_norm": grad_norm, "skipped_steps": skipped, **extras}
            history.append(rec)
            board.add(done, {f"train/{k}": v for k, v in rec.items() if k != "step"})
            if main:
                log.info("step %d: loss %s, lr %.2e, grad norm %.3g, %d skipped%s", done,
                         "n/a" if rec["loss"] is None else f"{rec['loss']:.4f}", lr, grad_norm, skipped,
                         "".join(f", {k} {v:.4f}" for k, v in extras.items()))
            window = []
        if done % cfg.eval_every == 0 or last:
            if kind == "hifigan":
                metrics, samples = evaluate_vocoder(model, data, cfg, device), []
            else:
                metrics, samples = evaluate(data, module, done, out if main else None, cfg, device)
            history.append({"step": done, "eval": True, **metrics})
            board.add(done, {f"valid/{k}": v for k, v in metrics.items()})
            if main:
                log.info("step %d: %s", done, " ".join(f"{k}={v:.4f}" for k, v in metrics.items()) or "no valid data")
                with open(out / "samples.jsonl", "a", encoding="utf-8") as f:
                    for s in samples:
                        log.info("ASR sample %s\n  ref: %s\n  hyp: %s%s", s["id"], s["reference"], s["hypothesis"],
                                 f"\n  ctc: {s['ctc_hypothesis']}" if "ctc_hypothesis" in s else "")
                        f.write(json.dumps({"step": done, **s}, ensure_ascii=False) + "\n")
                plot_history(history, out / "training_curves.png")
        if done % cfg.ckpt_every == 0 or last:
            state = {"step": done, "elapsed_s": elapsed, "skipped_steps": skipped, "stream": stream.state_dict(),
                     "history": json.dumps(history)}
            save_checkpoint(out, done, model, data, engines, state, cfg.keep_checkpoints, discriminators)
        if out_of_time:
            log.info("time budget of %.1f min reached at step %d", cfg.max_minutes, done)
            break
    bar.close()
    board.close()
    model.eval()
    final = export_final(out, model, data, engine, {"model": kind, "corpus": str(corpus), "step": done,
                                                     "elapsed_s": round(elapsed, 1), "train_config": asdict(cfg),
                                                     "history": history})
    return LegacyResult(model, data.vocab, history, start, final)


# --- command line ---------------------------------------------------------------------------------------------
def parse_args(argv: list[str] | None = None) -> tuple[str, str, str, LegacyTrainConfig, bool]:
    """``(model, corpus, out, config, progress)``: ``MODEL --config FILE`` (YAML of :class:`LegacyTrainConfig`
    fields plus ``corpus`` and ``out``), overridden by a ``--flag`` per field."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", choices=MODELS, help="which baseline to train")
    p.add_argument("--config", help="YAML file of settings (training/configs/legacy_*.yaml); flags override it")
    p.add_argument("--corpus", help="manifest-form corpus directory (or `corpus:` in --config)")
    p.add_argument("--out", help="run directory, resumed when it holds checkpoints (or `out:` in --config)")
    add_config_arguments(p, LegacyTrainConfig)
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True, help="tqdm progress bars")
    p.add_argument("--local_rank", "--local-rank", type=int, default=None, help=argparse.SUPPRESS)
    a = vars(p.parse_args(argv))
    kind, config_file, progress = a.pop("model"), a.pop("config"), a.pop("progress")
    a.pop("local_rank")
    cfg, rest = config_from_arguments(a, LegacyTrainConfig, config_file)
    missing = [k for k in ("corpus", "out") if not rest.get(k)]
    if missing:
        p.error(f"give {' and '.join('--' + k for k in missing)} (or put them in --config)")
    return kind, str(rest["corpus"]), str(rest["out"]), cfg, progress


def main(argv: list[str] | None = None) -> LegacyResult:
    kind, corpus, out, cfg, progress = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S")
    return train(kind, corpus, out, cfg, progress=progress)


if __name__ == "__main__":
    main()
