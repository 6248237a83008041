"""The watermark's second layer: a keyed mark in the first-codebook codes of the project's own neural codec.

Re-encoding speech through the shipped codec (``codec.load_codec()``: encode, decode) rebuilds the spectrum from
its codes and erases the spread-spectrum layer of :mod:`safety.watermark` (0/100 detected, measured). What the
codec keeps is, by construction, its codes: this layer marks those. A key draws a *green list*: a fraction
:data:`GAMMA` (1/4) of the 1,024 entries of the codec's first codebook. Embedding perturbs the audio so that,
once the audio has been through the codec, the first-codebook code of as many 20 ms frames as possible is green;
detection encodes the audio under test and counts how many of its *distinct* first-codebook codes are green.

- Embedding (hand-written here: no library makes audio adversarial to a given encoder): each STFT bin
  (512-point Hann, hop 128) of the input is multiplied by ``1 + a`` with a complex ``a`` bounded by
  :data:`MAX_GAIN` in each of its real and imaginary parts (``MAX_GAIN * tanh`` of free parameters), so silence
  stays silent and every change rides on the signal's own spectrum. :data:`STEPS` Adam steps minimize, per
  frame, a hinge on (distance of the frame's latent to the nearest green codeword - distance to the nearest
  other codeword + a margin). The latent is that of the *re-encoded* audio: the perturbed audio goes through the
  encoder, the 8-codebook quantizer (straight-through), the decoder and the encoder again, so the optimisation
  aims at the codes an attacker's round trip produces. Long input is processed in chunks of
  :data:`CHUNK_S` with codec context on both sides.
- Detection: under "not marked with this key" each distinct code is green with probability ``GAMMA`` (the list
  is a keyed pseudo-random draw independent of the audio), so the count of green distinct codes is binomial;
  counting distinct codes (not frames) makes runs of a repeated code (pauses, vowels) count once. The p-value is
  the exact binomial tail. :func:`safety.watermark.detect` runs this test when its own scan finds nothing and
  gives it :data:`safety.watermark.CODEC_FPR_SHARE` of the false-positive budget.

Measured on corpus clips (benchmarks/watermark.py, README): the codec round trip keeps the layer where the
spread-spectrum one is lost. Costs: embedding runs the codec forward and backward ``STEPS`` times (slower than
real time on one CPU thread), detection runs the codec's encoder once (about 45x real time on one thread). The
layer carries no payload, and it is tied to the shipped codec's weights: a re-trained codec needs a new release
(``safety.watermark.MESSAGE_VERSION``).
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.special import bdtrc

from safety.keys import WatermarkKey

SAMPLE_RATE = 16000
GAMMA = 0.25  # fraction of the first codebook that is green
MAX_GAIN = 0.15  # bound on the real and imaginary parts of each STFT bin's relative change
STEPS = 20  # Adam steps of the embedding (the green share of frames levels off by about 15 at this rate)
LEARNING_RATE = 0.3
MARGIN = 0.1  # hinge margin, relative to the distance to the nearest non-green codeword
N_FFT, HOP = 512, 128  # STFT of the perturbation
CHUNK_S = 10.0  # embedding works on chunks this long (memory of the backward pass grows with length)
CONTEXT_FRAMES = 16  # codec frames of context on each side of a chunk (the receptive field is about 5)
_DOMAIN = b"alm-watermark-codec-layer-v1\x00"


class CodecLayerUnavailableError(RuntimeError):
    """The codec layer needs torch and the shipped neural codec, and one of them could not be loaded."""


@dataclass(frozen=True)
class CodecLayerStatistic:
    """The codec layer's statistic on one clip."""

    n_codes: int  # distinct first-codebook codes in the clip
    n_green: int  # how many of them are green
    p_value: float  # P(at least n_green green | not marked): exact binomial tail
    frame_green: np.ndarray  # [F] bool, per 20 ms codec frame: is the frame's code green
    frame_hop_s: float  # codec frame hop (0.02 s)

    @property
    def z(self) -> float:
        """The count standardized under the null: about N(0, 1) without the mark."""
        if self.n_codes == 0:
            return 0.0
        return (self.n_green - GAMMA * self.n_codes) / float(np.sqrt(self.n_codes * GAMMA * (1 - GAMMA)))


def green_list(key: WatermarkKey, cardinality: int = 1024) -> np.ndarray:
    """``[cardinality]`` bool: the first-codebook entries ``key`` makes green (exactly ``round(GAMMA * card)``)."""
    rng = np.random.default_rng(int.from_bytes(hashlib.sha256(_DOMAIN + key.seed).digest(), "big"))
    green = np.zeros(cardinality, dtype=bool)
    green[rng.permutation(cardinality)[: round(GAMMA * cardinality)]] = True
    return green


