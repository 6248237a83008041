"""Tampered, truncated and hostile checkpoint directories: each a clear ``CheckpointError``, nothing unpickled.

Every case starts from a copy of the shipped default (``alm/pretrained/default``) and breaks one thing: the
weights file (truncated, a bit flipped anywhere in its header, a header length beyond the file), a missing piece,
``config.json`` (invalid JSON, wrong types, dimensions that do not fit the weights), the codec and unit configs,
the tokenizer, and pickles planted beside or instead of the safetensors files (whose unpickling would create a
marker file). Loading must raise :class:`CheckpointError` naming the file and the problem, or, where the change
is harmless, load exactly the original weights. The baselines' model directories (``legacy_seq2seq.checkpoint``,
here a tiny CTC model) get the same treatment. A last test reads the source of every library package and fails
on any ``torch.load`` without ``weights_only=True``, any ``pickle`` load and any ``np.load(allow_pickle=True)``.
"""

from __future__ import annotations

import ast
import json
import logging
import os
import pathlib
import pickle
import shutil
import struct
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import alm
from alm.checkpoint import DEFAULT_CHECKPOINT, CheckpointError, load_checkpoint
from legacy_seq2seq.checkpoint import CheckpointError as LegacyCheckpointError
from legacy_seq2seq.ctc import CTCConfig, CTCModel

REPO = Path(__file__).resolve().parents[1]
LIBRARY_PACKAGES = ("alm", "codec", "legacy_seq2seq", "training", "safety")
SCALE = max(1, int(os.environ.get("ALM_FUZZ_SCALE", "1")))
WEIGHTS = "model.safetensors"
REQUIRED = ["config.json", WEIGHTS, "tokenizer.json", "codec/config.json", f"codec/{WEIGHTS}", "units/config.json",
            f"units/{WEIGHTS}"]


