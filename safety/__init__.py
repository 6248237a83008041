"""Safety: keyed watermarking of generated speech and a deepfake detector.

Every waveform the toolkit generates passes through :func:`watermark_hook` (installed with
``alm.api.set_watermark_hook``), which embeds :data:`safety.watermark.DEFAULT_MESSAGE` with the configured key
(``$ALM_WATERMARK_KEY``, ``$ALM_WATERMARK_KEY_FILE``, else a public development key). Verification::

    from safety import detect, embed, load_key
    marked = embed(wav, message=1234)            # [T] float32 at 16 kHz; SNR >= 25 dB
    result = detect(marked)                      # Detection(probability, detected, payload, spans, ...)
    result.detected, result.payload              # True, 1234

or from the shell: ``alm-watermark detect FILE...`` (see :mod:`safety.cli`). The method, its false-positive rate
and its limits are described in :mod:`safety.watermark`; :mod:`safety.attacks` holds the robustness benchmark's
attacks (``benchmarks/watermark.py``).

The deepfake detector (a spoofing countermeasure, :mod:`safety.deepfake`)::

    from safety import score_fake
    score_fake(wav)                              # probability that [T] 16 kHz audio is this project's generated speech

or ``alm detect-fake FILE...``. Its names load on first use (they need torch; the watermark needs only numpy).
"""

from safety.keys import WatermarkKey, WatermarkKeyError, load_key
from safety.watermark import Detection, WatermarkInputError, detect, embed, watermark_hook

# The deepfake detector's public names, imported from safety.deepfake on first access (PEP 562).
_DEEPFAKE = {"DeepfakeDetector": "DeepfakeDetector", "DeepfakeInputError": "DeepfakeInputError",
             "DeepfakeModelError": "DeepfakeModelError", "FakeDetection": "FakeDetection",
             "equal_error_rate": "equal_error_rate", "score_fake": "score", "train_detector": "train_detector"}

__all__ = [
    "DeepfakeDetector",
    "DeepfakeInputError",
    "DeepfakeModelError",
    "Detection",
    "FakeDetection",
    "WatermarkInputError",
    "WatermarkKey",
    "WatermarkKeyError",
    "detect",
    "embed",
    "equal_error_rate",
    "load_key",
    "score_fake",
    "train_detector",
    "watermark_hook",
]


def __getattr__(name: str) -> object:
    if name in _DEEPFAKE:
        from safety import deepfake

        return getattr(deepfake, _DEEPFAKE[name])
    raise AttributeError(f"module 'safety' has no attribute {name!r}")
