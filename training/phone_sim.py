"""Text-only ASR examples for a model that reads ``"phone"`` units: simulated unit sequences from espeak-ng phones.

``"phone"`` units (:mod:`codec.units`) are a phone-CTC recognizer's frame-wise decisions, so the collapsed units
of an utterance are close to its espeak-ng phone string with CTC blanks between the phones (measured on corpus
speech: ``ɡ _ o _ ʊ _ | _ b _ æ _ k``). Any sentence can therefore become an ASR training pair without audio:
phonemize it (the same ``espeak-ng --ipa`` symbols the recognizer was trained on), put blanks between phones and
corrupt it at about the recognizer's phone error rate (substitutions, deletions, insertions). A decoder that
only sees the corpus' few thousand sentences can memorise them and learn to ignore its speech input; thousands
of extra sentences it can only get right by reading the units teach it to read them (the text-to-unit
augmentation of speech-LM work, possible here because the units are phones).

Nothing here is written for a library's lack: the phonemes come from espeak-ng (through
:func:`training.finetune_units.phone_table`, cached in a JSON file) and the corruption is a few lines of numpy.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from codec.units import UnitTokenizer
from training.alm_data import collapse

log = logging.getLogger(__name__)

BLANK = 0  # the CTC blank is unit 0 of "phone" units


@dataclass
class SimConfig:
    """How simulated units are corrupted (rates per phone; measured recognizer PER is 0.16-0.26).

    Attributes:
        blank_prob: a blank follows a phone (the rest run straight into the next phone).
        sub_prob, del_prob, ins_prob: a phone is replaced by / dropped / followed by a random phone.
    """

    blank_prob: float = 0.85
    sub_prob: float = 0.08
    del_prob: float = 0.05
    ins_prob: float = 0.03


class PhoneSimulator:
    """Sentences -> phone ids (cached) -> simulated collapsed ``"phone"`` unit sequences.

    Args:
        units: the ``"phone"`` tokenizer whose inventory (``config.phones``) the ids index.
        cache: JSON file of ``{"lang\\ttext": [phones]}`` (read if present, extended and rewritten atomically).
        config: corruption rates.
    """

    def __init__(self, units: UnitTokenizer, cache: str | Path | None = None, config: SimConfig | None = None) -> None:
        if units.kind != "phone" or not units.config.phones:
            raise ValueError(f"simulated ASR input needs 'phone' units, not {units.kind!r}")
        self.phones = list(units.config.phones)
        self.index = {p: i for i, p in enumerate(self.phones) if i != BLANK}
        self.config = config or SimConfig()
        self.cache = None if cache is None else Path(cache)

    def phonemize(self, sentences: Iterable[tuple[str, str]], progress: bool = True
                  ) -> dict[tuple[str, str], list[int]]:
        """``{(lang, text): phone ids}`` (the inventory's ids, unknown symbols dropped), through the phone table
        of :func:`training.finetune_units.phone_table` (espeak-ng once per sentence not in the cache). Sentences
        with no known phone are left out."""
        from training.finetune_units import phone_table

        items = list(dict.fromkeys(sentences))
        table = phone_table([{"lang": lang, "text": text} for lang, text in items], self.cache, progress)
        out = {}
        for lang, text in items:
            ids = [self.index[p] for p in table[f"{lang}\t{text}"] if p in self.index]
            if ids:
                out[(lang, text)] = ids
        return out

    def simulate(self, phone_ids: list[int], rng: np.random.Generator) -> np.ndarray:
        """Collapsed ``[F']`` int64 units for one phone string: corrupted, blanks between phones, repeats merged."""
        c, n = self.config, len(self.phones)
        out: list[int] = [BLANK] if rng.random() < 0.5 else []
        for p in phone_ids:
            r = rng.random()
            if r < c.del_prob:
                continue
            if r < c.del_prob + c.sub_prob:
                p = int(rng.integers(1, n))
            out.append(p)
            if rng.random() < c.ins_prob:
                out.append(int(rng.integers(1, n)))
            if rng.random() < c.blank_prob:
                out.append(BLANK)
        return collapse(np.asarray(out or [BLANK], dtype=np.int64))