@pytest.fixture(scope="module", autouse=True)
def quiet_transformers() -> Iterator[None]:
    """transformers logs a report per tampered load before we raise; the assertions say what matters."""
    logging.disable(logging.WARNING)
    yield
    logging.disable(logging.NOTSET)


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A private copy of the shipped checkpoint: clones link to it, so nothing can write into the repository."""
    out = tmp_path_factory.mktemp("pristine") / "default"
    shutil.copytree(DEFAULT_CHECKPOINT, out, ignore=shutil.ignore_patterns("*.png"))
    return out


@pytest.fixture(scope="module")
def weights_blob(pristine: Path) -> bytes:
    return (pristine / WEIGHTS).read_bytes()


@pytest.fixture(scope="module")
def original_weights(pristine: Path) -> dict[str, torch.Tensor]:
    model, *_ = load_checkpoint(pristine)
    return {k: v.clone() for k, v in model.state_dict().items()}


_clone_count = 0


def clone(pristine: Path, base: Path) -> Path:
    """A checkpoint directory whose JSON files are copies and whose weights are symlinks to ``pristine``.

    Tamper only through :func:`replace` (or by deleting), which unlinks before writing, so a symlinked weights
    file is replaced, never written through.
    """
    global _clone_count
    _clone_count += 1
    out = base / f"ckpt{_clone_count}"

    def copy(src: str, dst: str) -> None:
        if src.endswith(".safetensors"):
            os.symlink(src, dst)
        else:
            shutil.copy2(src, dst)

    shutil.copytree(pristine, out, copy_function=copy)
    return out


def replace(path: Path, data: bytes | str) -> None:
    path.unlink(missing_ok=True)
    path.write_bytes(data if isinstance(data, bytes) else data.encode("utf-8"))


def _fifty_phones(path: Path) -> dict[str, object]:
    """Phone units name their symbols: a changed count changes the list too (else the config check speaks first)."""
    phones = json.loads(path.read_text()).get("phones")
    return {} if phones is None else {"phones": phones[:50]}


def edit_json(path: Path, **changes: object) -> None:
    config = json.loads(path.read_text())
    config.update(changes)
    replace(path, json.dumps(config))


def header_length(path: Path) -> int:
    return struct.unpack("<Q", path.read_bytes()[:8])[0]


def assert_clear_error(ckpt: Path, *fragments: str) -> CheckpointError:
    """``load_checkpoint`` (and ``alm.load``) raise CheckpointError whose message holds every fragment."""
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(ckpt)
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in: {message}"
    return info.value


# --------------------------------------------------------------------------------------------- weights files


@pytest.mark.parametrize("rel", [WEIGHTS, f"codec/{WEIGHTS}", f"units/{WEIGHTS}"])
@pytest.mark.parametrize("keep", ["half", "all_but_one", "header_only", "4", "0"])
def test_truncated_weights_are_named(pristine: Path, tmp_path: Path, rel: str, keep: str) -> None:
    ckpt = clone(pristine, tmp_path)
    data = (pristine / rel).read_bytes()
    n = {"half": len(data) // 2, "all_but_one": len(data) - 1, "header_only": 8 + header_length(pristine / rel),
         "4": 4, "0": 0}[keep]
    replace(ckpt / rel, data[:n])
    assert_clear_error(ckpt, str(ckpt / rel), "not a valid safetensors file", "truncated or was altered")


@pytest.mark.parametrize("declared", [2**63, 10**9, "file", "file+1", 0])
def test_header_length_beyond_the_file(pristine: Path, tmp_path: Path, declared: int | str) -> None:
    ckpt = clone(pristine, tmp_path)
    data = (pristine / WEIGHTS).read_bytes()
    size = {"file": len(data), "file+1": len(data) + 1}.get(declared, declared)  # type: ignore[call-overload]
    replace(ckpt / WEIGHTS, struct.pack("<Q", size) + data[8:])
    assert_clear_error(ckpt, str(ckpt / WEIGHTS), "not a valid safetensors file")


@settings(max_examples=40 * SCALE, deadline=timedelta(seconds=60), database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_any_bit_flipped_in_the_header_is_caught(pristine: Path, weights_blob: bytes, tmp_path: Path,
                                                 original_weights: dict[str, torch.Tensor],
                                                 data: st.DataObject) -> None:
    blob = bytearray(weights_blob)
    position = data.draw(st.integers(0, 8 + struct.unpack("<Q", blob[:8])[0] - 1), label="byte")
    bit = data.draw(st.integers(0, 7), label="bit")
    blob[position] ^= 1 << bit
    ckpt = clone(pristine, tmp_path)
    replace(ckpt / WEIGHTS, bytes(blob))
    try:
        model, *_ = load_checkpoint(ckpt)
    except CheckpointError as e:
        assert WEIGHTS in str(e), str(e)
        return
    finally:
        shutil.rmtree(ckpt)  # 17 MB per example
    # a flip that leaves the header meaning the same must load exactly the original weights
    loaded = model.state_dict()
    assert loaded.keys() == original_weights.keys()
    assert all(torch.equal(loaded[k], original_weights[k]) for k in loaded), f"byte {position} bit {bit}"


def test_renamed_tensor_is_not_silently_random(pristine: Path, tmp_path: Path) -> None:
    """Same length, valid header: transformers alone would leave the layer randomly initialized."""
    ckpt = clone(pristine, tmp_path)
    blob = (pristine / WEIGHTS).read_bytes()
    replace(ckpt / WEIGHTS, blob.replace(b"model.layers.0.mlp.down_proj", b"model.layers.0.mlp.down_prox", 1))
    assert_clear_error(ckpt, "does not fit", "model.layers.0.mlp.down_proj.weight", "model.layers.0.mlp.down_prox")


# --------------------------------------------------------------------------------------------- missing pieces


@pytest.mark.parametrize("rel", REQUIRED)
def test_missing_file_is_named(pristine: Path, tmp_path: Path, rel: str) -> None:
    ckpt = clone(pristine, tmp_path)
    (ckpt / rel).unlink()
    assert_clear_error(ckpt, "not a complete alm checkpoint", f"missing {rel}")


def test_missing_directory_and_file_instead_of_directory(tmp_path: Path) -> None:
    assert_clear_error(tmp_path / "nowhere", "does not exist")
    (tmp_path / "file").write_text("{}")
    assert_clear_error(tmp_path / "file", "is a file, not a checkpoint directory")


def test_missing_vocab_json_falls_back_to_the_layout_in_config(pristine: Path, tmp_path: Path,
                                                               original_weights: dict[str, torch.Tensor]) -> None:
    ckpt = clone(pristine, tmp_path)
    (ckpt / "vocab.json").unlink()  # optional: config.json holds the same layout
    model, vocab, *_ = load_checkpoint(ckpt)
    assert vocab.to_dict() == json.loads((pristine / "vocab.json").read_text())
    assert all(torch.equal(v, original_weights[k]) for k, v in model.state_dict().items())


# --------------------------------------------------------------------------------------------- configs


CONFIG_CASES: dict[str, tuple[str, Callable[[Path], None], tuple[str, ...]]] = {
    "invalid json": ("config.json", lambda p: replace(p, "{not json"), ("config.json", "not a JSON object")),
    "a list": ("config.json", lambda p: replace(p, "[1, 2]"), ("config.json", "not a JSON object")),
    "not utf-8": ("config.json", lambda p: replace(p, b'{"model_type": "\xff"}'), ("config.json",)),
    "another model": ("config.json", lambda p: edit_json(p, model_type="llama"), ("config.json", "'llama'")),
    "hidden_size str": ("config.json", lambda p: edit_json(p, hidden_size="big"), ("config.json", "hidden_size")),
    "layout a str": ("config.json", lambda p: edit_json(p, vocab_layout="x"), ("config.json", "layout")),
    "num_codebooks str": ("config.json", lambda p: edit_json(p, num_codebooks="2"), ("config.json",)),
    "num_codebooks 3": ("config.json", lambda p: edit_json(p, num_codebooks=3), ("config.json", "num_codebooks")),
    "hidden_size 128": ("config.json", lambda p: edit_json(p, hidden_size=128, head_dim=32),
                        (WEIGHTS, "does not fit", "model.embed_tokens.weight saved (", ", 256), built (", ", 128)")),
    "2 layers": ("config.json", lambda p: edit_json(p, num_hidden_layers=2),
                 (WEIGHTS, "does not fit", "unexpected ['model.layers.2.")),
    "6 layers": ("config.json", lambda p: edit_json(p, num_hidden_layers=6),
                 (WEIGHTS, "does not fit", "missing ['model.layers.4.")),
    "untied head": ("config.json", lambda p: edit_json(p, tie_word_embeddings=False),
                    (WEIGHTS, "does not fit", "missing ['lm_head.weight']")),
    "vocab json garbage": ("vocab.json", lambda p: replace(p, "{"), ("vocab.json", "not valid JSON")),
    "vocab json list": ("vocab.json", lambda p: replace(p, "[]"), ("vocab.json", "JSON list")),
    "vocab text size": ("vocab.json", lambda p: edit_json(p, text_vocab_size=999), ("tokenizer has 1000",)),
    "tokenizer garbage": ("tokenizer.json", lambda p: replace(p, "{"), ("tokenizer.json", "not a valid tokenizer")),
    "codec json garbage": ("codec/config.json", lambda p: replace(p, "{"), ("codec/config.json", "not valid JSON")),
    "codec json list": ("codec/config.json", lambda p: replace(p, "[]"), ("codec/config.json", "JSON list")),
    "codec filters": ("codec/config.json", lambda p: edit_json(p, n_filters=8),
                      (f"codec/{WEIGHTS}", "weights do not match the config")),
    "codec field type": ("codec/config.json", lambda p: edit_json(p, n_filters="x"), ("codec/config.json",)),
    "codec unknown class": ("codec/config.json", lambda p: edit_json(p, tokenizer_class="Evil"),
                            ("codec", "'Evil'")),
    "units count": ("units/config.json", lambda p: edit_json(p, num_units=50, **_fifty_phones(p)),
                    (f"units/{WEIGHTS}", "weights do not match the config")),
    "units field type": ("units/config.json", lambda p: edit_json(p, num_units="x"), ("units/config.json",)),
}


@pytest.mark.parametrize("case", sorted(CONFIG_CASES))
def test_tampered_configs_are_named(pristine: Path, tmp_path: Path, case: str) -> None:
    rel, tamper, fragments = CONFIG_CASES[case]
    ckpt = clone(pristine, tmp_path)
    tamper(ckpt / rel)
    assert_clear_error(ckpt, *fragments)


# --------------------------------------------------------------------------------------------- planted pickles


class _Trap:
    """Unpickling this creates ``marker``: proof that someone unpickled the file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return pathlib.Path.touch, (self.marker,)


