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
"""

from safety.keys import WatermarkKey, WatermarkKeyError, load_key
from safety.watermark import Detection, WatermarkInputError, detect, embed, watermark_hook

__all__ = [
    "Detection",
    "WatermarkInputError",
    "WatermarkKey",
    "WatermarkKeyError",
    "detect",
    "embed",
    "load_key",
    "watermark_hook",
]
