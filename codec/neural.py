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
from torch import nn

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
    dead_code_threshold: float = 0.0  # encodec's own expiry (0: off; see NeuralCodec.revive_dead_codes)
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
        self._last_latents: torch.Tensor | None = None  # latents of the last training forward (dead-code revival)

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
        self._last_latents = z.detach()
        return self.decoder(quantized)[:, 0], codes.transpose(0, 1), commit.mean()

    @torch.no_grad()
    def init_from_data(self, wav: torch.Tensor, target_std: float = 1.0) -> None:
        """Data-dependent init (LSUV-style) before training: scale every convolution so that its output on the
        batch ``wav`` ``[B, T]`` has standard deviation ``target_std`` (the last decoder layer: that of ``wav``).

        With PyTorch's default init each of SEANet's ~15 layers shrinks the signal, so a fresh encoder's output is
        nearly constant in time (its time-variation is ~1 % of its mean here); the decoder then learns an
        input-independent average spectrum and stays on that plateau for thousands of CPU steps. Written here
        because neither encodec nor transformers ships such an init.
        """
        convs = [m for m in self.encoder.modules() if isinstance(m, (nn.Conv1d, nn.ConvTranspose1d))]
        dec_convs = [m for m in self.decoder.modules() if isinstance(m, (nn.Conv1d, nn.ConvTranspose1d))]
        x = wav[:, None]
        for net, layers, inp in ((self.encoder, convs, lambda: x), (self.decoder, dec_convs, lambda: self.encoder(x))):
            for i, conv in enumerate(layers):
                out: list[torch.Tensor] = []
                handle = conv.register_forward_hook(lambda _m, _i, o, out=out: out.append(o))
                net(inp())
                handle.remove()
                std = float(out[0].std())
                goal = float(wav.std()) if (net is self.decoder and i == len(layers) - 1) else target_std
                scale = goal / max(std, 1e-8)
                gain = conv.weight_g if hasattr(conv, "weight_g") else conv.weight
                gain.mul_(scale)
                if conv.bias is not None:
                    conv.bias.mul_(scale)

    @torch.no_grad()
    def revive_dead_codes(self, z: torch.Tensor, n_q: int, threshold: float = 0.1, reset_size: float = 0.25) -> int:
        """Replace codebook entries whose EMA usage fell below ``threshold`` (uses per batch) with random latent
        vectors of the current batch, for the first ``n_q`` quantizers. Returns how many were replaced.

        Written here because encodec's own expiry does not work for us: it only rewrites ``embed``, which the
        EMA update then recomputes from ``embed_avg`` in the same step (so nothing is replaced), and its
        threshold assumes large batches. Here ``embed``, ``embed_avg`` and ``cluster_size`` are set together.

        Args:
            z: encoder latents ``[B, D, F]`` of the batch just trained on.
        """
        residual = z.transpose(1, 2).reshape(-1, z.shape[1])  # [N, D]
        replaced = 0
        for layer in self.quantizer.vq.layers[:n_q]:
            cb = layer._codebook
            dead = cb.cluster_size < threshold
            n_dead = int(dead.sum())
            if n_dead:
                new = residual[torch.randint(0, residual.shape[0], (n_dead,), device=residual.device)]
                cb.embed[dead] = new
                cb.embed_avg[dead] = new * reset_size
                cb.cluster_size[dead] = reset_size
                replaced += n_dead
            residual = residual - cb.dequantize(cb.quantize(residual))
        return replaced

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