def plant(path: Path, marker: Path) -> None:
    payload = pickle.dumps(_Trap(marker))
    replace(path, payload)
    pickle.loads(payload)  # the trap is live: unpickling it does create the marker ...
    assert marker.exists()
    marker.unlink()  # ... so its absence after loading means nothing unpickled it


@pytest.mark.parametrize("where", ["", "codec/", "units/"])
def test_pickle_beside_the_safetensors_is_never_opened(pristine: Path, tmp_path: Path, where: str,
                                                       original_weights: dict[str, torch.Tensor]) -> None:
    ckpt, marker = clone(pristine, tmp_path), tmp_path / "unpickled"
    for name in ("pytorch_model.bin", "model.bin", "model.pt", "model.pth", "model.ckpt"):
        plant(ckpt / where / name, marker)
    model, *_ = load_checkpoint(ckpt)
    assert not marker.exists()
    assert all(torch.equal(v, original_weights[k]) for k, v in model.state_dict().items())


@pytest.mark.parametrize("where", ["", "codec/", "units/"])
def test_pickle_instead_of_the_safetensors_is_an_error_not_a_load(pristine: Path, tmp_path: Path,
                                                                  where: str) -> None:
    ckpt, marker = clone(pristine, tmp_path), tmp_path / "unpickled"
    (ckpt / where / WEIGHTS).unlink()
    plant(ckpt / where / "pytorch_model.bin", marker)
    assert_clear_error(ckpt, f"missing {where}{WEIGHTS}")
    with pytest.raises(CheckpointError, match="missing"):
        alm.load(ckpt)  # the user's entry point
    assert not marker.exists()


