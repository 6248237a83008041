"""The shipped default model: it loads from the repository with no training, and what it learned is real.

Greedy transcripts of a small, briefly trained model are rough, so the learning check is one that holds only for a
model that listens and cannot hold by chance: new sentences are spoken here by *held-out* voices, and for each
pair of utterances the true pairing of audio and transcript must be likelier than the swapped one
(``p(a|A) p(b|B) > p(b|A) p(a|B)``: the text prior cancels, only what the audio says counts).
"""

from __future__ import annotations

from itertools import combinations

import numpy as np
import pytest
import torch

import alm
from alm.checkpoint import DEFAULT_CHECKPOINT
from alm.prompts import IGNORE_INDEX, asr_example


@pytest.fixture(scope="module")
def shipped() -> alm.AudioLanguageModel:
    return alm.load()


def _transcript_logprob(m: alm.AudioLanguageModel, units: list[int], lang: str, text: str) -> float:
    word_phones = None
    if m.model.config.asr_word_phones:  # the model spells each word's phones before it: score that target
        from codec.word_phones import WordPhones

        lexicon = WordPhones(m.units)
        lexicon.add([(lang, text)], progress=False)
        word_phones = lexicon(lang, text)
    ex = asr_example(m.vocab, lang, units, text, word_phones=word_phones)
    ids = torch.tensor([ex.input_ids])
    with torch.no_grad():
        logp = m.model(input_ids=ids).logits[0, :-1].log_softmax(-1)
    labels = torch.tensor(ex.labels[1:])
    keep = labels != IGNORE_INDEX
    return float(logp[keep].gather(1, labels[keep, None]).mean())


def test_shipped_model_loads_with_its_parts(shipped: alm.AudioLanguageModel) -> None:
    cfg = shipped.model.config
    assert shipped.path == DEFAULT_CHECKPOINT and cfg.vocab_size == shipped.vocab.size
    assert shipped.codec.num_codebooks == cfg.num_codebooks == shipped.num_codebooks
    assert cfg.input_speech == "units" and shipped.units.num_units == shipped.vocab.num_units
    assert set(shipped.languages) == {"en", "es"}


SENTENCES = {
    "en": ["The garden needs water every morning.", "My brother bought a small red car.",
           "Please close the window before you leave.", "We watched a long movie last night."],
    "es": ["El perro duerme en la cocina.", "Mañana vamos a visitar a mi abuela.",
           "La tienda cierra a las ocho."],
}


def _held_out_speech() -> list[tuple[str, str, np.ndarray]]:
    """``(lang, text, wav)`` of new sentences in the voices held out of training."""
    from training.data.engines import speaker_available, synthesize
    from training.data.voices import speakers

    out = []
    for lang, texts in SENTENCES.items():
        voices = [s for s in speakers(lang, split="test") if speaker_available(s)]
        for i, text in enumerate(texts):
            out.append((lang, text, synthesize(voices[i % len(voices)], text, lang)))
    return out


def test_shipped_model_listens(shipped: alm.AudioLanguageModel) -> None:
    speech = _held_out_speech()
    units = [shipped._units(torch.from_numpy(wav)) for _, _, wav in speech]
    wins = []
    for i, j in combinations(range(len(speech)), 2):
        (lang, a, _), (lang_b, b, _) = speech[i], speech[j]
        if lang != lang_b:
            continue
        true = _transcript_logprob(shipped, units[i], lang, a) + _transcript_logprob(shipped, units[j], lang, b)
        swapped = _transcript_logprob(shipped, units[i], lang, b) + _transcript_logprob(shipped, units[j], lang, a)
        wins.append(true > swapped)
    assert len(wins) == 9 and np.mean(wins) >= 0.75, wins


def test_shipped_model_speaks(shipped: alm.AudioLanguageModel) -> None:
    out = shipped.synthesize("Good morning.", "en", seed=0)
    assert out.sample_rate == 16000 and 0.2 < out.duration < 10 and np.isfinite(out.audio).all()
    assert float(np.abs(out.audio).max()) > 0.01  # not silence
