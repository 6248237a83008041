"""Shared fixtures: a tiny synthesized corpus made once per test session (seconds, not minutes), and one torch
thread for modules of tiny models."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

TINY_HOURS = 0.03  # about 100 s of speech: every task kind and both splits' speakers appear
N_UNITS = 16  # units of the tiny unit tokenizer


def _tiny_codec_config():  # noqa: ANN202 - imported lazily: conftest loads before every test module
    from codec.neural import CodecConfig

    return CodecConfig(n_filters=4, dimension=16, num_codebooks=4, cardinality=64, kmeans_iters=5)


TINY_CODEC = _tiny_codec_config()


@pytest.fixture(scope="module")
def one_torch_thread() -> Iterator[None]:
    """One intra-op torch thread for a module (``pytestmark = pytest.mark.usefixtures("one_torch_thread")``): tiny
    models gain nothing from threads, and on a busy 2-core machine a second thread only contends (up to 30x
    slower)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from training.data import synthesize_corpus

    logging.getLogger("training").setLevel(logging.WARNING)
    out = tmp_path_factory.mktemp("corpus")
    synthesize_corpus(out, hours=TINY_HOURS, seed=0, jobs=2, progress=False)
    return out


@pytest.fixture(scope="session")
def tokenizer_dirs(tiny_corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A tiny codec (codebooks k-means-initialized by one training pass) and MFCC units, saved."""
    import torch

    from codec import load_audio
    from codec.neural import NeuralCodec
    from training.data import read_manifest
    from training.train_units import fit_mfcc_units

    out = tmp_path_factory.mktemp("tokenizers")
    wavs = [load_audio(r["path"]) for r in read_manifest(tiny_corpus)[:8]]
    torch.manual_seed(0)
    codec = NeuralCodec(TINY_CODEC).train()
    with torch.no_grad():
        codec(torch.cat(wavs)[: 4 * 16000].reshape(4, -1))
    codec.eval().save_pretrained(out / "codec")
    fit_mfcc_units(wavs, n_clusters=N_UNITS, seed=0).save_pretrained(out / "units")
    return out / "codec", out / "units"


@pytest.fixture(scope="session")
def held_out_speech():  # noqa: ANN201 - returns the speaker function below
    """``speak(sentences)``: each ``(lang, text)`` spoken by a held-out (test-split) voice, voices taken in turn;
    ``[T]`` float32 arrays at 16 kHz, cached for the session."""
    import numpy as np

    from training.data.engines import speaker_available, synthesize
    from training.data.voices import speakers

    cache: dict[tuple[int, str, str], np.ndarray] = {}

    def speak(sentences: list[tuple[str, str]]) -> list[np.ndarray]:
        out = []
        for i, (lang, text) in enumerate(sentences):
            voices = [s for s in speakers(lang, split="test") if speaker_available(s)]
            key = (i, lang, text)
            if key not in cache:
                cache[key] = synthesize(voices[i % len(voices)], text, lang)
            out.append(cache[key])
        return out

    return speak
