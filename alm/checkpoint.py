"""The checkpoint directory: everything one trained audio-language model needs, saved and loaded as one unit.

Layout (DESIGN.md, "Checkpoint directory")::

    CKPT/config.json, CKPT/model.safetensors   AlmForCausalLM.save_pretrained (AlmConfig: vocab_layout,
                                               num_codebooks, input_speech, schema_version)
    CKPT/tokenizer.json, CKPT/vocab.json        Vocabulary.save
    CKPT/codec/                                 AudioTokenizer.save_pretrained (config.json + model.safetensors)
    CKPT/units/                                 UnitTokenizer.save_pretrained (config.json + model.safetensors)
    CKPT/extra.json                             optional: training provenance (steps, data, metrics), free-form JSON

:func:`save_checkpoint` writes the whole directory under a temporary name beside the target, fsyncs it and
renames it into place, so a reader sees the old checkpoint or the new one, never half of one.
:func:`load_checkpoint` checks that every piece is there and that the pieces agree (vocabulary layout vs.
model config, codec and unit sizes vs. vocabulary), and raises :class:`CheckpointError` saying what is wrong.

Nothing is unpickled: weights are read from safetensors files only (a ``pytorch_model.bin`` beside them is never
opened), every safetensors header is validated against its file before any weight is read (a truncated or altered
file is named), and a decoder whose weights leave a tensor missing, unused or of another shape than the config
builds is an error, not a silently half-random model.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from huggingface_hub.errors import StrictDataclassError
from safetensors import SafetensorError, safe_open

from alm.config import AlmConfig
from alm.model import AlmForCausalLM
from alm.vocab import CONFIG_FILE, TOKENIZER_FILE, Vocabulary, VocabularyError

if TYPE_CHECKING:
    from codec.base import AudioTokenizer
    from codec.units import UnitTokenizer

log = logging.getLogger(__name__)

WEIGHTS_FILE = "model.safetensors"
WEIGHTS_INDEX_FILE = "model.safetensors.index.json"  # a sharded save writes this instead of WEIGHTS_FILE
CODEC_DIR = "codec"
UNITS_DIR = "units"
EXTRA_FILE = "extra.json"
DEFAULT_CHECKPOINT = Path(__file__).resolve().parent / "pretrained" / "default"


class CheckpointError(ValueError):
    """A directory that is not a usable checkpoint; the message names what is missing or inconsistent."""


def save_checkpoint(directory: str | os.PathLike, model: AlmForCausalLM, vocab: Vocabulary,
                    codec: AudioTokenizer, units: UnitTokenizer, extra: dict[str, Any] | None = None) -> Path:
    """Save a complete checkpoint atomically (temporary directory, fsync, rename over ``directory``).

    Args:
        directory: the checkpoint directory; an existing one is replaced as a whole.
        model: the decoder (a wrapper with ``.module``, as DeepSpeed/DDP make, is unwrapped).
        vocab: its vocabulary, with the text tokenizer.
        codec: the audio tokenizer whose codes the model reads and writes.
        units: the unit tokenizer whose units the model reads.
        extra: JSON-serializable provenance (training step, data, metrics), saved as ``extra.json``.

    Returns:
        The checkpoint directory.

    Raises:
        CheckpointError: the pieces do not fit together (nothing is written then).
    """
    model = getattr(model, "module", model)
    _check_consistent(model.config, vocab, codec, units, where="the pieces to save")
    extra_text = None if extra is None else json.dumps(extra, indent=2, ensure_ascii=False) + "\n"

    out = Path(directory)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp"))
    try:
        model.save_pretrained(tmp, safe_serialization=True)
        vocab.save(tmp)
        codec.save_pretrained(tmp / CODEC_DIR)
        units.save_pretrained(tmp / UNITS_DIR)
        if extra_text is not None:
            (tmp / EXTRA_FILE).write_text(extra_text, encoding="utf-8")
        _fsync_tree(tmp)
        tmp.chmod(0o755)  # mkdtemp made it 0700; a checkpoint is shared like any model
        _replace_dir(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info("saved checkpoint %s", out)
    return out


def load_checkpoint(directory: str | os.PathLike, device: str | torch.device = "cpu", *,
                    model: AlmForCausalLM | None = None,
                    ) -> tuple[AlmForCausalLM, Vocabulary, AudioTokenizer, UnitTokenizer]:
    """Load ``(model, vocab, codec, units)`` from a checkpoint directory, all in eval mode on ``device``.

    The codec is set to use the model's ``num_codebooks``.

    Args:
        directory: a directory written by :func:`save_checkpoint`.
        device: where the networks go.
        model: a decoder already loaded from this directory (e.g. by ``transformers.pipeline``), used
            instead of loading the weights again.

    Raises:
        CheckpointError: the directory is missing, lacks pieces (all of them are named), or its pieces
            disagree with each other.
    """
    from codec import load_codec, load_units  # lazily: the codec's network modules load on demand

    d = Path(directory)
    check_checkpoint_dir(d)
    if model is None:
        model = _load_decoder(d)
    try:
        vocab = Vocabulary.load(d)
    except (OSError, ValueError) as e:
        raise CheckpointError(f"{d}: cannot load the vocabulary: {e}") from e
    try:
        codec = load_codec(d / CODEC_DIR, device=str(device))
    except (OSError, ValueError) as e:
        raise CheckpointError(f"{d / CODEC_DIR}: cannot load the codec: {e}") from e
    try:
        units = load_units(d / UNITS_DIR).to(device)
    except (OSError, ValueError) as e:
        raise CheckpointError(f"{d / UNITS_DIR}: cannot load the unit tokenizer: {e}") from e
    _check_consistent(model.config, vocab, codec, units, where=str(d))
    codec.set_num_codebooks(int(model.config.num_codebooks))
    return model.to(device).eval(), vocab, codec.eval(), units.eval()


def read_extra(directory: str | os.PathLike) -> dict[str, Any]:
    """The ``extra`` dict saved with a checkpoint (``{}`` when none was)."""
    p = Path(directory) / EXTRA_FILE
    return json.loads(p.read_text(encoding="utf-8")) if p.is_file() else {}


def check_checkpoint_dir(directory: str | os.PathLike) -> Path:
    """Raise :class:`CheckpointError` unless ``directory`` holds every file of a checkpoint; returns it."""
    d = Path(directory)
    if not d.exists():
        if d.resolve() == DEFAULT_CHECKPOINT:
            raise CheckpointError(
                f"the shipped default model is missing: {d} does not exist. Train one (`python -m "
                f"training.train_alm --corpus CORPUS --out RUN --preset tiny` writes RUN/final) and load it with "
                f"alm.load('RUN/final')")
        raise CheckpointError(f"no checkpoint at {d}: the directory does not exist")
    if not d.is_dir():
        raise CheckpointError(f"{d} is a file, not a checkpoint directory")
    missing = [name for name in (CONFIG_FILE, TOKENIZER_FILE) if not (d / name).is_file()]
    if not (d / WEIGHTS_FILE).is_file() and not (d / WEIGHTS_INDEX_FILE).is_file():
        missing.append(WEIGHTS_FILE)
    for sub in (CODEC_DIR, UNITS_DIR):
        missing += [f"{sub}/{name}" for name in (CONFIG_FILE, WEIGHTS_FILE) if not (d / sub / name).is_file()]
    if missing:
        raise CheckpointError(f"{d} is not a complete alm checkpoint: missing {', '.join(missing)}")
    try:
        model_type = json.loads((d / CONFIG_FILE).read_text(encoding="utf-8")).get("model_type")
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError) as e:
        raise CheckpointError(f"{d / CONFIG_FILE} is not a JSON object: {e}") from e
    if model_type != "alm":
        raise CheckpointError(f"{d / CONFIG_FILE} describes a {model_type!r} model, not an alm checkpoint")
    for weights in [*_decoder_weight_files(d), d / CODEC_DIR / WEIGHTS_FILE, d / UNITS_DIR / WEIGHTS_FILE]:
        _check_safetensors(weights)
    return d


# --- helpers -------------------------------------------------------------------------------------------------
def _load_decoder(d: Path) -> AlmForCausalLM:
    """The decoder from ``config.json`` + its safetensors weights, every weight accounted for."""
    try:
        # use_safetensors: transformers would otherwise fall back to a pytorch_model.bin pickle.
        # ignore_mismatched_sizes: report tensors of another shape in the loading info (checked below, by name)
        # rather than as a bare RuntimeError.
        model, info = AlmForCausalLM.from_pretrained(d, use_safetensors=True, output_loading_info=True,
                                                     ignore_mismatched_sizes=True)
    except (OSError, ValueError, TypeError, RuntimeError, SafetensorError, StrictDataclassError) as e:
        raise CheckpointError(f"{d}: cannot build the model from {CONFIG_FILE} and its weights: {e}") from e
    tied = {"lm_head.weight"} if model.config.tie_word_embeddings else set()
    missing = sorted(set(info.get("missing_keys", ())) - tied)
    unexpected = sorted(info.get("unexpected_keys", ()))
    mismatched = sorted(f"{k[0]} saved {tuple(k[1])}, built {tuple(k[2])}" if isinstance(k, tuple) and len(k) == 3
                        else str(k) for k in info.get("mismatched_keys", ()))
    if missing or unexpected or mismatched or info.get("error_msgs"):
        raise CheckpointError(
            f"{d / WEIGHTS_FILE} does not fit {d / CONFIG_FILE}: weights missing {missing[:5]}, unexpected "
            f"{unexpected[:5]}, of another shape {mismatched[:5]} ({len(missing)}, {len(unexpected)}, "
            f"{len(mismatched)} in all); the files come from different models or one was altered")
    return model


def _decoder_weight_files(d: Path) -> list[Path]:
    """``model.safetensors``, or the shards a ``model.safetensors.index.json`` names (plain safetensors file names
    in the checkpoint directory only: an index cannot point the loader at a pickle or outside the directory)."""
    if (d / WEIGHTS_FILE).is_file():
        return [d / WEIGHTS_FILE]
    index = d / WEIGHTS_INDEX_FILE
    try:
        weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
        shards = sorted(set(weight_map.values()))
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, AttributeError) as e:
        raise CheckpointError(f"{index} is not a safetensors index (a JSON object with a weight_map): {e}") from e
    bad = [s for s in shards if not isinstance(s, str) or Path(s).name != s or not s.endswith(".safetensors")]
    if bad:
        raise CheckpointError(f"{index} names shards that are not safetensors files in {d}: {bad[:5]}")
    missing = [s for s in shards if not (d / s).is_file()]
    if missing:
        raise CheckpointError(f"{index} names shards that do not exist: {missing[:5]}")
    return [d / s for s in shards]


def _check_safetensors(path: Path) -> None:
    """Raise :class:`CheckpointError` unless ``path`` is a well-formed safetensors file. Reads the header only:
    safetensors checks its length, its JSON, dtypes, shapes and that the tensors' byte ranges tile the rest of
    the file exactly, which catches truncation and most edits of the header."""
    try:
        with safe_open(str(path), framework="pt"):
            pass
    except (SafetensorError, OSError) as e:
        raise CheckpointError(f"{path} is not a valid safetensors file ({e}): it is truncated or was altered; "
                              "copy the checkpoint again") from e


def _check_consistent(config: AlmConfig, vocab: Vocabulary, codec: AudioTokenizer, units: UnitTokenizer,
                      where: str) -> None:
    problems = []
    try:
        layout = config.vocabulary()
    except (ValueError, VocabularyError) as e:
        raise CheckpointError(f"{where}: the model config has no usable vocabulary layout: {e}") from e
    if layout.to_dict() != vocab.to_dict():
        problems.append(f"the model was built for vocabulary layout {layout.to_dict()} but the vocabulary is "
                        f"{vocab.to_dict()}")
    if codec.cardinality != vocab.cardinality:
        problems.append(f"codec has {codec.cardinality} codes per codebook, the vocabulary {vocab.cardinality}")
    if codec.max_codebooks < config.num_codebooks:
        problems.append(f"codec has {codec.max_codebooks} codebooks, the model uses {config.num_codebooks}")
    if units.num_units != vocab.num_units:
        problems.append(f"unit tokenizer has {units.num_units} units, the vocabulary {vocab.num_units}")
    if problems:
        raise CheckpointError(f"{where}: the pieces do not fit together: " + "; ".join(problems))


def _fsync_tree(root: Path) -> None:
    for path in sorted(root.rglob("*"), reverse=True):  # files before the directories that hold them
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    fd = os.open(root, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _replace_dir(new: Path, target: Path) -> None:
    """Rename ``new`` to ``target``. A directory cannot be renamed over a non-empty one, so an existing target
    is first moved aside and deleted after the swap; only in between does ``target`` not exist."""
    old = None
    if target.exists():
        old = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.", suffix=".old"))
        os.replace(target, old / target.name)
    os.replace(new, target)
    fd = os.open(target.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