@functools.lru_cache(maxsize=1)
def _codec() -> Any:
    try:
        from codec import load_codec

        codec = load_codec()
    except Exception as e:  # noqa: BLE001 - any failure to import or load means the layer cannot run
        raise CodecLayerUnavailableError(f"the codec watermark layer needs torch and the shipped codec: {e}") from e
    codec.eval()
    for p in codec.parameters():
        p.requires_grad_(False)
    return codec


def available() -> bool:
    """Whether the codec layer can run here (torch and the shipped codec load)."""
    try:
        _codec()
    except CodecLayerUnavailableError:
        return False
    return True


def first_codes(x: np.ndarray) -> np.ndarray:
    """``[F]`` first-codebook codes of 16 kHz ``[T]`` audio under the shipped codec."""
    import torch

    codec = _codec()
    with torch.no_grad():
        wav = codec.prepare(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)))
        z = codec.encoder(wav[:, None])
        return codec.quantizer.vq.encode(z, n_q=1)[0, 0].numpy()


def statistic(x: np.ndarray, key: WatermarkKey) -> CodecLayerStatistic:
    """Count the green distinct first-codebook codes of 16 kHz ``[T]`` audio for ``key``."""
    return statistic_of_codes(first_codes(x), key)


def statistic_of_codes(codes: np.ndarray, key: WatermarkKey) -> CodecLayerStatistic:
    """:func:`statistic` from ``[F]`` first-codebook codes already computed (one encoding, several keys)."""
    codec = _codec()
    green = green_list(key, codec.cardinality)
    distinct = np.unique(codes)
    n, g = len(distinct), int(green[distinct].sum())
    p = float(bdtrc(g - 1, n, GAMMA)) if g > 0 else 1.0
    return CodecLayerStatistic(n, g, p, green[codes], codec.hop_length / codec.sample_rate)


def _embed_chunk(x: np.ndarray, green: np.ndarray, steps: int, max_gain: float) -> np.ndarray:
    import torch

    codec = _codec()
    vq = codec.quantizer.vq
    codebook = vq.layers[0]._codebook.embed.detach()  # [card, D]
    is_green = torch.from_numpy(green)
    window = torch.hann_window(N_FFT)
    spec = torch.stft(torch.from_numpy(x), N_FFT, HOP, window=window, return_complex=True)
    n = len(x) - len(x) % codec.hop_length

    def render(params: torch.Tensor) -> torch.Tensor:  # [T]: every bin times 1 + a, |Re a|, |Im a| <= max_gain
        gain = max_gain * torch.tanh(params)
        return torch.istft(spec * torch.complex(1 + gain[0], gain[1]), N_FFT, HOP, window=window, length=len(x))

    # callers may be inside torch.no_grad() or inference_mode() (pipelines, generate): the optimisation needs grad
    with torch.inference_mode(False), torch.enable_grad():
        params = torch.zeros(2, *spec.shape, requires_grad=True)
        opt = torch.optim.Adam([params], lr=LEARNING_RATE)
        for _ in range(steps):
            z = codec.encoder(render(params)[None, None, :n])
            q = vq.decode(vq.encode(z, n_q=codec.max_codebooks))
            z = codec.encoder(codec.decoder(z + (q - z).detach()))[0].T  # [F, D]: latents of the re-encoded audio
            dist = (z[:, None, :] - codebook[None]).pow(2).sum(-1)  # [F, card]
            to_green = dist.masked_fill(~is_green, float("inf")).amin(1)
            to_other = dist.masked_fill(is_green, float("inf")).amin(1)
            loss = torch.relu(to_green - to_other + MARGIN * to_other.detach()).sum()
            opt.zero_grad()
            loss.backward()
            opt.step()
    with torch.no_grad():
        return render(params).numpy()


def embed(x: np.ndarray, key: WatermarkKey, steps: int = STEPS, max_gain: float = MAX_GAIN) -> np.ndarray:
    """Add the codec layer to 16 kHz ``[T]`` float32 audio (usually already carrying the spread-spectrum layer).

    Returns ``[T]`` float32. Audio shorter than one codec frame is returned unchanged.
    """
    codec = _codec()
    green = green_list(key, codec.cardinality)
    hop = codec.hop_length
    x = np.ascontiguousarray(x, dtype=np.float32)
    out = x.copy()
    if len(x) < hop:
        return out
    step, context = int(CHUNK_S * SAMPLE_RATE) // hop * hop, CONTEXT_FRAMES * hop
    for start in range(0, len(x), step):
        end = min(len(x), start + step)
        lo, hi = max(0, start - context), min(len(x), end + context)
        if hi - lo < hop:  # a tail shorter than a frame: nothing to encode
            continue
        out[start:end] = _embed_chunk(x[lo:hi].copy(), green, steps, max_gain)[start - lo : end - lo]
    return out
