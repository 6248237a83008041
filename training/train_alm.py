"""Train the audio-language model on a corpus: one next-token loss over temperature-mixed task batches.

    python -m training.train_alm --corpus corpus --out runs/alm --preset tiny --steps 20000

Setup -> train -> save, visibly:

1. the codec and unit tokenizer (``--codec`` / ``--units``, default the shipped ones) encode the corpus once into a
   token cache (:func:`training.alm_data.build_token_cache`; reused while corpus and tokenizers are unchanged);
2. a byte-level BPE is trained on the train split's text of both languages (plus the SLU targets), and the shared
   :class:`alm.vocab.Vocabulary` is laid out around it, the units and the first ``K`` codebooks;
3. the decoder is a preset (``debug``, ``tiny``, ``small``, ``base``) over that vocabulary; AdamW with linear
   warmup and cosine decay, gradient clipping, optional gradient accumulation, bf16 autocast on a GPU;
4. every ``eval_every`` steps: loss per task on the valid split, and greedy ASR transcripts of a few valid
   utterances next to their references (logged and appended to ``OUT/samples.jsonl``); ``OUT/training_curves.png``;
5. every ``ckpt_every`` steps an atomic checkpoint ``OUT/checkpoints/step-NNNNNNN`` in the checkpoint layout
   (``config.json``, ``model.safetensors``, ``tokenizer.json``, ``vocab.json``, ``codec/``, ``units/``,
   ``training_state.json``) plus ``trainer_state.pt`` (optimizer, step, RNG and sampler state, history; loaded with
   ``weights_only=True``). The same command again resumes from the latest one. At the end ``OUT/final`` holds the
   exported checkpoint (same layout, no trainer state).

Everything the loop changes lives in one :class:`TrainState` (no module-level state), so the loop can be driven by a
DeepSpeed engine later: model and optimizer are built in one place, and backward/step/clip are one function.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import shutil
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from alm.config import PRESETS
from alm.generation import generate_for_task
from alm.model import AlmForCausalLM, token_losses, weighted_causal_lm_loss
from alm.prompts import AUDIO_TASKS, IGNORE_INDEX, Example, parse_output
from alm.vocab import TASKS, Vocabulary, train_text_tokenizer
from codec import load_codec, load_units
from codec.base import AudioTokenizer
from codec.units import UnitTokenizer
from training.alm_data import (
    Batch,
    DataSummary,
    ExampleBuilder,
    ExampleOptions,
    MultiTaskSampler,
    TokenCache,
    build_token_cache,
    pack,
)
from training.config import TrainConfig, add_config_arguments, config_from_arguments
from training.data.corpus import read_manifest
from training.data.slu import format_target
from training.distributed import (
    Engine,
    ProcessInfo,
    broadcast,
    gather_strings,
    init_process_group,
    make_engine,
    pick_device,
    process_info,
    weights_fingerprint,
)
from training.plots import png_figure
from training.seed import seed_everything
from training.speech_ctc import speech_ctc_loss
from training.tensorboard import TensorBoard

log = logging.getLogger(__name__)

CHECKPOINTS = "checkpoints"
TRAINER_STATE = "trainer_state.pt"
TRAINING_STATE = "training_state.json"


@dataclass
class TrainAlmConfig(TrainConfig):
    """Settings of one ALM run (saved in ``training_state.json``): the shared optimization/engine settings of
    :class:`training.config.TrainConfig` plus the model and data ones."""

    preset: str = "tiny"  # debug | tiny | small | base (alm.config presets)
    max_tokens: int = 8192  # padded tokens (B x L) per micro-batch
    max_batch_size: int | None = None
    # data
    tasks: str = "asr,tts,s2st,slu,continue"  # comma-separated tasks to train on (a subset trains a specialist)
    num_codebooks: int = 4  # K the model reads and writes (at most the codec's)
    input_speech: str = "units"  # units | codec | both
    collapse_units: bool = True
    drop_unit_blanks: bool = False  # prompts leave out the phone units' CTC blank (sets the model's drop_unit_blanks)
    temperature: float = 2.0  # task/language sampling p ∝ (n/N)^(1/T); T = 2 is alpha = 0.5
    task_weights: str = ""  # multipliers of the task probabilities, e.g. "asr=2,slu=2" (unnamed tasks: 1)
    bucket_pool: int = 256  # length bucketing: examples drawn, sorted and cut into batches at a time (0: off)
    curriculum_steps: int = 0  # short-first curriculum: the longest example grows linearly over these steps
    curriculum_start_len: int = 256  # ... from this many tokens to max_len
    s2st_text_prob: float = 0.5
    asr_context_prob: float = 0.0  # ASR prompts carrying earlier text (sets the model's asr_context)
    voice_seconds: float = 3.0
    prompt_weight: float = 0.0
    ctc_weight: float = 0.0  # weight of the auxiliary CTC loss on the speech positions (training.speech_ctc; 0: off)
    asr_sim_sentences: int = 0  # per language: text-only ASR items with simulated phone units (training.phone_sim)
    slu_sim_commands: int = 0  # text-only SLU items: commands of the SLU grammar with simulated phone units
    asr_word_phones: bool = False  # ASR targets spell each word's phones before it (sets the model's asr_word_phones)
    audio_units: bool = False  # audio frames are written "unit, then codes" (sets the model's audio_units)
    tts_word_phones: bool = False  # TTS prompts spell each word's phones before it (sets the model's tts_word_phones)
    slu_transcript: bool = False  # SLU targets write the transcript, <slu>, then intent/slots (sets slu_transcript)
    text_vocab_size: int = 4000
    pad_vocab_to: int = 64  # vocabulary size rounded up to a multiple of this
    max_len: int | None = None  # longest sequence; None: the preset's max_position_embeddings
    # evaluation
    eval_max_per_task: int = 64
    num_samples: int = 2  # valid utterances transcribed at each evaluation (0: none)
    codec: str | None = None  # codec directory; None: the shipped codec
    units: str | None = None  # unit tokenizer directory; None: the shipped units
    cache_dir: str | None = None  # token cache root; None: CORPUS/token_cache
    model_overrides: dict[str, Any] = field(default_factory=dict)  # extra AlmConfig fields for the preset
    # fine-tuning: start from a checkpoint directory's weights, vocabulary, codec and units ("default": the shipped
    # model) instead of a fresh preset; its config then decides preset, K, input speech and voice prompt length
    init_from: str | None = None

    def validate(self) -> None:
        super().validate()
        self.task_list()
        self.task_weight_map()
        if not self.ctc_weight >= 0:
            raise ValueError(f"ctc_weight must be >= 0, got {self.ctc_weight}")
        if self.asr_sim_sentences < 0:
            raise ValueError(f"asr_sim_sentences must be >= 0, got {self.asr_sim_sentences}")
        if self.slu_sim_commands < 0:
            raise ValueError(f"slu_sim_commands must be >= 0, got {self.slu_sim_commands}")
        if self.bucket_pool < 0 or self.curriculum_steps < 0 or self.curriculum_start_len < 1:
            raise ValueError(f"bucket_pool={self.bucket_pool} and curriculum_steps={self.curriculum_steps} cannot be "
                             f"negative; curriculum_start_len={self.curriculum_start_len} must be positive")

    def task_weight_map(self) -> dict[str, float]:
        """:attr:`task_weights` as ``{task: weight}``."""
        out = {}
        for item in filter(None, (x.strip() for x in self.task_weights.split(","))):
            name, sep, value = item.partition("=")
            try:
                out[name.strip()] = float(value)
            except ValueError:
                sep = ""
            if not sep or name.strip() not in TASKS:
                raise ValueError(f"task_weights: {item!r} is not TASK=WEIGHT with a task of {', '.join(TASKS)}")
        return out

    def task_list(self) -> tuple[str, ...]:
        """:attr:`tasks` as a tuple, checked against the known tasks."""
        tasks = tuple(t.strip() for t in self.tasks.split(",") if t.strip())
        unknown = [t for t in tasks if t not in TASKS]
        if unknown or not tasks:
            raise ValueError(f"unknown or no tasks {unknown or self.tasks!r}; known: {', '.join(TASKS)}")
        return tasks


@dataclass
class TrainState:
    """Everything the loop changes; saved in checkpoints (the model unwrapped, as its own files)."""

    model: AlmForCausalLM
    optimizer: torch.optim.Optimizer
    vocab: Vocabulary
    codec: AudioTokenizer
    units: UnitTokenizer
    step: int = 0
    tokens_seen: int = 0
    elapsed_s: float = 0.0
    skipped_steps: int = 0  # updates skipped for a non-finite loss or gradient
    history: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class TrainResult:
    """What :func:`train` returns."""

    model: AlmForCausalLM
    vocab: Vocabulary
    history: list[dict[str, Any]]
    start_step: int  # 0 for a fresh run, the checkpoint's step for a resumed one
    checkpoint: Path  # the exported checkpoint (OUT/final)


# --- building blocks ----------------------------------------------------------------------------------------------
def build_vocabulary(records: list[dict[str, Any]], codec: AudioTokenizer, units: UnitTokenizer,
                     cfg: TrainAlmConfig) -> Vocabulary:
    """BPE on the train split's text (both languages, plus SLU targets), laid out with units and ``K`` codebooks."""
    texts = [r["text"] for r in records if r["split"] == "train"]
    for r in records:
        if r["split"] == "train" and r.get("intent"):
            slots = r.get("slots") or {}
            texts.append(format_target(r["intent"], json.loads(slots) if isinstance(slots, str) else slots))
    if not texts:
        raise ValueError("the corpus has no train split to learn a text tokenizer from")
    tok = train_text_tokenizer(texts, vocab_size=cfg.text_vocab_size)
    return Vocabulary(tok, num_units=units.num_units, num_codebooks=cfg.num_codebooks,
                      cardinality=codec.cardinality, pad_to_multiple_of=cfg.pad_vocab_to)


