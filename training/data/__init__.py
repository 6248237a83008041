"""Corpus: synthetic bilingual multi-speaker speech (and a user's own corpus) in manifest form.

``synthesize_corpus`` makes one with the offline synthesizers; ``load_corpus`` loads any manifest-form corpus
as a ``datasets.DatasetDict``.
"""

from training.data.corpus import ManifestError, load_corpus, read_manifest
from training.data.synth import SynthReport, synthesize_corpus

__all__ = ["ManifestError", "SynthReport", "load_corpus", "read_manifest", "synthesize_corpus"]
