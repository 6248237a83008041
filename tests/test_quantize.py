"""int8 dynamic quantization of the decoder (alm.quantize): smaller, close to float32, same greedy transcripts
(mostly), and batched decoding still matches one-at-a-time decoding on the quantized model."""

from __future__ import annotations

import jiwer
import numpy as np
import pytest
import torch

import alm
from alm.batching import run_batch
from alm.quantize import is_quantized, module_bytes, quantize_int8

SENTENCES = [("en", "The garden needs water every morning."), ("es", "La tienda cierra a las ocho."),
             ("en", "Please close the window."), ("en", "My brother bought a small red car.")]


@pytest.fixture(scope="module")
def speech(held_out_speech) -> list[np.ndarray]:  # noqa: ANN001 - conftest's speaker
    return held_out_speech(SENTENCES)


@pytest.fixture(scope="module")
def pair() -> tuple[alm.AudioLanguageModel, alm.AudioLanguageModel]:
    """(float32, int8) copies of the shipped model."""
    return alm.load(watermark=False), quantize_int8(alm.load(watermark=False))


def test_quantized_decoder_is_smaller_and_int8(pair: tuple) -> None:
    fp32, int8 = pair
    assert is_quantized(int8) and not is_quantized(fp32)
    linear = torch.ao.nn.quantized.dynamic.Linear
    layers = [m for m in int8.model.modules() if isinstance(m, linear)]
    assert len(layers) == 7 * int8.model.config.num_hidden_layers + 1  # q k v o gate up down per layer, lm_head
    assert not any(isinstance(m, torch.nn.Linear) and not isinstance(m, linear) for m in int8.model.modules())
    assert module_bytes(int8.model) < 0.5 * module_bytes(fp32.model)
    # the embedding tied to the head keeps its float32 values
    torch.testing.assert_close(int8.model.model.embed_tokens.weight, fp32.model.model.embed_tokens.weight)


def test_quantized_logits_stay_close(pair: tuple, speech: list[np.ndarray]) -> None:
    fp32, int8 = pair
    job = fp32.prepare("asr", speech[0], language="en")
    prompt = job.candidates["en"]
    ids = torch.tensor([prompt + fp32.run(job)[1]])
    with torch.no_grad():
        a, b = fp32.model(ids).logits[0], int8.model(ids).logits[0]  # [L, V]
    assert float((a - b).norm() / a.norm()) < 0.3
    out = slice(len(prompt) - 1, ids.shape[1] - 1)  # positions that predict the transcript
    assert float((a[out].argmax(-1) == b[out].argmax(-1)).float().mean()) >= 0.8


def test_quantized_transcripts_mostly_equal(pair: tuple, speech: list[np.ndarray]) -> None:
    fp32, int8 = pair
    ref = [fp32.transcribe(w, language=lang).text for w, (lang, _) in zip(speech, SENTENCES)]
    hyp = [int8.transcribe(w, language=lang).text for w, (lang, _) in zip(speech, SENTENCES)]
    truth = [text for _, text in SENTENCES]
    # greedy decoding diverges after one flipped token, so the int8 model is held to the fp32 model's accuracy
    assert all(ref) and all(hyp) and jiwer.cer(truth, hyp) <= jiwer.cer(truth, ref) + 0.1, list(zip(ref, hyp))
    jobs = [int8.prepare("asr", w, language=lang) for w, (lang, _) in zip(speech, SENTENCES)]
    # dynamic int8 scales activations per batch, so a batch may flip a token and greedy decoding then diverges for
    # the rest of that sentence: held to about the same accuracy instead (one diverged sentence of four fits)
    batched = [int8.vocab.decode_text(o.unwrap()[1]).strip() for o in run_batch(int8, jobs)]
    assert all(batched) and jiwer.cer(truth, batched) <= jiwer.cer(truth, hyp) + 0.15, list(zip(hyp, batched))


def test_quantize_refuses_twice(pair: tuple) -> None:
    with pytest.raises(ValueError, match="already"):
        quantize_int8(pair[1])