def build_model(vocab: Vocabulary, cfg: TrainAlmConfig) -> AlmForCausalLM:
    """The preset's decoder over ``vocab`` (fresh weights, float32)."""
    name = cfg.preset if cfg.preset.startswith("alm_") else f"alm_{cfg.preset}"
    if name not in PRESETS:
        raise ValueError(f"unknown preset {cfg.preset!r}; known: {[p.removeprefix('alm_') for p in PRESETS]}")
    config = PRESETS[name](vocab, num_codebooks=cfg.num_codebooks, input_speech=cfg.input_speech,
                           collapse_units=cfg.collapse_units, drop_unit_blanks=cfg.drop_unit_blanks,
                           voice_seconds=cfg.voice_seconds, **cfg.model_overrides)
    return AlmForCausalLM(config)


def build_optimizer(model: torch.nn.Module, cfg: TrainAlmConfig) -> torch.optim.AdamW:
    """AdamW; matrices decay, vectors (norms) do not."""
    decay = [p for p in model.parameters() if p.requires_grad and p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.dim() < 2]
    return torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                              {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr, betas=(0.9, cfg.beta2))


def lr_at(step: int, cfg: TrainAlmConfig) -> float:
    """Linear warmup to ``lr`` over ``warmup_steps``, then cosine decay to ``lr * min_lr_ratio`` at ``steps``."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    t = min(1.0, (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps))
    return cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * t)))


def curriculum_limit(step: int, cfg: TrainAlmConfig, max_len: int) -> int | None:
    """The short-first curriculum's longest example at ``step`` (``None``: no limit): ``curriculum_start_len``
    growing linearly to ``max_len`` over ``curriculum_steps``."""
    if step >= cfg.curriculum_steps:
        return None
    start = min(cfg.curriculum_start_len, max_len)
    return int(start + (max_len - start) * step / cfg.curriculum_steps)


def _autocast(device: torch.device, cfg: TrainAlmConfig) -> torch.autocast:
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.bf16 and device.type == "cuda")


@torch.no_grad()
def add_task_losses(acc: dict[str, list[float]], ce: torch.Tensor, batch: Batch) -> None:
    """Add each row's summed next-token loss and scored-token count to ``acc[task]`` (the per-task training loss
    of the log; ``ce [B, L - 1]`` is :func:`alm.model.token_losses` of ``batch``, computed once for the step)."""
    sums = ce.sum(1).tolist()
    counts = (batch.labels[:, 1:] != IGNORE_INDEX).sum(1).tolist()
    for task, total, n in zip(batch.tasks, sums, counts):
        if n and math.isfinite(total):
            entry = acc.setdefault(task, [0.0, 0])
            entry[0] += total
            entry[1] += n


# --- checkpoints --------------------------------------------------------------------------------------------------
def _checkpoint_dirs(out: Path) -> list[Path]:
    d = out / CHECKPOINTS
    done = [p for p in d.glob("step-*") if (p / TRAINER_STATE).is_file()] if d.is_dir() else []
    return sorted(done, key=lambda p: int(p.name.split("-")[1]))


def latest_checkpoint(out: str | Path) -> Path | None:
    """The newest complete ``OUT/checkpoints/step-*`` (``None`` when there is none)."""
    found = _checkpoint_dirs(Path(out))
    return found[-1] if found else None


def _write_layout(d: Path, state: TrainState, training_state: dict[str, Any],
                  weights: dict[str, torch.Tensor] | None = None) -> None:
    """The checkpoint layout (model, vocabulary, codec, units, provenance) into ``d`` (``weights``: the whole
    model's state dict when the module holds only a partition, as under ZeRO-3)."""
    if weights is not None:
        state.model.save_pretrained(d, state_dict={k: v.float() for k, v in weights.items()})
    else:
        state.model.save_pretrained(d)
    state.vocab.save(d)
    state.codec.save_pretrained(d / "codec")
    state.units.save_pretrained(d / "units")
    (d / TRAINING_STATE).write_text(json.dumps(training_state, indent=2, default=str) + "\n")


def _publish(tmp: Path, final: Path) -> None:
    """Rename a finished temp directory over ``final`` (the old one is moved aside first, then removed)."""
    old = final.with_name(f".{final.name}.old{os.getpid()}")
    if final.exists():
        final.rename(old)
    tmp.rename(final)
    shutil.rmtree(old, ignore_errors=True)


def save_checkpoint(out: Path, state: TrainState, sampler: MultiTaskSampler, training_state: dict[str, Any],
                    keep: int, engine: Engine) -> Path:
    """Write ``OUT/checkpoints/step-NNNNNNN`` atomically and keep only the newest ``keep`` checkpoints.

    Every process calls it: a DeepSpeed engine writes its shards (``deepspeed/``) from each process into the
    temporary directory; the main process then adds the layout and the trainer state (written last: its presence
    marks a complete checkpoint) and renames the directory into place."""
    root = out / CHECKPOINTS
    final = root / f"step-{state.step:07d}"
    tmp = root / f".tmp-step-{state.step:07d}"
    main = engine.info.is_main
    if main:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    engine.barrier()
    engine_state = engine.save_engine(tmp)
    weights = engine.full_state_dict()
    engine.barrier()
    if main:
        _write_layout(tmp, state, training_state, weights)
        trainer = {"step": state.step, "tokens_seen": state.tokens_seen, "elapsed_s": state.elapsed_s,
                   "skipped_steps": state.skipped_steps, **engine_state, "torch_rng": torch.get_rng_state(),
                   "sampler": sampler.state_dict(), "history": json.dumps(state.history)}
        torch.save(trainer, tmp / TRAINER_STATE)
        _publish(tmp, final)
        for stale in _checkpoint_dirs(out)[:-keep] if keep > 0 else []:
            shutil.rmtree(stale, ignore_errors=True)
    engine.barrier()
    return final


def export_checkpoint(out: Path, state: TrainState, training_state: dict[str, Any], engine: Engine) -> Path:
    """``OUT/final``: the checkpoint layout without trainer state (what ``alm.load`` reads), written atomically by
    the main process (every process calls it: under ZeRO-3 the weights are gathered from all of them)."""
    weights = engine.full_state_dict()
    if engine.info.is_main:
        tmp = out / f".tmp-final-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        _write_layout(tmp, state, training_state, weights)
        _publish(tmp, out / "final")
    engine.barrier()
    return out / "final"


def resume_state(ckpt: Path, cfg: TrainAlmConfig, device: torch.device) -> tuple[TrainState, dict[str, Any]]:
    """Rebuild a :class:`TrainState` from a checkpoint (a fresh optimizer: the engine loads its state); also
    returns the raw trainer state (optimizer of a plain run, sampler, RNG)."""
    vocab = Vocabulary.load(ckpt)
    model = AlmForCausalLM.from_pretrained(ckpt, dtype=torch.float32).to(device)
    codec, units = load_codec(ckpt / "codec"), load_units(ckpt / "units")
    trainer = torch.load(ckpt / TRAINER_STATE, weights_only=True, map_location="cpu")
    optimizer = build_optimizer(model, cfg)
    state = TrainState(model, optimizer, vocab, codec, units, step=int(trainer["step"]),
                       tokens_seen=int(trainer["tokens_seen"]), elapsed_s=float(trainer["elapsed_s"]),
                       skipped_steps=int(trainer.get("skipped_steps", 0)),
                       history=json.loads(trainer["history"]))
    return state, trainer


def simulated_asr_items(builder: ExampleBuilder, units: UnitTokenizer, cfg: TrainAlmConfig,
                        progress: bool) -> dict[str, list[str]]:
    """Text-only ASR items (:mod:`training.phone_sim`): up to ``cfg.asr_sim_sentences`` sentences per language
    from the corpus' train text and the natural-text pool, never a sentence of the valid or test split."""
    from training.data.broad_text import natural_sentences
    from training.phone_sim import PhoneSimulator

    records = builder.cache.records.values()
    held_out = {r["text"] for r in records if r["split"] != "train"}
    rng = np.random.default_rng(cfg.seed)
    chosen: list[tuple[str, str]] = []
    for lang in sorted({r["lang"] for r in records}):
        texts = {r["text"] for r in records if r["split"] == "train" and r["lang"] == lang}
        texts |= set(natural_sentences(lang))
        pool = sorted(texts - held_out)
        take = rng.permutation(len(pool))[: cfg.asr_sim_sentences]
        chosen += [(lang, pool[i]) for i in sorted(take)]
    sim = PhoneSimulator(units, cache=builder.cache.directory / "phones.json")
    items = builder.add_simulated_asr(sim, sim.phonemize(chosen, progress=progress))
    log.info("text-only ASR items with simulated phone units: %s", {k: len(v) for k, v in items.items()})
    return items


def simulated_slu_items(builder: ExampleBuilder, units: UnitTokenizer, cfg: TrainAlmConfig,
                        progress: bool) -> dict[str, list[str]]:
    """Text-only SLU items: ``cfg.slu_sim_commands`` commands drawn from the corpus' SLU grammar
    (:func:`training.data.slu.generate_commands`, English, a seed of its own) with their intents and slots, the
    units simulated from their phones as for the simulated ASR items; never a command of the valid or test split.
    Far more commands than the corpus recorded, so the understanding must be read off the words, not memorized."""
    from training.data.slu import generate_commands
    from training.phone_sim import PhoneSimulator

    held_out = {r["text"] for r in builder.cache.records.values() if r["split"] != "train"}
    commands = {("en", c.text): format_target(c.intent, c.slots)
                for c in generate_commands(cfg.slu_sim_commands, seed=cfg.seed + 7919) if c.text not in held_out}
    sim = PhoneSimulator(units, cache=builder.cache.directory / "phones.json")
    phones = sim.phonemize(list(commands), progress=progress)
    items = builder.add_simulated_slu(sim, {key: (phones[key], target) for key, target in commands.items()
                                            if key in phones})
    log.info("text-only SLU items with simulated phone units: %s", {k: len(v) for k, v in items.items()})
    return items


def word_lexicon(builder: ExampleBuilder, units: UnitTokenizer, progress: bool
                 ) -> Callable[[str, str], list[list[int]]]:
    """The word-phone lexicon of ``asr_word_phones`` targets (:mod:`codec.word_phones`), holding every word of
    the corpus' ASR text (all splits: valid examples are scored too) and of the simulated ASR items."""
    from codec.word_phones import WordPhones

    lexicon = WordPhones(units, cache=builder.cache.directory / "word_phones.json")
    corpus = [(r["lang"], r["text"]) for r in builder.cache.records.values()]
    lexicon.add([*corpus, *builder.simulated_texts()], progress=progress)  # one pass, one cache write
    return lexicon


def _same_units(a: UnitTokenizer, b: UnitTokenizer) -> bool:
    """Whether two unit tokenizers give the same units (same config, provenance aside, and the same tensors)."""
    ca, cb = asdict(a.config), asdict(b.config)
    ca.pop("info"), cb.pop("info")
    sa, sb = a.state_dict(), b.state_dict()
    return ca == cb and sa.keys() == sb.keys() and all(torch.equal(v, sb[k]) for k, v in sa.items())


def _same_phones(a: UnitTokenizer, b: UnitTokenizer) -> bool:
    """Whether both are phone recognizers over the same phone inventory (unit ``i`` is the same phone in both)."""
    return a.kind == b.kind == "phone" and bool(a.config.phones) and a.config.phones == b.config.phones


def replace_units(model: AlmForCausalLM, vocab: Vocabulary, num_units: int, seed: int = 0) -> Vocabulary:
    """Give ``model`` a fresh unit range of ``num_units`` ids, in place; returns the new vocabulary.

    Every other range (special, text, codec) keeps its learned embedding rows, moved to its new ids; the unit rows
    are drawn afresh (normal, the std of the old unit rows), because new units mean something else even when the
    count is the same. The output layer is tied to the embeddings (the presets' ``tie_word_embeddings``), so it
    follows.
    """
    new = Vocabulary(vocab.tokenizer, num_units=num_units, num_codebooks=vocab.num_codebooks,
                     cardinality=vocab.cardinality, text_vocab_size=len(vocab.text),
                     pad_to_multiple_of=vocab.pad_to_multiple_of)
    if not model.config.tie_word_embeddings:
        raise ValueError("replacing the units needs tied input/output embeddings")
    old_emb = model.get_input_embeddings().weight.detach().clone()  # [V_old, H]
    gen = torch.Generator().manual_seed(seed)
    std = float(old_emb[vocab.units.start: vocab.units.end].std())
    emb = torch.randn(new.size, old_emb.shape[1], generator=gen) * std  # [V_new, H]; reserved rows stay random
    for name, r in new.ranges.items():
        if name not in ("units", "reserved"):
            o = vocab.ranges[name]
            emb[r.start: r.end] = old_emb[o.start: o.end]
    model.resize_token_embeddings(new.size)
    with torch.no_grad():
        model.get_input_embeddings().weight.copy_(emb.to(old_emb.dtype))
    model.tie_weights()
    model.config.vocab_layout = new.to_dict()
    model.config.vocab_size = new.size
    return new


def init_state(path: str | Path, cfg: TrainAlmConfig, device: torch.device) -> TrainState:
    """A fresh :class:`TrainState` (new optimizer, step 0) around a released checkpoint's model, vocabulary, codec
    and units (``"default"``: the shipped model), for fine-tuning on another corpus; ``cfg.units``, when set and
    different, replaces the units (any count; :func:`replace_units`), except that a phone recognizer over the
    checkpoint's phone inventory (a retrained one) keeps the unit embeddings."""
    from alm.checkpoint import DEFAULT_CHECKPOINT, load_checkpoint

    d = DEFAULT_CHECKPOINT if str(path) == "default" else Path(path)
    model, vocab, codec, units = load_checkpoint(d, device)
    if cfg.units is not None:  # other units replace the checkpoint's: their embeddings start afresh
        other = load_units(cfg.units)
        if _same_units(other, units):
            pass
        elif _same_phones(other, units):
            # a retrained phone recognizer with the same inventory: unit i is still phone i, so its row is kept
            units = other
            log.info("fine-tuning with the phone units of %s (the checkpoint's phone inventory: embeddings kept)",
                     cfg.units)
        else:
            units = other
            vocab = replace_units(model, vocab, units.num_units, seed=cfg.seed)
            log.info("fine-tuning with the %d %r units of %s instead of the checkpoint's (new unit embeddings)",
                     units.num_units, units.kind, cfg.units)
    model = model.float().train()
    codec.set_num_codebooks(codec.max_codebooks)  # the token cache stores every codebook; the vocab picks K
    return TrainState(model, build_optimizer(model, cfg), vocab, codec, units)


# --- evaluation ---------------------------------------------------------------------------------------------------
@torch.no_grad()
def evaluate(model: AlmForCausalLM, eval_sets: dict[str, list[tuple[str, Example]]], pad_id: int, max_tokens: int,
             device: torch.device, cfg: TrainAlmConfig, vocab: Vocabulary | None = None) -> dict[str, float]:
    """Mean target-token loss per task (``valid_loss/<task>``) and over all tasks (``valid_loss``); with
    ``vocab``, also the loss over the codec ids of the audio tasks' targets alone (``valid_codec_loss/<task>``:
    comparable between models whose audio frames carry units, ``AlmConfig.audio_units``, and models whose do
    not) and, for examples carrying CTC targets, the auxiliary CTC loss over them (``valid_ctc``)."""
    was_training = model.training
    model.eval()
    out, total, count = {}, 0.0, 0
    ctc_sum, ctc_rows = 0.0, 0
    for task, items in eval_sets.items():
        loss_sum, n_sum = 0.0, 0
        codec_sum, codec_n = 0.0, 0
        for batch in pack([(task, ex) for _, ex in items], max_tokens, pad_id):
            n = batch.num_targets
            inputs = batch.model_inputs(device)
            with _autocast(device, cfg):
                result = model(**inputs)
            loss_sum, n_sum = loss_sum + float(result.loss) * n, n_sum + n
            if vocab is not None and task in AUDIO_TASKS:
                labels = inputs["labels"][:, 1:]
                is_codec = (labels >= vocab.codec.start) & (labels < vocab.codec.end)
                codec_sum += float(token_losses(result.logits, inputs["labels"])[is_codec].sum())
                codec_n += int(is_codec.sum())
            if vocab is not None and any(t for t in batch.ctc_targets):
                ctc, rows = speech_ctc_loss(result.logits, batch.input_ids, batch.ctc_targets, vocab)
                ctc_sum, ctc_rows = ctc_sum + float(ctc) * rows, ctc_rows + rows
        if n_sum:
            out[f"valid_loss/{task}"] = loss_sum / n_sum
            total, count = total + loss_sum, count + n_sum
        if codec_n:
            out[f"valid_codec_loss/{task}"] = codec_sum / codec_n
    if count:
        out["valid_loss"] = total / count
    if ctc_rows:
        out["valid_ctc"] = ctc_sum / ctc_rows
    model.train(was_training)
    return out


@torch.no_grad()
def transcribe_samples(model: AlmForCausalLM, vocab: Vocabulary, items: list[tuple[str, Example]],
                       cache: TokenCache, device: torch.device, cfg: TrainAlmConfig) -> list[dict[str, str]]:
    """Greedy ASR of valid utterances (their prompts as built for training), next to the references."""
    was_training = model.training
    model.eval()
    out = []
    for utt_id, ex in items:
        target_len = len(ex.input_ids) - ex.prompt_len
        with _autocast(device, cfg):
            new = generate_for_task(model, vocab, "asr", ex.input_ids[: ex.prompt_len], strategy="greedy",
                                    max_new_tokens=2 * target_len + 8)
        out.append({"id": utt_id, "reference": cache.records[utt_id]["text"],
                    "hypothesis": parse_output(vocab, "asr", new).text or ""})
    model.train(was_training)
    return out


def plot_history(history: list[dict[str, Any]], path: Path) -> None:
    """Training loss and per-task valid loss against the step."""
    train = [h for h in history if h.get("loss") is not None]
    valid = [h for h in history if "valid_loss" in h]
    with png_figure(path, 1, 2) as (_, ax):
        if train:
            ax[0].plot([h["step"] for h in train], [h["loss"] for h in train], label="train")
        keys = sorted({k for h in valid for k in h if k.startswith("valid_loss")})
        for key in keys:
            pts = [(h["step"], h[key]) for h in valid if key in h]
            ax[1].plot(*zip(*pts), marker="o", label=key.removeprefix("valid_loss").lstrip("/") or "all tasks")
        for a, title in zip(ax, ("training loss (per log window)", "valid loss per task")):
            a.set_title(title)
            a.set_xlabel("step")
            if a.lines:
                a.legend(fontsize=8)


# --- the loop -----------------------------------------------------------------------------------------------------
def _take(sampler: MultiTaskSampler, info: ProcessInfo) -> tuple[Batch, list[Batch]]:
    """The next ``world_size`` batches of the shared stream: this process's one, and all of them (for counts)."""
    batches = [sampler.next_batch() for _ in range(info.world_size)]
    return batches[info.rank], batches


def train(corpus: str | Path, out: str | Path, cfg: TrainAlmConfig, *, codec: AudioTokenizer | None = None,
          units: UnitTokenizer | None = None, progress: bool = True) -> TrainResult:
    """Train (or resume) an ALM on ``corpus``, writing checkpoints under ``out``.

    Under a distributed launcher every process calls this; the main one logs and writes (see
    :mod:`training.distributed`).

    Args:
        corpus: manifest-form corpus directory.
        out: run directory (checkpoints, curves, samples, TensorBoard events, final export).
        cfg: run settings.
        codec, units: tokenizers to use instead of ``cfg.codec`` / ``cfg.units`` (a resumed run always uses the
            checkpoint's own).
        progress: show tqdm bars.
    """
    corpus, out = Path(corpus), Path(out)
    cfg.validate()  # bad settings fail before any work
    info = process_info()
    device = pick_device(cfg, info)
    if cfg.use_deepspeed():
        info = init_process_group(cfg, device)
    main = info.is_main
    out.mkdir(parents=True, exist_ok=True)
    seed_everything(cfg.seed)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    elif info.world_size > 1 and device.type == "cpu":  # processes share the cores
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // info.world_size))
    records = read_manifest(corpus)

    # setup: resume from the latest checkpoint, or build everything fresh
    ckpt, trainer = None, None
    found = _checkpoint_dirs(out)
    for candidate in reversed(found):  # the newest readable one; a damaged one is reported and passed over
        try:
            state, trainer = resume_state(candidate, cfg, device)
        except Exception as e:  # noqa: BLE001 - truncated/partial files raise many kinds of errors
            log.warning("checkpoint %s is damaged and is skipped (%s: %s)", candidate, type(e).__name__, e)
            continue
        ckpt = candidate
        break
    if found and ckpt is None:
        raise RuntimeError(f"none of the {len(found)} checkpoints in {out / CHECKPOINTS} can be read (see the "
                           "warnings); move them away to start afresh, or use another --out")
    if ckpt is not None:
        log.info("resuming from %s (step %d)", ckpt, state.step)
        if codec is not None or units is not None:
            log.warning("resuming: the checkpoint's own codec and units are used, not the ones passed in")
    elif cfg.init_from is not None:
        state = init_state(cfg.init_from, cfg, device)
        log.info("fine-tuning %s (%.2fM parameters), %s", cfg.init_from,
                 sum(p.numel() for p in state.model.parameters()) / 1e6, state.vocab)
    else:
        codec = codec or load_codec(cfg.codec)
        units = units or load_units(cfg.units)
        if cfg.num_codebooks > codec.max_codebooks:
            raise ValueError(f"num_codebooks={cfg.num_codebooks} but the codec has {codec.max_codebooks}")
        vocab = broadcast(build_vocabulary(records, codec, units, cfg) if main else None, info)
        model = build_model(vocab, cfg).to(device)
        state = TrainState(model, build_optimizer(model, cfg), vocab, codec, units)
        log.info("%s: %.2fM parameters, %s", cfg.preset, sum(p.numel() for p in model.parameters()) / 1e6, vocab)
    if cfg.asr_context_prob > 0:
        state.model.config.asr_context = True  # saved with the weights: long-form decoding may then use it
    if cfg.drop_unit_blanks and not state.model.config.drop_unit_blanks:
        if state.units.kind != "phone":
            raise ValueError(f"drop_unit_blanks needs 'phone' units, not {state.units.kind!r}")
        state.model.config.drop_unit_blanks = True  # saved with the weights: inference drops them too
    if cfg.asr_word_phones and not state.model.config.asr_word_phones:
        if state.units.kind != "phone":
            raise ValueError(f"asr_word_phones needs 'phone' units, not {state.units.kind!r}")
        state.model.config.asr_word_phones = True  # saved with the weights: decoding allows and drops the phones
    if cfg.audio_units and not state.model.config.audio_units:
        state.model.config.audio_units = True  # saved with the weights: decoding writes a unit before each frame
    if cfg.tts_word_phones and not state.model.config.tts_word_phones:
        if state.units.kind != "phone":
            raise ValueError(f"tts_word_phones needs 'phone' units, not {state.units.kind!r}")
        state.model.config.tts_word_phones = True  # saved with the weights: synthesize spells the text the same way
    if cfg.slu_transcript and not state.model.config.slu_transcript:
        state.model.config.slu_transcript = True  # saved with the weights: decoding expects the words, then <slu>
    engine = make_engine(state.model, state.optimizer, cfg, device)
    info = engine.info
    main = info.is_main
    if ckpt is not None:
        engine.load_engine(ckpt, trainer)
    start = state.step
    if not main:  # the main process builds (or checks) the token cache first; the others then read it
        engine.barrier()
    cache = build_token_cache(corpus, state.codec, state.units, cfg.cache_dir, progress=progress and main)
    if main:
        engine.barrier()
    # the model's config (and a resumed run's record), not cfg, say how the prompts look: a run keeps its format
    options = ExampleOptions(num_codebooks=state.model.config.num_codebooks,
                             input_speech=state.model.config.input_speech,
                             collapse_units=state.model.config.collapse_units,
                             drop_unit_blanks=state.model.config.drop_unit_blanks,
                             voice_seconds=state.model.config.voice_seconds,
                             s2st_text_prob=cfg.s2st_text_prob, prompt_weight=cfg.prompt_weight,
                             asr_context_prob=cfg.asr_context_prob, ctc_targets=cfg.ctc_weight > 0,
                             asr_word_phones=bool(state.model.config.asr_word_phones),
                             audio_units=bool(state.model.config.audio_units),
                             tts_word_phones=bool(state.model.config.tts_word_phones),
                             slu_transcript=bool(state.model.config.slu_transcript))
    builder = ExampleBuilder(state.vocab, cache, options)
    max_len = state.model.config.max_position_embeddings
    max_len = max_len if cfg.max_len is None else min(cfg.max_len, max_len)
    tasks = cfg.task_list()
    # the same seed in every process: one batch stream, of which each process takes every world_size-th batch
    groups = builder.groups("train", tasks)
    if cfg.asr_sim_sentences and "asr" in tasks:
        for lang, items in simulated_asr_items(builder, state.units, cfg, progress and main).items():
            groups.setdefault(("asr", lang), []).extend(items)
    if cfg.slu_sim_commands and "slu" in tasks:
        for lang, items in simulated_slu_items(builder, state.units, cfg, progress and main).items():
            groups.setdefault(("slu", lang), []).extend(items)
    if options.asr_word_phones or options.tts_word_phones:
        builder.set_lexicon(word_lexicon(builder, state.units, progress and main))
    sampler = MultiTaskSampler(groups, builder.build, temperature=cfg.temperature,
                               max_tokens=cfg.max_tokens, max_len=max_len, max_batch_size=cfg.max_batch_size,
                               pad_id=state.vocab.pad_id, seed=cfg.seed, task_weights=cfg.task_weight_map(),
                               bucket_pool=cfg.bucket_pool)
    if trainer is not None:
        sampler.load_state_dict(trainer["sampler"])
        torch.set_rng_state(trainer["torch_rng"])
    summary = DataSummary.of(sampler)
    if main:
        log.info("train examples per task/lang %s; sampling probabilities %s", summary.counts, summary.probabilities)
    eval_sets = {t: [(i, e) for i, e in items if len(e.input_ids) <= max_len]
                 for t, items in builder.fixed_examples("valid", cfg.eval_max_per_task, cfg.seed, tasks).items()}
    samples = eval_sets.get("asr", [])[: cfg.num_samples]
    board = TensorBoard(out / "tensorboard", enabled=cfg.tensorboard and main)

    def training_state(metrics: dict[str, float]) -> dict[str, Any]:
        """Provenance for the checkpoint (every process calls it: data-parallel replicas are compared here)."""
        replicas = None
        if info.world_size > 1 and cfg.zero_stage < 3:  # ZeRO-3 modules hold partitions, not replicas
            replicas = gather_strings(weights_fingerprint(model), info)
            if len(set(replicas)) > 1:
                raise RuntimeError(f"step {state.step}: the processes' weights differ ({replicas}); the run stops")
        return {"step": state.step, "corpus": str(corpus), "preset": cfg.preset, "tokens_seen": state.tokens_seen,
                "weights_fingerprints": replicas,
                "elapsed_s": round(state.elapsed_s, 1), "metrics": metrics, "train_config": asdict(cfg),
                "processes": info.world_size, "engine": "deepspeed" if engine.deepspeed else "plain",
                "data": {**asdict(options), "cache_fingerprint": cache.fingerprint, "examples": summary.counts,
                         "sampling": summary.probabilities, "dropped_too_long": dict(sampler.dropped),
                         "deferred_by_curriculum": sampler.deferred}}

    # train
    model = state.model
    model.train()
    metrics = next(({k: v for k, v in h.items() if k != "step"} for h in reversed(state.history)
                    if "valid_loss" in h), {})
    window: list[float] = []
    window_ctc: list[float] = []  # auxiliary CTC loss of the micro-batches in the log window
    bad_in_a_row = 0
    window_tasks: Counter[str] = Counter()
    window_task_loss: dict[str, list[float]] = {}  # task -> [summed token loss, scored tokens] in the log window
    t_last, tokens_last = time.time(), state.tokens_seen
    bar = tqdm(range(start, cfg.steps), initial=start, total=cfg.steps, disable=not (progress and main), desc="alm",
               unit="step")
    for step in bar:
        t_step = time.time()
        lr = lr_at(step, cfg)
        engine.set_lr(lr)
        sampler.length_limit = curriculum_limit(step, cfg, max_len)
        step_loss, applied = 0.0, True
        for _ in range(cfg.grad_accum):
            batch, every = _take(sampler, info)
            inputs = batch.model_inputs(device)
            labels, weights = inputs.pop("labels"), inputs.pop("loss_weights", None)
            with _autocast(device, cfg):
                logits = engine(**inputs).logits
            # the per-position loss once: the training loss and the per-task log figures both come from it
            ce = token_losses(logits, labels)
            loss = weighted_causal_lm_loss(logits, labels, weights, ce=ce)
            if cfg.ctc_weight > 0:
                ctc, ctc_n = speech_ctc_loss(logits, batch.input_ids, batch.ctc_targets, state.vocab)
                loss = loss + cfg.ctc_weight * ctc
                if ctc_n:
                    window_ctc.append(float(ctc.detach()))
            if engine.all_finite(loss.detach()):
                engine.backward(loss)
            else:
                applied = False  # this micro-batch is skipped in every process
            add_task_losses(window_task_loss, ce.detach(), batch)
            step_loss += float(loss.detach()) / cfg.grad_accum
            for b in every:
                state.tokens_seen += b.num_tokens
                window_tasks.update(b.tasks)
        grad_norm = engine.step(apply=applied)
        step_loss = engine.mean(step_loss) if applied else math.nan
        state.step = step + 1
        state.elapsed_s += time.time() - t_step
        if math.isfinite(step_loss) and math.isfinite(grad_norm):
            bad_in_a_row = 0
            window.append(step_loss)
        else:
            # the update was skipped: count it, stop after too many in a row (the data is consumed either way, so a
            # resumed run sees the same batches)
            state.skipped_steps += 1
            bad_in_a_row += 1
            log.warning("step %d: non-finite %s; update skipped (%d in a row, %d in all)", state.step,
                        "loss" if not math.isfinite(step_loss) else "gradient", bad_in_a_row, state.skipped_steps)
            if bad_in_a_row >= cfg.max_bad_steps:
                raise FloatingPointError(
                    f"{bad_in_a_row} steps in a row had a non-finite loss or gradient (last: step {state.step}, loss "
                    f"{step_loss}); the run stops. Resume from the last checkpoint with a lower --lr or "
                    "--grad-clip, or check the data")
        bar.set_postfix(loss=f"{step_loss:.3f}", lr=f"{lr:.2e}")
        done = state.step
        if done % cfg.log_every == 0 or done == cfg.steps:
            now = time.time()
            rec = {"step": done, "loss": float(np.mean(window)) if window else None, "lr": lr, "grad_norm": grad_norm,
                   "skipped_steps": state.skipped_steps,
                   "tokens_per_s": round((state.tokens_seen - tokens_last) / max(now - t_last, 1e-9), 1),
                   "tasks": dict(window_tasks)}
            rec["loss_per_task"] = {t: v[0] / v[1] for t, v in sorted(window_task_loss.items()) if v[1]}
            if window_ctc:
                rec["ctc_loss"] = float(np.mean(window_ctc))
            state.history.append(rec)
            board.add(done, {"train/loss": rec["loss"], "train/lr": lr, "train/grad_norm": grad_norm,
                             "train/tokens_per_s": rec["tokens_per_s"],
                             **{f"train_loss/{t}": v for t, v in rec["loss_per_task"].items()},
                             **({"train/ctc_loss": rec["ctc_loss"]} if "ctc_loss" in rec else {})})
            if main:
                log.info("step %d: loss %s (%s%s), %.0f tokens/s, lr %.2e, %d skipped", done,
                         "n/a" if rec["loss"] is None else f"{rec['loss']:.3f}",
                         " ".join(f"{t} {v:.2f}" for t, v in rec["loss_per_task"].items()),
                         f"; ctc {rec['ctc_loss']:.2f}" if "ctc_loss" in rec else "", rec["tokens_per_s"], lr,
                         state.skipped_steps)
            window, window_tasks, t_last, tokens_last = [], Counter(), now, state.tokens_seen
            window_ctc = []
            window_task_loss = {}
        if done % cfg.eval_every == 0 or done == cfg.steps:
            metrics = evaluate(model, eval_sets, state.vocab.pad_id, cfg.max_tokens, device, cfg, state.vocab)
            state.history.append({"step": done, **metrics})
            board.add(done, metrics)
            transcripts = transcribe_samples(model, state.vocab, samples, cache, device, cfg) if samples else []
            if main:
                log.info("step %d: train loss %.3f, %s; dropped too long: %s", done, step_loss,
                         " ".join(f"{k}={v:.3f}" for k, v in metrics.items()), dict(sampler.dropped) or "none")
                with open(out / "samples.jsonl", "a", encoding="utf-8") as f:
                    for s in transcripts:
                        log.info("ASR sample %s\n  ref: %s\n  hyp: %s", s["id"], s["reference"], s["hypothesis"])
                        f.write(json.dumps({"step": done, **s}, ensure_ascii=False) + "\n")
                plot_history(state.history, out / "training_curves.png")
        if done % cfg.ckpt_every == 0 or done == cfg.steps:
            save_checkpoint(out, state, sampler, training_state(metrics), cfg.keep_checkpoints, engine)
    bar.close()
    board.close()
    model.eval()
    final = export_checkpoint(out, state, training_state(metrics), engine)
    return TrainResult(model, state.vocab, state.history, start, final)


# --- command line -------------------------------------------------------------------------------------------------
def parse_args(argv: list[str] | None = None) -> tuple[str, str, TrainAlmConfig, bool]:
    """``(corpus, out, config, progress)`` from command-line arguments: ``--config FILE`` (a YAML of
    :class:`TrainAlmConfig` fields, plus ``corpus`` and ``out``), overridden by a ``--flag`` per field, plus
    ``--no-progress`` for logs without a progress bar. ``--local_rank`` (passed by the ``deepspeed`` launcher) is
    accepted; the rank is read from the environment."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", help="YAML file of settings (training/configs/*.yaml); flags override it")
    p.add_argument("--corpus", help="manifest-form corpus directory (or `corpus:` in --config)")
    p.add_argument("--out", help="run directory, resumed when it holds checkpoints (or `out:` in --config)")
    add_config_arguments(p, TrainAlmConfig)
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True, help="tqdm progress bars")
    p.add_argument("--local_rank", "--local-rank", type=int, default=None, help=argparse.SUPPRESS)
    a = vars(p.parse_args(argv))
    config_file, progress = a.pop("config"), a.pop("progress")
    a.pop("local_rank")
    cfg, rest = config_from_arguments(a, TrainAlmConfig, config_file)
    missing = [k for k in ("corpus", "out") if not rest.get(k)]
    if missing:
        p.error(f"give {' and '.join('--' + k for k in missing)} (or put them in --config)")
    return str(rest["corpus"]), str(rest["out"]), cfg, progress


def main(argv: list[str] | None = None) -> None:
    corpus, out, cfg, progress = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S")
    train(corpus, out, cfg, progress=progress)


if __name__ == "__main__":
    main()
