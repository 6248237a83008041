"""The shipped baseline recognizers (``legacy_seq2seq/pretrained/{ctc,rnnt}``): they load alone, and transcribe
speech the tiny corpus makes (the corpus's voices and sentence grammar) far better than chance."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from legacy_seq2seq.inference import load_legacy, normalize_text, transcribe
from training.data import read_manifest
from training.evaluation.metrics import char_error_rate

PRETRAINED = Path(__file__).resolve().parents[1] / "legacy_seq2seq" / "pretrained"


@pytest.mark.parametrize("name", ["ctc", "rnnt"])
def test_shipped_recognizer_transcribes(name: str, tiny_corpus: Path) -> None:
    torch.set_num_threads(1)
    model = load_legacy(PRETRAINED / name)
    rows = [r for r in read_manifest(tiny_corpus) if r.get("text") and r.get("lang") in ("en", "es")][:12]
    assert rows
    refs = [normalize_text(r["text"]) for r in rows]
    hyps = [transcribe(model, r["path"]) for r in rows]
    cer = char_error_rate(refs, hyps)
    assert cer < 0.5, (cer, list(zip(refs, hyps, strict=True))[:3])
