"""The ASR peer: CMU PocketSphinx 5 with the US-English acoustic model, dictionary and language model it ships.

Used as published (no adaptation to our voices), on the same English test audio as ``alm``'s ASR.
"""

from __future__ import annotations

import numpy as np


class PocketSphinx:
    """English speech recognition: ``PocketSphinx()(wav)`` -> lower-case words (``""`` when nothing is heard)."""

    sample_rate = 16000

    def __init__(self) -> None:
        try:
            from pocketsphinx import Decoder
        except ImportError as e:  # pragma: no cover - pocketsphinx is a dependency
            raise ImportError("the ASR peer needs pocketsphinx: pip install 'pocketsphinx>=5,<6'") from e
        self._decoder = Decoder(samprate=self.sample_rate, loglevel="FATAL")

    def __call__(self, wav: np.ndarray) -> str:
        """Transcribe a ``[T]`` float waveform in [-1, 1] at 16 kHz."""
        pcm = (np.clip(np.asarray(wav, dtype=np.float32), -1.0, 1.0) * 32767).astype(np.int16)
        d = self._decoder
        d.start_utt()
        d.process_raw(pcm.tobytes(), full_utt=True)
        d.end_utt()
        hyp = d.hyp()
        return hyp.hypstr if hyp is not None else ""