@pytest.mark.parametrize("where", ["", "codec/", "units/"])
def test_pickle_renamed_to_safetensors_is_an_error(pristine: Path, tmp_path: Path, where: str) -> None:
    ckpt, marker = clone(pristine, tmp_path), tmp_path / "unpickled"
    plant(ckpt / where / WEIGHTS, marker)
    assert_clear_error(ckpt, str(ckpt / where / WEIGHTS), "not a valid safetensors file")
    assert not marker.exists()


def test_sharded_index_cannot_point_at_a_pickle(pristine: Path, tmp_path: Path) -> None:
    ckpt, marker = clone(pristine, tmp_path), tmp_path / "unpickled"
    (ckpt / WEIGHTS).unlink()
    plant(ckpt / "pytorch_model.bin", marker)
    index = {"metadata": {}, "weight_map": {"model.embed_tokens.weight": "pytorch_model.bin"}}
    replace(ckpt / "model.safetensors.index.json", json.dumps(index))
    assert_clear_error(ckpt, "model.safetensors.index.json", "not safetensors files", "pytorch_model.bin")
    index["weight_map"] = {"model.embed_tokens.weight": "../../elsewhere.safetensors"}
    replace(ckpt / "model.safetensors.index.json", json.dumps(index))
    assert_clear_error(ckpt, "not safetensors files", "elsewhere")
    replace(ckpt / "model.safetensors.index.json", "[]")
    assert_clear_error(ckpt, "not a safetensors index")
    assert not marker.exists()


# --------------------------------------------------------------------------------------------- baseline models


