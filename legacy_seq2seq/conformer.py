"""Conformer encoder (Gulati et al., 2020) over log-mel features, with an optional chunked causal mode for streaming.

The tree of the paper's figure 1::

    features [B, T, n_mels] -> ConvSubsampling (two stride-2 3x3 convs: T' = ((T - 1) // 2 - 1) // 2)
      -> n_layers x ConformerBlock:  x + 1/2 FF -> x + MHSA(rel-pos) -> x + Conv -> x + 1/2 FF -> LayerNorm
      -> encoded [B, T', d_model], lengths [B]

``causal=True`` makes the encoder streamable: self-attention sees only the current and earlier chunks of
``chunk_size`` encoder frames, and the depthwise convolution is padded on the left only. The subsampling
convolutions have no padding, so output frame ``t`` reads input frames ``4t .. 4t + 6`` only. Together: encoding
a prefix that ends on a chunk boundary gives exactly the prefix of encoding the whole, and
:class:`ConformerStreamer` encodes a stream chunk by chunk with cached keys, values and convolution context.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

logger = logging.getLogger(__name__)

SUBSAMPLING = 4  # two stride-2 convolutions over time
MIN_FRAMES = 7  # input frames behind one output frame: the two 3-wide, stride-2 convs read 4 * 1 + 3 frames


def subsampled_length(n: int) -> int:
    """Encoder frames from ``n`` input frames: ``((n - 1) // 2 - 1) // 2``, 0 below :data:`MIN_FRAMES`."""
    return max(0, ((n - 1) // 2 - 1) // 2)


def subsampled_lengths(lengths: torch.Tensor) -> torch.Tensor:
    """:func:`subsampled_length` of each entry of ``lengths`` ``[B]`` -> ``[B]``."""
    half = (lengths - 1).div(2, rounding_mode="floor")
    return (half - 1).div(2, rounding_mode="floor").clamp(min=0)


def chunk_mask(n: int, chunk_size: int, device: torch.device | None = None) -> torch.Tensor:
    """``[n, n]`` bool, True where query frame ``i`` may attend to key frame ``j``: same or an earlier chunk."""
    chunk = torch.arange(n, device=device) // chunk_size
    return chunk[None, :] <= chunk[:, None]


def check_encoder_args(n_mels: int, d_model: int, n_heads: int, n_layers: int, conv_kernel: int, causal: bool,
                       chunk_size: int) -> None:
    """Raise ``ValueError`` naming the first encoder hyper-parameter that cannot work."""
    if n_mels < MIN_FRAMES:
        raise ValueError(f"n_mels must be at least {MIN_FRAMES} (the subsampling halves it twice), got {n_mels}")
    if d_model < 2 or d_model % 2 or n_heads < 1 or d_model % n_heads:
        raise ValueError(f"d_model ({d_model}) must be even and divisible by n_heads ({n_heads})")
    if n_layers < 1:
        raise ValueError(f"n_layers must be positive, got {n_layers}")
    if conv_kernel < 1 or (not causal and conv_kernel % 2 == 0):
        raise ValueError(f"conv_kernel must be positive (and odd unless causal), got {conv_kernel}")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be positive, got {chunk_size}")


def sinusoids(positions: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal embeddings (Vaswani et al.) of (possibly negative) ``positions`` ``[P]`` -> ``[P, dim]``."""
    freqs = torch.exp(torch.arange(0, dim, 2, device=positions.device, dtype=torch.float32)
                      * (-math.log(10000.0) / dim))
    angles = positions.float()[:, None] * freqs[None, :]
    return torch.stack([angles.sin(), angles.cos()], dim=-1).reshape(len(positions), dim)


class ConvSubsampling(nn.Module):
    """4x time subsampling: ``[B, T, n_mels] -> [B, T', d_model]`` with two unpadded stride-2 3x3 convs + ReLU."""

    def __init__(self, n_mels: int, d_model: int, dropout: float) -> None:
        super().__init__()
        self.conv = nn.Sequential(nn.Conv2d(1, d_model, 3, stride=2), nn.ReLU(),
                                  nn.Conv2d(d_model, d_model, 3, stride=2), nn.ReLU())
        self.out = nn.Linear(d_model * subsampled_length(n_mels), d_model)
        self.dropout = nn.Dropout(dropout)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        h = self.conv(features.unsqueeze(1))  # [B, D, T', F']
        b, c, t, f = h.shape
        return self.dropout(self.out(h.transpose(1, 2).reshape(b, t, c * f)))


class FeedForward(nn.Module):
    """Pre-norm feed-forward module: LayerNorm -> Linear(D, mult D) -> Swish -> Linear(mult D, D), with dropout."""

    def __init__(self, d_model: int, mult: int, dropout: float) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.LayerNorm(d_model), nn.Linear(d_model, mult * d_model), nn.SiLU(),
                                 nn.Dropout(dropout), nn.Linear(mult * d_model, d_model), nn.Dropout(dropout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class RelPositionMultiHeadAttention(nn.Module):
    """Multi-head self-attention with Transformer-XL relative positions (Dai et al., 2019), as the Conformer uses.

    Written by hand (torch's ``scaled_dot_product_attention`` has no relative-position term): the score of query
    ``i`` and key ``j`` is ``((q_i + u) . k_j + (q_i + v) . W_r r_{i-j}) / sqrt(d_k)`` with learnable biases
    ``u``, ``v`` per head and ``r`` the sinusoid of the distance ``i - j``. The queries are the last ``Tq`` of the
    ``Tk`` key positions, so a streaming chunk with cached keys sees the same distances as the full sequence.
    """

    def __init__(self, d_model: int, n_heads: int, dropout: float) -> None:
        super().__init__()
        self.n_heads, self.d_head = n_heads, d_model // n_heads
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.pos = nn.Linear(d_model, d_model, bias=False)
        self.out = nn.Linear(d_model, d_model)
        self.pos_bias_u = nn.Parameter(torch.empty(n_heads, self.d_head))
        self.pos_bias_v = nn.Parameter(torch.empty(n_heads, self.d_head))
        nn.init.xavier_uniform_(self.pos_bias_u)
        nn.init.xavier_uniform_(self.pos_bias_v)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None,
                cache: tuple[torch.Tensor, torch.Tensor] | None = None
                ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """Attend.

        Args:
            x: queries (and new keys/values) ``[B, Tq, D]``.
            mask: ``[B or 1, Tq or 1, Tk]`` bool, True where attention is allowed; None allows everything.
            cache: keys and values of earlier positions, each ``[B, H, T_past, d_k]``.

        Returns:
            ``(out [B, Tq, D], (keys, values))`` with keys and values ``[B, H, Tk, d_k]``, ``Tk = T_past + Tq``.
        """
        b, tq, d = x.shape
        q, k, v = self.qkv(x).view(b, tq, 3, self.n_heads, self.d_head).permute(2, 0, 3, 1, 4)  # each (B, H, Tq, dk)
        if cache is not None:
            k, v = torch.cat([cache[0], k], dim=2), torch.cat([cache[1], v], dim=2)
        tk = k.size(2)
        # Every distance i - j that occurs, from tk - 1 down to -(tq - 1): tk + tq - 1 of them.
        distances = torch.arange(tk - 1, -tq, -1, device=x.device)
        p = self.pos(sinusoids(distances, d).to(x.dtype)).view(-1, self.n_heads, self.d_head).transpose(0, 1)
        content = (q + self.pos_bias_u[:, None]) @ k.transpose(-1, -2)  # (B, H, Tq, Tk)
        position = (q + self.pos_bias_v[:, None]) @ p.transpose(-1, -2)  # (B, H, Tq, tk + tq - 1)
        # Query i sits at absolute position i + tk - tq; its distance to key j is at column tq - 1 - i + j.
        index = (tq - 1 - torch.arange(tq, device=x.device)[:, None] + torch.arange(tk, device=x.device)[None, :])
        position = position.gather(-1, index.expand(b, self.n_heads, tq, tk))
        scores = (content + position) / math.sqrt(self.d_head)
        if mask is not None:
            allowed = mask[:, None]  # (B, 1, Tq, Tk)
            scores = scores.masked_fill(~allowed, torch.finfo(scores.dtype).min)
            attn = scores.softmax(-1).masked_fill(~allowed, 0.0)  # rows with nothing allowed become zeros
        else:
            attn = scores.softmax(-1)
        out = (self.dropout(attn) @ v).transpose(1, 2).reshape(b, tq, d)
        return self.out(out), (k, v)


class ConvolutionModule(nn.Module):
    """LayerNorm -> pointwise conv (2D) -> GLU -> depthwise conv -> BatchNorm -> Swish -> pointwise conv -> dropout.

    Padded frames are zeroed before the depthwise convolution, so they read like the convolution's own zero
    padding. Causal: ``kernel_size - 1`` frames of left padding (or of cached context when streaming), none right.
    """

    def __init__(self, d_model: int, kernel_size: int, causal: bool, dropout: float) -> None:
        super().__init__()
        self.kernel_size, self.causal = kernel_size, causal
        self.norm = nn.LayerNorm(d_model)
        self.pointwise_in = nn.Conv1d(d_model, 2 * d_model, 1)
        self.depthwise = nn.Conv1d(d_model, d_model, kernel_size, groups=d_model)
        self.batch_norm = nn.BatchNorm1d(d_model)
        self.pointwise_out = nn.Conv1d(d_model, d_model, 1)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, valid: torch.Tensor | None, context: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Convolve ``x`` ``[B, T, D]`` (``valid`` ``[B, T]`` marks real frames).

        Returns:
            ``(out [B, T, D], context)``; causal: the last ``kernel_size - 1`` depthwise inputs ``[B, D, K - 1]``
            to pass as ``context`` with the next chunk; otherwise None.
        """
        h = F.glu(self.pointwise_in(self.norm(x).transpose(1, 2)), dim=1)  # (B, D, T)
        if valid is not None:
            h = h.masked_fill(~valid[:, None, :], 0.0)
        left = self.kernel_size - 1
        if self.causal:
            if context is None:
                context = h.new_zeros(h.size(0), h.size(1), left)
            h = torch.cat([context, h], dim=-1)
            context = h[..., h.size(-1) - left:]
        elif context is not None:
            raise ValueError("a non-causal convolution module takes no streaming context")
        else:
            h = F.pad(h, (left // 2, left // 2))
        h = self.pointwise_out(F.silu(self.batch_norm(self.depthwise(h))))
        return self.dropout(h.transpose(1, 2)), context


@dataclass
class LayerCache:
    """What a :class:`ConformerBlock` keeps between streaming chunks.

    Attributes:
        keys: attention keys of every frame so far ``[B, H, T_past, d_k]``.
        values: attention values ``[B, H, T_past, d_k]``.
        conv: depthwise-convolution left context ``[B, D, K - 1]`` (None for a non-causal block).
    """

    keys: torch.Tensor
    values: torch.Tensor
    conv: torch.Tensor | None


class ConformerBlock(nn.Module):
    """One Conformer block: macaron half-step feed-forwards around self-attention and convolution, then LayerNorm."""

    def __init__(self, d_model: int, n_heads: int, ff_mult: int, conv_kernel: int, causal: bool,
                 dropout: float) -> None:
        super().__init__()
        self.ff1 = FeedForward(d_model, ff_mult, dropout)
        self.attn_norm = nn.LayerNorm(d_model)
        self.attn = RelPositionMultiHeadAttention(d_model, n_heads, dropout)
        self.attn_dropout = nn.Dropout(dropout)
        self.conv = ConvolutionModule(d_model, conv_kernel, causal, dropout)
        self.ff2 = FeedForward(d_model, ff_mult, dropout)
        self.norm = nn.LayerNorm(d_model)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None, valid: torch.Tensor | None,
                cache: LayerCache | None = None) -> tuple[torch.Tensor, LayerCache]:
        """``x`` ``[B, T, D]`` -> ``([B, T, D], cache including these frames)``; ``mask`` as for the attention."""
        x = x + 0.5 * self.ff1(x)
        a, (keys, values) = self.attn(self.attn_norm(x), mask, None if cache is None else (cache.keys, cache.values))
        x = x + self.attn_dropout(a)
        c, conv = self.conv(x, valid, None if cache is None else cache.conv)
        x = x + c
        x = x + 0.5 * self.ff2(x)
        return self.norm(x), LayerCache(keys, values, conv)


class ConformerEncoder(nn.Module):
    """Conformer encoder: log-mel ``[B, T, n_mels]`` -> ``[B, T', d_model]`` at a quarter of the frame rate.

    Args:
        n_mels: feature bins per input frame.
        d_model: model width (even, divisible by ``n_heads``).
        n_heads: attention heads.
        n_layers: Conformer blocks.
        ff_mult: feed-forward expansion.
        conv_kernel: depthwise convolution width (odd unless ``causal``).
        dropout: dropout everywhere.
        causal: chunked attention (current and past chunks only) and a causal convolution, for streaming.
        chunk_size: attention chunk in encoder frames (causal only; ``4 * chunk_size`` input frames).
    """

    def __init__(self, n_mels: int, d_model: int = 144, n_heads: int = 4, n_layers: int = 4, ff_mult: int = 4,
                 conv_kernel: int = 15, dropout: float = 0.1, causal: bool = False, chunk_size: int = 8) -> None:
        super().__init__()
        check_encoder_args(n_mels, d_model, n_heads, n_layers, conv_kernel, causal, chunk_size)
        self.n_mels, self.d_model, self.causal, self.chunk_size = n_mels, d_model, causal, chunk_size
        self.subsampling = ConvSubsampling(n_mels, d_model, dropout)
        self.blocks = nn.ModuleList(ConformerBlock(d_model, n_heads, ff_mult, conv_kernel, causal, dropout)
                                    for _ in range(n_layers))

    def forward(self, features: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Encode a padded batch.

        Args:
            features: log-mel features ``[B, T, n_mels]``; frames past ``lengths`` may hold anything.
            lengths: valid input frames per element ``[B]``.

        Returns:
            ``(encoded [B, T', d_model], lengths [B])`` with ``T' = ((T - 1) // 2 - 1) // 2`` (at least 1) and
            ``lengths = ((lengths - 1) // 2 - 1) // 2``; frames past an element's length are padding.
        """
        if features.dim() != 3 or features.size(-1) != self.n_mels:
            raise ValueError(f"expected features [B, T, {self.n_mels}], got {list(features.shape)}")
        if features.size(1) < MIN_FRAMES:  # too short for one output frame: pad so the convs run (lengths give 0)
            features = F.pad(features, (0, 0, 0, MIN_FRAMES - features.size(1)))
        x = self.subsampling(features)
        out_lengths = subsampled_lengths(lengths.to(x.device))
        valid = torch.arange(x.size(1), device=x.device)[None, :] < out_lengths[:, None]  # (B, T')
        mask = valid[:, None, :]  # (B, 1, T'): keys
        if self.causal:
            mask = mask & chunk_mask(x.size(1), self.chunk_size, x.device)[None]  # (B, T', T')
        for block in self.blocks:
            x, _ = block(x, mask, valid)
        return x, out_lengths

    def forward_chunk(self, features: torch.Tensor, caches: list[LayerCache] | None
                      ) -> tuple[torch.Tensor, list[LayerCache]]:
        """Encode one chunk of a stream (causal encoders only; no padding in the batch).

        Args:
            features: the ``4 (n - 1) + 7`` input frames behind the chunk's ``n <= chunk_size`` encoder frames,
                ``[B, 4 (n - 1) + 7, n_mels]``; the chunk must start on a chunk boundary.
            caches: what the previous call returned (None for the first chunk).

        Returns:
            ``(encoded [B, n, d_model], caches for the next call)``.
        """
        if not self.causal:
            raise ValueError("forward_chunk needs a causal encoder (causal=True)")
        x = self.subsampling(features)
        if x.size(1) > self.chunk_size:
            raise ValueError(f"a chunk holds at most {self.chunk_size} encoder frames, got {x.size(1)}")
        new_caches = []
        for i, block in enumerate(self.blocks):
            x, cache = block(x, None, None, None if caches is None else caches[i])
            new_caches.append(cache)
        return x, new_caches


class ConformerStreamer:
    """Feeds one stream of features through a causal :class:`ConformerEncoder` chunk by chunk.

    Each :meth:`accept` returns the encoder frames that became complete: whole chunks only, so the output equals
    the full-utterance encoding; :meth:`flush` encodes the last partial chunk at the end of the stream. Keys,
    values and convolution context are cached, so each frame is encoded once. Put the encoder in eval mode.

    Args:
        encoder: a causal encoder.
    """

    def __init__(self, encoder: ConformerEncoder) -> None:
        if not encoder.causal:
            raise ValueError("streaming needs a causal encoder (causal=True)")
        self.encoder = encoder
        self._buffer: torch.Tensor | None = None  # input frames from index self._offset on, [T, n_mels]
        self._offset = 0  # input frames dropped from the buffer
        self._received = 0  # input frames accepted so far
        self._done = 0  # encoder frames emitted so far
        self._caches: list[LayerCache] | None = None
        self._finished = False

    @property
    def frames_emitted(self) -> int:
        """Encoder frames returned so far."""
        return self._done

    @torch.no_grad()
    def accept(self, features: torch.Tensor) -> torch.Tensor:
        """Take the next input frames ``[T, n_mels]``; returns the newly completed encoder frames ``[n, d_model]``."""
        if self._finished:
            raise RuntimeError("this stream was flushed; start a new ConformerStreamer")
        if features.dim() != 2 or features.size(-1) != self.encoder.n_mels:
            raise ValueError(f"expected features [T, {self.encoder.n_mels}], got {list(features.shape)}")
        self._buffer = features if self._buffer is None else torch.cat([self._buffer, features])
        self._received += features.size(0)
        ready = subsampled_length(self._received) - self._done
        return self._encode(ready - ready % self.encoder.chunk_size)

    @torch.no_grad()
    def flush(self) -> torch.Tensor:
        """End the stream: encode the remaining (partial) chunk; returns ``[n, d_model]``."""
        self._finished = True
        return self._encode(subsampled_length(self._received) - self._done)

    def _encode(self, n: int) -> torch.Tensor:
        if self._buffer is None or n <= 0:
            return next(self.encoder.parameters()).new_zeros(0, self.encoder.d_model)
        pieces = []
        for start in range(self._done, self._done + n, self.encoder.chunk_size):
            stop = min(start + self.encoder.chunk_size, self._done + n)
            # encoder frames start..stop-1 read input frames 4 start .. 4 (stop - 1) + 6
            lo, hi = SUBSAMPLING * start - self._offset, SUBSAMPLING * (stop - 1) + MIN_FRAMES - self._offset
            out, self._caches = self.encoder.forward_chunk(self._buffer[lo:hi][None], self._caches)
            pieces.append(out[0])
        self._done += n
        drop = SUBSAMPLING * self._done - self._offset  # input before frame 4 * done is never read again
        self._buffer, self._offset = self._buffer[drop:], self._offset + drop
        return torch.cat(pieces)
