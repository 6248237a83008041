"""The shipped baselines (``legacy_seq2seq/pretrained/{ctc,rnnt,las,fastspeech2,hifigan}``): they load alone; the
recognizers (greedy and beam search) transcribe speech the tiny corpus makes (the corpus's voices and sentence
grammar) far better than chance, the vocoder gives its log-mel back, and FastSpeech 2 + the vocoder say the corpus's
sentences so that the shipped RNN-T reads most of them back."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from legacy_seq2seq.inference import load_legacy, normalize_text, transcribe
from training.data import read_manifest
from training.evaluation.metrics import char_error_rate

PRETRAINED = Path(__file__).resolve().parents[1] / "legacy_seq2seq" / "pretrained"


@pytest.mark.parametrize("beam", [1, 4])
@pytest.mark.parametrize("name", ["ctc", "rnnt", "las"])
def test_shipped_recognizer_transcribes(name: str, beam: int, tiny_corpus: Path) -> None:
    torch.set_num_threads(1)
    model = load_legacy(PRETRAINED / name)
    rows = [r for r in read_manifest(tiny_corpus) if r.get("text") and r.get("lang") in ("en", "es")][:12]
    assert rows
    refs = [normalize_text(r["text"]) for r in rows]
    hyps = [transcribe(model, r["path"], beam=beam) for r in rows]
    cer = char_error_rate(refs, hyps)
    assert cer < 0.5, (cer, list(zip(refs, hyps, strict=True))[:3])


def test_shipped_vocoder_resynthesises_corpus_speech(tiny_corpus: Path) -> None:
    # the shipped HiFi-GAN (generator warm-up only, 11,514 steps) turns the log-mel of speech it never saw back
    # into a waveform whose log-mel is close to the original, far closer than an untrained generator's
    from legacy_seq2seq.hifigan import HiFiGANGenerator
    from legacy_seq2seq.inference import features_of

    torch.set_num_threads(1)
    vocoder = load_legacy(PRETRAINED / "hifigan")
    features = vocoder.features
    untrained = HiFiGANGenerator(vocoder.model.config).eval()
    rows = [r for r in read_manifest(tiny_corpus) if r.get("text")][:6]
    assert rows
    errors: dict[str, list[float]] = {"shipped": [], "untrained": []}
    with torch.no_grad():
        for r in rows:
            mel = features_of(r["path"], features)  # [F, n_mels]
            for name, g in (("shipped", vocoder.model), ("untrained", untrained)):
                wav = g(mel.T[None])[0].numpy()
                again = features_of(wav, features)[: mel.shape[0]]
                errors[name].append(float((again - mel[: again.shape[0]]).abs().mean()))
    shipped, random_init = sum(errors["shipped"]) / len(rows), sum(errors["untrained"]) / len(rows)
    assert shipped < 2.0 and shipped < 0.5 * random_init, (shipped, random_init)


def test_shipped_fastspeech2_speaks_corpus_sentences(tiny_corpus: Path) -> None:
    # the shipped FastSpeech 2 (float16 weights) + HiFi-GAN say sentences of the corpus's grammar well enough for
    # the shipped RNN-T to get most characters back, far more than from an untrained FastSpeech 2 of the same shape
    from legacy_seq2seq.fastspeech2 import FastSpeech2
    from legacy_seq2seq.inference import synthesize

    torch.set_num_threads(1)
    tts, vocoder, asr = (load_legacy(PRETRAINED / n) for n in ("fastspeech2", "hifigan", "rnnt"))
    assert isinstance(tts.model, FastSpeech2) and all(p.dtype == torch.float32 for p in tts.model.parameters())
    torch.manual_seed(0)
    untrained = replace(tts, model=FastSpeech2(tts.model.config).eval())
    rows = [r for r in read_manifest(tiny_corpus) if r.get("text") and r.get("lang") == "en"][:8]
    assert rows
    refs = [normalize_text(r["text"]) for r in rows]
    cer = {}
    for name, model in (("shipped", tts), ("untrained", untrained)):
        hyps = []
        for text in refs:
            audio = synthesize(model, text, vocoder)
            assert audio.dtype == np.float32 and np.isfinite(audio).all() and len(audio) > 0
            hyps.append(transcribe(asr, audio))
        cer[name] = char_error_rate(refs, hyps)
    assert cer["shipped"] < 0.7 and cer["shipped"] < cer["untrained"] - 0.3, cer  # measured 0.53 against 1.00
