"""The project's neural codec: an EnCodec-style SEANet encoder/decoder around a residual vector quantizer.

16 kHz in, 50 frames/s (hop 320 = 8*5*4*2), up to 8 codebooks of 1024 entries: 0.5 kbps per codebook. Trained
with quantizer dropout (a random number of codebooks per batch), so any prefix of 1..8 codebooks decodes.

The convolutional blocks and the quantizer (EMA codebooks, k-means init, dead-code replacement) are the
``encodec`` package's modules (see :mod:`codec._encodec`); this file only wires them together and adds the
chunked processing. Convolutions are non-causal and there is no LSTM, so the receptive field is finite and
chunked processing with enough context reproduces whole-file processing.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import torch

from codec import _encodec
from codec.base import AudioTokenizer

_modules, _quant = _encodec.load()


@dataclass
class CodecConfig:
    """Architecture of :class:`NeuralCodec` (saved in ``config.json``)."""

    sample_rate: int = 16000
    ratios: tuple[int, ...] = (8, 5, 4, 2)
    n_filters: int = 16
    dimension: int = 64
    n_residual_layers: int = 1
    num_codebooks: int = 8
    cardinality: int = 1024
    ema_decay: float = 0.99
    dead_code_threshold: int = 2
    kmeans_iters: int = 20
    extra: dict[str, Any] = field(default_factory=dict)  # training provenance (steps, data), not architecture

    @property
    def hop_length(self) -> int:
        return math.prod(self.ratios)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CodecConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown codec config keys {sorted(unknown)}")
        d = dict(d)
        if "ratios" in d:
            d["ratios"] = tuple(d["ratios"])
        return cls(**d)


class NeuralCodec(AudioTokenizer):
    """EnCodec-style codec. ``encode``: ``[B, T] -> [B, K, ceil(T / 320)]``; ``decode``: ``[B, K, F] -> [B, 320 F]``.

    >>> codec = NeuralCodec(CodecConfig())
    >>> codes = codec.encode(torch.zeros(16000))   # [1, 8, 50]
    """

    def __init__(self, config: CodecConfig) -> None:
        super().__init__()
        self.config = config
        self.sample_rate = config.sample_rate
        if config.sample_rate % config.hop_length:
            raise ValueError(f"hop {config.hop_length} does not divide the sample rate {config.sample_rate}")
        self.frame_rate = config.sample_rate // config.hop_length
        self.cardinality = config.cardinality
        self.max_codebooks = config.num_codebooks
        common = dict(channels=1, dimension=config.dimension, n_filters=config.n_filters,
                      n_residual_layers=config.n_residual_layers, ratios=list(config.ratios), lstm=0)
        with warnings.catch_warnings():  # encodec's convs use torch's deprecated (still working) weight_norm
            warnings.simplefilter("ignore", FutureWarning)
            self.encoder = _modules.SEANetEncoder(**common)
            self.decoder = _modules.SEANetDecoder(**common)
        self.quantizer = _quant.ResidualVectorQuantizer(
            dimension=config.dimension, n_q=config.num_codebooks, bins=config.cardinality,
            decay=config.ema_decay, kmeans_init=True, kmeans_iters=config.kmeans_iters,
            threshold_ema_dead_code=config.dead_code_threshold,
        )

    # --- AudioTokenizer --------------------------------------------------------------------------------------
    def get_config(self) -> dict[str, Any]:
        d = asdict(self.config)
        d["ratios"] = list(d["ratios"])
        return d

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> NeuralCodec:
        return cls(CodecConfig.from_dict(config))

    def _encode(self, x: torch.Tensor, k: int) -> torch.Tensor:
        z = self.encoder(x[:, None])  # [B, D, F]
        codes = self.quantizer.vq.encode(z, n_q=k)  # [K, B, F]
        return codes.transpose(0, 1).contiguous()

    def _decode(self, codes: torch.Tensor) -> torch.Tensor:
        z = self.quantizer.vq.decode(codes.transpose(0, 1))  # [B, D, F]
        return self.decoder(z)[:, 0]

    # --- training --------------------------------------------------------------------------------------------
    def forward(self, wav: torch.Tensor, n_q: int | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Training pass. ``wav`` ``[B, T]`` (T a multiple of the hop) -> ``(reconstruction [B, T],
        codes [B, n_q, F], commitment loss [])``. In training mode the codebooks take EMA updates."""
        z = self.encoder(wav[:, None])
        quantized, codes, commit = self.quantizer.vq(z, n_q=n_q or self.max_codebooks)
        return self.decoder(quantized)[:, 0], codes.transpose(0, 1), commit.mean()

    # --- chunked processing ----------------------------------------------------------------------------------
    @torch.no_grad()
    def encode_chunked(self, wav: torch.Tensor, chunk_seconds: float = 10.0, context_frames: int = 16,
                       sample_rate: int | None = None) -> torch.Tensor:
        """Encode long audio in chunks of ``chunk_seconds`` with ``context_frames`` of audio on each side
        (discarded after encoding), so memory stays bounded. Same shape as :meth:`encode`; the latents match
        whole-file encoding to float rounding (~1e-7) once ``context_frames`` covers the receptive field (about 5
        frames), which can flip a code only where two codewords are equally near."""
        x = self.prepare(wav, sample_rate)
        hop, total = self.hop_length, x.shape[-1] // self.hop_length
        step = max(1, int(chunk_seconds * self.frame_rate))
        out = []
        for start in range(0, total, step):
            end = min(total, start + step)
            lo, hi = max(0, start - context_frames), min(total, end + context_frames)
            codes = self._encode(x[:, lo * hop: hi * hop], self.num_codebooks)
            out.append(codes[..., start - lo: start - lo + (end - start)])
        return torch.cat(out, dim=-1)

    @torch.no_grad()
    def decode_chunked(self, codes: torch.Tensor, chunk_seconds: float = 10.0, context_frames: int = 16
                       ) -> torch.Tensor:
        """Decode in chunks with ``context_frames`` of codes on each side; same result shape as :meth:`decode`."""
        codes = self.check_codes(codes)
        hop, total = self.hop_length, codes.shape[-1]
        step = max(1, int(chunk_seconds * self.frame_rate))
        out = []
        for start in range(0, total, step):
            end = min(total, start + step)
            lo, hi = max(0, start - context_frames), min(total, end + context_frames)
            wav = self._decode(codes[..., lo:hi])
            out.append(wav[:, (start - lo) * hop: (end - lo) * hop])
        return torch.cat(out, dim=-1)
