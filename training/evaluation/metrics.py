"""Scores of task outputs against references, on :func:`alm.textnorm.normalize_for_eval` text.

WER/CER come from ``jiwer`` and BLEU from ``sacrebleu`` (corpus-level, their standard definitions); intent accuracy
and slot F1 are the SLU conventions (slot F1: micro-averaged over exact ``(slot, normalized value)`` pairs), written
here because no kept library scores this output format.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import jiwer
import sacrebleu

from alm.textnorm import normalize_for_eval


def _pairs(refs: Sequence[str], hyps: Sequence[str], lang: str) -> tuple[list[str], list[str]]:
    if len(refs) != len(hyps):
        raise ValueError(f"{len(refs)} references but {len(hyps)} hypotheses")
    if not refs:
        raise ValueError("nothing to score: no references")
    r = [normalize_for_eval(x, lang) for x in refs]
    h = [normalize_for_eval(x, lang) for x in hyps]
    keep = [i for i, x in enumerate(r) if x]
    if not keep:
        raise ValueError("every reference is empty after normalization")
    return [r[i] for i in keep], [h[i] for i in keep]


def word_error_rate(refs: Sequence[str], hyps: Sequence[str], lang: str = "en") -> float:
    """Corpus WER (errors / reference words) after normalization; references empty after it are skipped."""
    r, h = _pairs(refs, hyps, lang)
    return float(jiwer.wer(r, h))


def char_error_rate(refs: Sequence[str], hyps: Sequence[str], lang: str = "en") -> float:
    """Corpus CER (character edits / reference characters) after normalization."""
    r, h = _pairs(refs, hyps, lang)
    return float(jiwer.cer(r, h))


def bleu(refs: Sequence[str], hyps: Sequence[str], lang: str = "en") -> float:
    """Corpus BLEU (sacrebleu, 0-100) of normalized text with one reference per hypothesis."""
    r, h = _pairs(refs, hyps, lang)
    return float(sacrebleu.corpus_bleu(h, [r]).score)


def intent_accuracy(refs: Sequence[str], hyps: Sequence[str]) -> float:
    """Fraction of exact intent matches."""
    if len(refs) != len(hyps) or not refs:
        raise ValueError(f"need as many hypotheses as references (> 0), got {len(refs)} and {len(hyps)}")
    return sum(a == b for a, b in zip(refs, hyps)) / len(refs)


def slot_f1(refs: Sequence[Mapping[str, str]], hyps: Sequence[Mapping[str, str]], lang: str = "en") -> float:
    """Micro F1 over ``(slot name, normalized value)`` pairs; 1.0 when neither side has any slot."""
    if len(refs) != len(hyps):
        raise ValueError(f"{len(refs)} references but {len(hyps)} hypotheses")
    tp = fp = fn = 0
    for ref, hyp in zip(refs, hyps):
        r = {(k, normalize_for_eval(v, lang)) for k, v in ref.items()}
        h = {(k, normalize_for_eval(v, lang)) for k, v in hyp.items()}
        tp, fp, fn = tp + len(r & h), fp + len(h - r), fn + len(r - h)
    if tp + fp + fn == 0:
        return 1.0
    return 2 * tp / (2 * tp + fp + fn)