@pytest.fixture(scope="module")
def legacy_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny CTC baseline saved with ``legacy_seq2seq.checkpoint.save_model_dir`` (the format of every baseline)."""
    torch.manual_seed(0)
    config = CTCConfig(n_mels=8, d_model=16, n_heads=2, n_layers=1, conv_kernel=3, vocab_size=6)
    return CTCModel(config).save_pretrained(tmp_path_factory.mktemp("legacy") / "ctc")


LEGACY_CASES: dict[str, tuple[str, Callable[[Path], None], tuple[str, ...]]] = {
    "truncated": (WEIGHTS, lambda p: replace(p, p.read_bytes()[: p.stat().st_size // 2]),
                  (WEIGHTS, "not a valid safetensors file")),
    "header length": (WEIGHTS, lambda p: replace(p, struct.pack("<Q", 2**40) + p.read_bytes()[8:]),
                      (WEIGHTS, "not a valid safetensors file")),
    "pickle renamed": (WEIGHTS, lambda p: replace(p, pickle.dumps({"w": 1})), (WEIGHTS, "not a valid safetensors")),
    "missing weights": (WEIGHTS, lambda p: p.unlink(), (f"has no {WEIGHTS}",)),
    "missing config": ("config.json", lambda p: p.unlink(), ("has no config.json",)),
    "invalid json": ("config.json", lambda p: replace(p, "{"), ("config.json", "not valid JSON")),
    "not utf-8": ("config.json", lambda p: replace(p, b'{"d_model": "\xff"}'), ("config.json", "not valid JSON")),
    "a list": ("config.json", lambda p: replace(p, "[]"), ("config.json", "JSON list")),
    "another class": ("config.json", lambda p: edit_json(p, model_class="Tacotron2"), ("'Tacotron2'",)),
    "unknown field": ("config.json", lambda p: edit_json(p, evil=1), ("config.json", "evil")),
    "field type": ("config.json", lambda p: edit_json(p, d_model="x"), ("config.json", "invalid CTCConfig")),
    "wrong width": ("config.json", lambda p: edit_json(p, d_model=32), ("weights do not match the config",)),
    "more layers": ("config.json", lambda p: edit_json(p, n_layers=2), ("weights do not match", "missing")),
}


@pytest.mark.parametrize("case", sorted(LEGACY_CASES))
def test_tampered_baseline_directories_are_named(legacy_dir: Path, tmp_path: Path, case: str) -> None:
    rel, tamper, fragments = LEGACY_CASES[case]
    d = tmp_path / "ctc"
    shutil.copytree(legacy_dir, d)
    tamper(d / rel)
    with pytest.raises(LegacyCheckpointError) as info:
        CTCModel.from_pretrained(d)
    for fragment in fragments:
        assert fragment in str(info.value), f"{fragment!r} not in: {info.value}"


def test_pickle_beside_a_baseline_is_never_opened(legacy_dir: Path, tmp_path: Path) -> None:
    d, marker = tmp_path / "ctc", tmp_path / "unpickled"
    shutil.copytree(legacy_dir, d)
    plant(d / "pytorch_model.bin", marker)
    model = CTCModel.from_pretrained(d)
    assert not marker.exists()
    original = CTCModel.from_pretrained(legacy_dir).state_dict()
    assert all(torch.equal(v, original[k]) for k, v in model.state_dict().items())
    (d / WEIGHTS).unlink()
    with pytest.raises(LegacyCheckpointError, match=f"has no {WEIGHTS}"):
        CTCModel.from_pretrained(d)
    assert not marker.exists()


# --------------------------------------------------------------------------------------------- source inspection


def _library_sources() -> Iterator[Path]:
    for package in LIBRARY_PACKAGES:
        yield from sorted((REPO / package).rglob("*.py"))


def _unsafe_loads(tree: ast.AST) -> Iterator[tuple[int, str]]:
    """``(line, what)`` of every call that can unpickle: torch.load without weights_only=True, pickle/dill/joblib
    loads, numpy loads with allow_pickle=True."""
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module in ("pickle", "_pickle", "cPickle", "dill", "joblib"):
            bad = [a.name for a in node.names if a.name in ("load", "loads", "Unpickler")]
            if bad:
                yield node.lineno, f"from {node.module} import {', '.join(bad)}"
        if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
            continue
        owner, name = ast.unparse(node.func.value), node.func.attr
        keywords = {k.arg: k.value for k in node.keywords}
        if owner in ("torch", "torch.serialization") and name == "load":
            flag = keywords.get("weights_only")
            if not (isinstance(flag, ast.Constant) and flag.value is True):
                yield node.lineno, f"{owner}.load without weights_only=True"
        elif owner in ("pickle", "_pickle", "cPickle", "dill", "joblib", "cloudpickle") and name in (
                "load", "loads", "Unpickler"):
            yield node.lineno, f"{owner}.{name}"
        elif owner in ("np", "numpy") and name == "load":
            flag = keywords.get("allow_pickle")
            if flag is not None and not (isinstance(flag, ast.Constant) and flag.value is False):
                yield node.lineno, f"{owner}.load with allow_pickle"


def test_no_library_module_unpickles() -> None:
    sources = list(_library_sources())
    assert len(sources) > 50  # the walk really found the packages
    findings = [f"{path.relative_to(REPO)}:{line}: {what}" for path in sources
                for line, what in _unsafe_loads(ast.parse(path.read_text(encoding="utf-8"), str(path)))]
    assert not findings, "code that can unpickle:\n" + "\n".join(findings)


def test_the_inspection_catches_what_it_looks_for() -> None:
    bad = ("import pickle, torch, numpy as np\nfrom pickle import loads\ntorch.load(p)\n"
           "torch.load(p, weights_only=False)\npickle.load(f)\nnp.load(p, allow_pickle=True)\n"
           "torch.load(p, weights_only=True)\nnp.load(p)\n")
    assert sorted(line for line, _ in _unsafe_loads(ast.parse(bad))) == [2, 3, 4, 5, 6]
