"""HuBERT-style discrete speech units at 50 Hz: k-means over MFCCs, a small HuBERT, or a phone-CTC Conformer.

A :class:`UnitTokenizer` turns a 16 kHz waveform into one unit per 20 ms (``HOP_LENGTH = 320`` samples)::

    F = ceil(T / 320)          # unit f describes samples [320 f, 320 f + 320), centred on 320 f + 160

Short input is zero-padded up to ``320 F`` samples, so even one sample gives one unit. Three kinds of features
feed a k-means codebook and a fourth reads a trained phone classifier (``config.kind``):

- ``"mfcc"`` (HuBERT iteration 1): 13 MFCCs with deltas and delta-deltas (39 dims) from
  :func:`codec.features.mfcc` at 100 frames/s. MFCC frame ``j`` is centred on sample ``160 j``, so unit ``f``'s
  centre is MFCC frame ``2f + 1``; the 50 Hz feature is the triangular pooling ``(m[2f] + 2 m[2f+1] +
  m[2f+2]) / 4`` of the three frames around that centre. Pooling (not stacking pairs) keeps 39 dimensions, which
  the deltas already make dynamic, and centres each feature exactly on its 20 ms frame.
- ``"hubert"`` (iteration 2): the hidden states of transformer layer ``config.feature_layer`` of a small
  :class:`transformers.HubertModel` whose convolutional front end has a total stride of 320 samples. The input
  is padded by half the excess receptive field on each side (``(400 - 320) / 2 = 40`` samples with the default
  kernels), so conv frame ``f`` is centred on sample ``320 f + 160`` and exactly ``F`` frames come out.
- ``"conformer"`` (supervised units): the hidden states of layer ``config.feature_layer`` of a small
  :class:`transformers.Wav2Vec2BertModel` (a Conformer: macaron feed-forward, relative-position attention,
  depthwise-conv module) trained with a phone CTC head (``training/finetune_units.py --arch conformer``). Its
  input is 80-band log-mels at 100 frames/s (:func:`codec.features.log_mel`); unit ``f`` stacks the three mel
  frames ``2f, 2f + 1, 2f + 2`` around its centre (240 dims), so the Conformer runs at the unit rate.
- ``"phone"`` (supervised phone units): the same Conformer with its phone-CTC head kept; unit ``f`` is the
  head's most likely symbol at frame ``f`` (``0`` is the CTC blank, ``config.phones`` names the others). No
  k-means: the units are the recognizer's frame-wise phone decisions, the way CosyVoice's supervised semantic
  tokens come from an ASR encoder. ``head_weight [K, D]`` and ``head_bias [K]`` replace the centroids.

The k-means kinds are mean/variance normalised with statistics of the training features, then assigned to the nearest
k-means centroid (squared Euclidean distance). A tokenizer directory holds ``config.json`` (``"kind"``,
sizes, the HuBERT architecture) and ``model.safetensors`` (``centroids [K, D]``, ``feat_mean [D]``,
``feat_std [D]`` and, for ``"hubert"``, the HuBERT weights); nothing is unpickled. HuBERT weights are stored as
float16 (``weights_dtype``) to keep the shipped files small; the constructor rounds the weights to that dtype so
units computed before saving are the units computed after loading.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import numpy as np
import soxr
import torch
from safetensors.torch import save_file
from transformers import HubertConfig, HubertModel, Wav2Vec2BertConfig, Wav2Vec2BertModel

from codec.audio import MAX_SAMPLE_RATE, MIN_SAMPLE_RATE, RESAMPLE_QUALITY, AudioInputError
from codec.base import CONFIG_NAME, WEIGHTS_NAME, atomic_write, atomic_write_text, read_pretrained
from codec.features import log_mel, mfcc

SAMPLE_RATE = 16000  # Hz
FRAME_RATE = 50  # units per second
HOP_LENGTH = SAMPLE_RATE // FRAME_RATE  # 320 samples = 20 ms per unit
MFCC_HOP = 160  # 10 ms: two MFCC frames per unit
KINDS = ("mfcc", "hubert", "conformer", "phone")
CONFORMER_KINDS = ("conformer", "phone")
PHONE_BLANK = 0  # the CTC blank of "phone" units (``config.phones[0]``)
UnitArray = TypeVar("UnitArray", torch.Tensor, np.ndarray)
CONFORMER_MELS = 80  # log-mel bands under the Conformer; three frames are stacked per unit
CONFORMER_INPUT_DIM = 3 * CONFORMER_MELS
SCHEMA_VERSION = 1
# Attention cost grows with the square of the length: longer input is encoded in chunks of 60 s (3000 frames).
# The conv front end still sees the real neighbouring samples at chunk edges; only attention context is cut.
CHUNK_FRAMES = 60 * FRAME_RATE
# HubertConfig fields that define the architecture; together they rebuild the network (dropouts are training-only).
HUBERT_ARCH_KEYS = (
    "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "hidden_act", "conv_dim",
    "conv_stride", "conv_kernel", "conv_bias", "feat_extract_norm", "feat_extract_activation",
    "num_conv_pos_embeddings", "num_conv_pos_embedding_groups", "do_stable_layer_norm", "layer_norm_eps",
    "feat_proj_layer_norm", "mask_time_prob", "mask_time_length",
)
# Wav2Vec2BertConfig fields that define the Conformer units' architecture.
CONFORMER_ARCH_KEYS = (
    "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "hidden_act",
    "feature_projection_input_dim", "layer_norm_eps", "position_embeddings_type", "left_max_position_embeddings",
    "right_max_position_embeddings", "rotary_embedding_base", "max_source_positions", "conv_depthwise_kernel_size",
    "mask_time_prob", "mask_time_length",
)


@dataclass
class UnitConfig:
    """What a saved :class:`UnitTokenizer` is; ``config.json`` holds these fields (plus ``tokenizer_class``).

    Attributes:
        kind: ``"mfcc"`` (iteration 1), ``"hubert"`` (iteration 2), ``"conformer"`` (k-means over a phone-CTC
            Conformer layer) or ``"phone"`` (that Conformer's phone-CTC decisions).
        num_units: k-means clusters ``K`` (``"phone"``: phone symbols plus the blank); units are in ``[0, K)``.
        feature_dim: ``D`` of the clustered features (39 for MFCC, the HuBERT hidden size otherwise).
        n_mfcc: cepstral coefficients before deltas (``"mfcc"`` only).
        n_mels: mel bands under the cepstrum (``"mfcc"`` only).
        feature_layer: layer whose output is clustered, 1-based (``"hubert"`` and ``"conformer"``).
        hubert: the HuBERT architecture, :data:`HUBERT_ARCH_KEYS` of a ``HubertConfig`` (``"hubert"`` only).
        conformer: the Conformer architecture, :data:`CONFORMER_ARCH_KEYS` of a ``Wav2Vec2BertConfig``
            (``"conformer"`` and ``"phone"``).
        phones: the ``"phone"`` units' symbols, ``phones[u]`` for unit ``u`` (``phones[0]`` is the CTC blank).
        weights_dtype: storage dtype of the network weights, ``"float16"`` or ``"float32"``.
        info: provenance (training data, steps, losses); never used to rebuild the model.
    """

    kind: str
    num_units: int
    feature_dim: int
    n_mfcc: int = 13
    n_mels: int = 40
    feature_layer: int | None = None
    hubert: dict[str, Any] | None = None
    conformer: dict[str, Any] | None = None
    phones: list[str] | None = None
    weights_dtype: str = "float16"
    sample_rate: int = SAMPLE_RATE
    frame_rate: int = FRAME_RATE
    schema_version: int = SCHEMA_VERSION
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {self.kind!r}")
        if self.schema_version != SCHEMA_VERSION:
            raise ValueError(f"unit config schema_version {self.schema_version} is not {SCHEMA_VERSION}")
        if (self.sample_rate, self.frame_rate) != (SAMPLE_RATE, FRAME_RATE):
            raise ValueError(f"units are {SAMPLE_RATE} Hz audio at {FRAME_RATE} frames/s, got "
                             f"{self.sample_rate} Hz / {self.frame_rate} frames/s")
        if self.num_units < 2 or self.feature_dim < 1:
            raise ValueError(f"need num_units >= 2 and feature_dim >= 1, got {self.num_units}, {self.feature_dim}")
        if self.weights_dtype not in ("float16", "float32"):
            raise ValueError(f"weights_dtype must be 'float16' or 'float32', got {self.weights_dtype!r}")
        if self.kind == "mfcc" and self.feature_dim != 3 * self.n_mfcc:
            raise ValueError(f"MFCC units use {self.n_mfcc} coefficients with deltas: feature_dim must be "
                             f"{3 * self.n_mfcc}, got {self.feature_dim}")
        if self.kind == "hubert":
            if self.hubert is None:
                raise ValueError("hubert units need the HuBERT architecture in config.hubert")
            layers, hidden = self.hubert["num_hidden_layers"], self.hubert["hidden_size"]
            if self.feature_layer is None or not 1 <= self.feature_layer <= layers:
                raise ValueError(f"feature_layer must be in 1..{layers}, got {self.feature_layer}")
            if self.feature_dim != hidden:
                raise ValueError(f"feature_dim {self.feature_dim} must equal the hidden size {hidden}")
        if self.kind in CONFORMER_KINDS:
            if self.conformer is None:
                raise ValueError("conformer units need the Conformer architecture in config.conformer")
            layers, hidden = self.conformer["num_hidden_layers"], self.conformer["hidden_size"]
            if self.feature_layer is None or not 1 <= self.feature_layer <= layers:
                raise ValueError(f"feature_layer must be in 1..{layers}, got {self.feature_layer}")
            if self.feature_dim != hidden:
                raise ValueError(f"feature_dim {self.feature_dim} must equal the hidden size {hidden}")
            if self.conformer["feature_projection_input_dim"] != CONFORMER_INPUT_DIM:
                raise ValueError(f"the Conformer reads {CONFORMER_INPUT_DIM}-dim stacked log-mels, got "
                                 f"feature_projection_input_dim {self.conformer['feature_projection_input_dim']}")
        if self.kind == "phone":
            if self.feature_layer != self.conformer["num_hidden_layers"]:
                raise ValueError(f"phone units read the last layer ({self.conformer['num_hidden_layers']}), "
                                 f"got feature_layer {self.feature_layer}")
            if self.phones is None or len(self.phones) != self.num_units:
                raise ValueError(f"phone units need config.phones with num_units = {self.num_units} symbols, got "
                                 f"{None if self.phones is None else len(self.phones)}")
        elif self.phones is not None:
            raise ValueError(f"config.phones is for 'phone' units, not {self.kind!r}")


def small_hubert_config(
    hidden_size: int = 256,
    num_layers: int = 6,
    num_heads: int = 4,
    intermediate_size: int = 1024,
    conv_dim: int = 128,
    **overrides: Any,
) -> HubertConfig:
    """A small HuBERT (about 5.3M parameters with the defaults) with 20 ms frames.

    The conv front end is HuBERT's (kernels ``10,3,3,3,3,2,2``, strides ``5,2,2,2,2,2,2``: total stride 320
    samples, receptive field 400 samples = 25 ms) at ``conv_dim`` channels; the transformer is pre-layer-norm
    (``do_stable_layer_norm``), which trains from scratch without a long warmup.

    Args:
        hidden_size, num_layers, num_heads, intermediate_size: transformer size.
        conv_dim: channels of every conv layer of the front end.
        **overrides: any other ``HubertConfig`` field (dropouts, ``num_conv_pos_embeddings``, ...).
    """
    kwargs: dict[str, Any] = {
        "hidden_size": hidden_size, "num_hidden_layers": num_layers, "num_attention_heads": num_heads,
        "intermediate_size": intermediate_size, "conv_dim": (conv_dim,) * 7, "conv_stride": (5, 2, 2, 2, 2, 2, 2),
        "conv_kernel": (10, 3, 3, 3, 3, 2, 2), "num_conv_pos_embeddings": 64,
        "num_conv_pos_embedding_groups": min(16, hidden_size), "do_stable_layer_norm": True,
        "feat_extract_norm": "group", "layerdrop": 0.0, "hidden_dropout": 0.1, "attention_dropout": 0.1,
        "activation_dropout": 0.0, "feat_proj_dropout": 0.0, "mask_time_prob": 0.65, "mask_time_length": 10,
    }
    kwargs.update(overrides)
    return HubertConfig(**kwargs)


def small_conformer_config(
    hidden_size: int = 144,
    num_layers: int = 6,
    num_heads: int = 4,
    intermediate_size: int = 576,
    conv_kernel: int = 15,
    dropout: float = 0.1,
    **overrides: Any,
) -> Wav2Vec2BertConfig:
    """A small Conformer (about 3M parameters with the defaults) over stacked log-mels at 50 frames/s.

    Relative-key position attention (64 frames left, 8 right), depthwise conv kernel ``conv_kernel``, no layer
    drop (it hurts shallow stacks); ``dropout`` is used for hidden, attention, activation, conv and input dropout.
    """
    kw: dict[str, Any] = dict(
        hidden_size=hidden_size, num_hidden_layers=num_layers, num_attention_heads=num_heads,
        intermediate_size=intermediate_size, conv_depthwise_kernel_size=conv_kernel,
        feature_projection_input_dim=CONFORMER_INPUT_DIM, hidden_dropout=dropout, attention_dropout=dropout,
        activation_dropout=dropout, feat_proj_dropout=dropout, conformer_conv_dropout=dropout, layerdrop=0.0,
        mask_time_prob=0.05, mask_time_length=10, add_adapter=False)
    kw.update(overrides)
    return Wav2Vec2BertConfig(**kw)


def conformer_arch(config: Wav2Vec2BertConfig) -> dict[str, Any]:
    """The JSON-serializable architecture of ``config`` (:data:`CONFORMER_ARCH_KEYS`)."""
    d = config.to_dict()
    return {k: d[k] for k in CONFORMER_ARCH_KEYS}


def conformer_inputs(x: torch.Tensor) -> torch.Tensor:
    """``[T]`` 16 kHz waveform -> ``[F, 240]`` Conformer input, ``F = ceil(T / 320)`` (module docstring).

    Three 80-band log-mel frames (25 ms windows, 10 ms hop) per unit, centred on the unit's centre.
    """
    n = num_frames(x.shape[-1])
    x = torch.nn.functional.pad(x, (0, n * HOP_LENGTH - x.shape[-1]))  # [320 F]
    m = log_mel(x, SAMPLE_RATE, n_mels=CONFORMER_MELS, hop_length=MFCC_HOP)  # [80, 2F + 1]
    return torch.cat([m[:, 0:2 * n:2], m[:, 1:2 * n:2], m[:, 2:2 * n + 1:2]], dim=0).T.contiguous()


def hubert_arch(config: HubertConfig) -> dict[str, Any]:
    """The JSON-serializable architecture of ``config`` (:data:`HUBERT_ARCH_KEYS`)."""
    d = config.to_dict()
    return {k: list(d[k]) if isinstance(d[k], tuple) else d[k] for k in HUBERT_ARCH_KEYS}


def hubert_padding(config: HubertConfig) -> tuple[int, int]:
    """Zero samples to add ``(left, right)`` of a ``[B, 320 F]`` input so the front end yields exactly ``F`` frames.

    The receptive field is ``R = 1 + sum_i (k_i - 1) * prod_{j<i} s_j`` (400 for HuBERT's kernels); an input of
    ``320 (F - 1) + R`` samples gives ``F`` frames, frame ``f`` centred on sample ``320 f + 160`` of the original.
    """
    stride, field_ = 1, 1
    for k, s in zip(config.conv_kernel, config.conv_stride, strict=True):
        field_ += (k - 1) * stride
        stride *= s
    if stride != HOP_LENGTH or field_ < HOP_LENGTH:
        raise ValueError(f"the conv front end must have total stride {HOP_LENGTH} and a receptive field of at "
                         f"least {HOP_LENGTH} samples, got stride {stride}, field {field_}")
    extra = field_ - HOP_LENGTH
    return extra // 2, extra - extra // 2


def num_frames(num_samples: int) -> int:
    """Units for ``num_samples`` samples at 16 kHz: ``ceil(T / 320)``."""
    return -(-num_samples // HOP_LENGTH)


def collapse_repeats(units: torch.Tensor | np.ndarray | list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Merge runs of the same unit: ``[5, 5, 7, 5] -> ([5, 7, 5], [2, 1, 1])``.

    Args:
        units: ``[F]`` integer units.

    Returns:
        ``(units [F'], durations [F'])`` int64; ``units.repeat_interleave(durations)`` gives the input back.
    """
    u = torch.as_tensor(units).reshape(-1).long()
    if u.numel() == 0:
        return u, torch.zeros(0, dtype=torch.long)
    out, durations = torch.unique_consecutive(u, return_counts=True)
    return out, durations


def without_blanks(units: UnitArray) -> UnitArray:
    """``"phone"`` units without their CTC blank (:data:`PHONE_BLANK`): ``[0, 5, 0, 7] -> [5, 7]``; ``[F]`` torch
    or numpy in, the same kind out (after :func:`collapse_repeats`, one unit per recognized phone)."""
    return units[units != PHONE_BLANK]


class UnitTokenizer(torch.nn.Module):
    """Waveform -> discrete units at 50 Hz (k-means over MFCC, HuBERT or Conformer features, or phone decisions).

    Build one with :func:`training.train_units.fit_mfcc_units` / ``fit_hubert_units`` / ``fit_conformer_units``
    or ``training.finetune_units --phone-units``, or load a saved one with :meth:`from_pretrained`.

    Args:
        config: what the tokenizer is (kind, number of units, feature sizes).
        hubert: the trained network for ``"hubert"`` units (``None``: a randomly initialised one of
            ``config.hubert``'s architecture, to be overwritten by loaded weights). Its weights are rounded to
            ``config.weights_dtype`` in place.
        conformer: likewise the trained network for ``"conformer"`` and ``"phone"`` units (``config.conformer``'s
            architecture).
    """

    sample_rate: ClassVar[int] = SAMPLE_RATE
    frame_rate: ClassVar[int] = FRAME_RATE
    hop_length: ClassVar[int] = HOP_LENGTH

    def __init__(self, config: UnitConfig, hubert: HubertModel | None = None,
                 conformer: Wav2Vec2BertModel | None = None) -> None:
        super().__init__()
        self.config = config
        self.register_buffer("centroids", torch.zeros(config.num_units, config.feature_dim))  # [K, D]
        self.register_buffer("feat_mean", torch.zeros(config.feature_dim))  # [D]
        self.register_buffer("feat_std", torch.ones(config.feature_dim))  # [D]
        self.hubert: HubertModel | None = None
        if config.kind == "hubert":
            assert config.hubert is not None
            hcfg = HubertConfig(**config.hubert)
            if hubert is None:
                hubert = HubertModel(hcfg)
            elif hubert_arch(hubert.config) != hubert_arch(hcfg):
                raise ValueError("the HuBERT model does not match config.hubert")
            if config.weights_dtype == "float16":
                with torch.no_grad():
                    for p in hubert.parameters():
                        p.copy_(p.half().float())
            self.hubert = hubert.float().eval()
            self._pad = hubert_padding(hcfg)
        if config.kind == "phone":  # the phone-CTC head: logits [F, K] = features [F, D] @ head_weight.T + head_bias
            self.register_buffer("head_weight", torch.zeros(config.num_units, config.feature_dim))  # [K, D]
            self.register_buffer("head_bias", torch.zeros(config.num_units))  # [K]
        self.conformer: Wav2Vec2BertModel | None = None
        if config.kind in CONFORMER_KINDS:
            assert config.conformer is not None
            ccfg = Wav2Vec2BertConfig(**config.conformer, add_adapter=False, layerdrop=0.0)
            if conformer is None:
                conformer = Wav2Vec2BertModel(ccfg)
            elif conformer_arch(conformer.config) != conformer_arch(ccfg):
                raise ValueError("the Conformer model does not match config.conformer")
            if config.weights_dtype == "float16":
                with torch.no_grad():
                    for p in conformer.parameters():
                        p.copy_(p.half().float())
            self.conformer = conformer.float().eval()

    # --- properties ----------------------------------------------------------------------------------------
    @property
    def kind(self) -> str:
        """``"mfcc"``, ``"hubert"``, ``"conformer"`` or ``"phone"``."""
        return self.config.kind

    @property
    def num_units(self) -> int:
        """Vocabulary size ``K``: units are in ``[0, K)``."""
        return self.config.num_units

    @property
    def device(self) -> torch.device:
        return self.centroids.device

    def train(self, mode: bool = True) -> UnitTokenizer:
        """A fitted tokenizer is frozen: it stays in eval mode (no dropout) even inside a module being trained."""
        return super().train(False)

    # --- public API ----------------------------------------------------------------------------------------
    @torch.no_grad()
    def encode(
        self, wav: torch.Tensor | np.ndarray, sample_rate: int | None = None, collapse: bool = False,
        drop_blanks: bool = False,
    ) -> torch.Tensor | list[torch.Tensor]:
        """Units of one waveform or of a batch.

        Args:
            wav: ``[T]`` or ``[B, T]`` float waveform in ``[-1, 1]`` (louder input is clipped).
            sample_rate: rate of ``wav`` in Hz (``None``: 16 kHz); other rates are resampled with soxr.
            collapse: merge runs of repeated units (see :func:`collapse_repeats`).
            drop_blanks: leave out the CTC blank (unit 0) of ``"phone"`` units, after collapsing, so a phone
                repeated across a blank stays two units (other kinds have no blank: a ``ValueError``).

        Returns:
            int64 ``[F]`` with ``F = ceil(T16 / 320)`` (``T16``: length at 16 kHz), or for ``[B, T]`` input a list
            of ``B`` such tensors; shorter ``[F']`` when ``collapse``. Values in ``[0, num_units)``, on CPU.

        Raises:
            AudioInputError: empty, NaN/Inf, non-float, wrong rank, or an absurd ``sample_rate``.
        """
        if drop_blanks and self.kind != "phone":
            raise ValueError(f"drop_blanks needs 'phone' units (unit 0 is their CTC blank), not {self.kind!r}")
        single = getattr(wav, "ndim", None) == 1
        units = [self.assign(f).cpu() for f in self.features(wav, sample_rate)]
        if collapse:
            units = [collapse_repeats(u)[0] for u in units]
        if drop_blanks:
            units = [without_blanks(u) for u in units]
        return units[0] if single else units

    @torch.no_grad()
    def features(self, wav: torch.Tensor | np.ndarray, sample_rate: int | None = None) -> list[torch.Tensor]:
        """The un-normalised features the codebook clusters, one ``[F, D]`` float32 tensor per waveform.

        Args:
            wav, sample_rate: as in :meth:`encode`.
        """
        x = self.prepare(wav, sample_rate)  # [B, T]
        if self.kind == "mfcc":
            return [self._mfcc_features(row) for row in x]
        if self.kind in CONFORMER_KINDS:
            return list(self._conformer_features(x).unbind(0))
        return list(self._hubert_features(x).unbind(0))

    def assign(self, feats: torch.Tensor) -> torch.Tensor:
        """Nearest centroid of normalised ``[F, D]`` features (``"phone"``: most likely phone) -> ``[F]`` int64."""
        if self.kind == "phone":
            return self.phone_logits(feats).argmax(dim=1)
        z = (feats.to(self.device) - self.feat_mean) / self.feat_std  # [F, D]
        c = self.centroids  # [K, D]
        dist = c.pow(2).sum(1)[None, :] - 2.0 * (z @ c.T)  # [F, K]; + |z|^2 is the same for every centroid
        return dist.argmin(dim=1)

    def phone_logits(self, feats: torch.Tensor) -> torch.Tensor:
        """The phone-CTC head of ``"phone"`` units on ``[F, D]`` features (:meth:`features`) -> ``[F, K]`` logits,
        blank first (``config.phones``)."""
        if self.kind != "phone":
            raise ValueError(f"phone logits need 'phone' units, not {self.kind!r}")
        return feats.to(self.device) @ self.head_weight.T + self.head_bias

    def set_phone_head(self, weight: torch.Tensor, bias: torch.Tensor) -> None:
        """Install the phone-CTC head of ``"phone"`` units: ``weight [K, D]``, ``bias [K]`` (blank first)."""
        if self.kind != "phone":
            raise ValueError(f"a phone head is for 'phone' units, not {self.kind!r}")
        w, b = torch.as_tensor(weight, dtype=torch.float32), torch.as_tensor(bias, dtype=torch.float32)
        if w.shape != self.head_weight.shape or b.shape != self.head_bias.shape:
            raise ValueError(f"phone head shapes {tuple(w.shape)}, {tuple(b.shape)} do not match "
                             f"[K={self.num_units}, D={self.config.feature_dim}]")
        if not (torch.isfinite(w).all() and torch.isfinite(b).all()):
            raise ValueError("the phone head must be finite")
        self.head_weight.copy_(w.detach())
        self.head_bias.copy_(b.detach())

    def set_codebook(self, centroids: torch.Tensor | np.ndarray, mean: torch.Tensor | np.ndarray,
                     std: torch.Tensor | np.ndarray) -> None:
        """Install k-means ``centroids [K, D]`` (in normalised space) and the normalisation ``mean, std [D]``."""
        c, m, s = (torch.as_tensor(np.asarray(a), dtype=torch.float32) for a in (centroids, mean, std))
        if c.shape != self.centroids.shape or m.shape != self.feat_mean.shape or s.shape != self.feat_std.shape:
            raise ValueError(f"codebook shapes {tuple(c.shape)}, {tuple(m.shape)}, {tuple(s.shape)} do not match "
                             f"[K={self.num_units}, D={self.config.feature_dim}]")
        if not (torch.isfinite(c).all() and torch.isfinite(m).all() and (s > 0).all()):
            raise ValueError("codebook must be finite with a positive std")
        self.centroids.copy_(c)
        self.feat_mean.copy_(m)
        self.feat_std.copy_(s)

    collapse_repeats = staticmethod(collapse_repeats)

    def prepare(self, wav: torch.Tensor | np.ndarray, sample_rate: int | None = None) -> torch.Tensor:
        """Check, resample to 16 kHz and clip input audio to ``[B, T]`` float32 on CPU."""
        if not isinstance(wav, (torch.Tensor, np.ndarray)):
            raise AudioInputError(f"expected a waveform tensor or array, got {type(wav).__name__}")
        x = torch.as_tensor(wav)
        if x.dim() == 1:
            x = x[None]
        if x.dim() != 2:
            raise AudioInputError(f"expected a waveform [T] or a batch [B, T], got shape {tuple(x.shape)}")
        if x.numel() == 0:
            raise AudioInputError(f"empty audio (shape {tuple(x.shape)}): no samples to encode")
        if not x.is_floating_point():
            raise AudioInputError(f"expected float samples in [-1, 1], got dtype {x.dtype} (use codec.load_audio)")
        x = x.detach().float().cpu()
        if not torch.isfinite(x).all():
            raise AudioInputError(f"audio contains {int((~torch.isfinite(x)).sum())} NaN or Inf samples")
        if sample_rate is not None and sample_rate != SAMPLE_RATE:
            if not MIN_SAMPLE_RATE <= sample_rate <= MAX_SAMPLE_RATE or sample_rate != int(sample_rate):
                raise AudioInputError(f"absurd sample rate {sample_rate} Hz: expected an integer in "
                                      f"{MIN_SAMPLE_RATE}..{MAX_SAMPLE_RATE}")
            rows = [soxr.resample(r.numpy(), int(sample_rate), SAMPLE_RATE, quality=RESAMPLE_QUALITY) for r in x]
            if rows[0].size == 0:
                raise AudioInputError(f"{x.shape[-1]} samples at {sample_rate} Hz resample to none at {SAMPLE_RATE}")
            x = torch.from_numpy(np.stack(rows).astype(np.float32))
        return x.clamp(-1.0, 1.0)

    # --- features ------------------------------------------------------------------------------------------
    def _mfcc_features(self, x: torch.Tensor) -> torch.Tensor:
        """``[T]`` -> ``[F, 3 * n_mfcc]``: MFCC + deltas at 100 Hz, triangular-pooled to 50 Hz (module docstring)."""
        n = num_frames(x.shape[-1])
        x = torch.nn.functional.pad(x, (0, n * HOP_LENGTH - x.shape[-1]))  # [320 F]
        m = mfcc(x, SAMPLE_RATE, n_mfcc=self.config.n_mfcc, deltas=True, n_mels=self.config.n_mels,
                 hop_length=MFCC_HOP)  # [D, 2F + 1]
        pooled = 0.25 * m[:, 0:2 * n:2] + 0.5 * m[:, 1:2 * n:2] + 0.25 * m[:, 2:2 * n + 1:2]  # [D, F]
        return pooled.T.contiguous()

    def _hubert_features(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, T]`` -> ``[B, F, D]`` outputs of transformer layer ``feature_layer``, chunked past 60 s."""
        assert self.hubert is not None and self.config.feature_layer is not None
        n = num_frames(x.shape[-1])
        left, right = self._pad
        x = torch.nn.functional.pad(x, (left, n * HOP_LENGTH - x.shape[-1] + right)).to(self.device)
        out = []
        for a in range(0, n, CHUNK_FRAMES):
            b = min(n, a + CHUNK_FRAMES)
            seg = x[:, a * HOP_LENGTH: b * HOP_LENGTH + left + right]  # [B, 320 (b - a) + R - 320]
            hidden = self.hubert(seg, output_hidden_states=True).hidden_states  # (L + 1) x [B, b - a, D]
            out.append(hidden[self.config.feature_layer])
        return torch.cat(out, dim=1).float()

    def _conformer_features(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, T]`` -> ``[B, F, D]`` outputs of Conformer layer ``feature_layer``, chunked past 60 s."""
        assert self.conformer is not None and self.config.feature_layer is not None
        inputs = torch.stack([conformer_inputs(row) for row in x]).to(self.device)  # [B, F, 240]
        out = []
        for a in range(0, inputs.shape[1], CHUNK_FRAMES):
            hidden = self.conformer(inputs[:, a: a + CHUNK_FRAMES], output_hidden_states=True).hidden_states
            out.append(hidden[self.config.feature_layer])  # [B, chunk, D]
        return torch.cat(out, dim=1).float()

    # --- persistence ---------------------------------------------------------------------------------------
    def save_pretrained(self, directory: str | os.PathLike) -> Path:
        """Write ``config.json`` and ``model.safetensors`` to ``directory``, each atomically (temp file + rename)."""
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        dtype = torch.float16 if self.config.weights_dtype == "float16" else torch.float32
        state = {k: (v.to(dtype) if k.startswith(("hubert.", "conformer.")) else v).detach().cpu().contiguous()
                 for k, v in self.state_dict().items()}
        config = {"tokenizer_class": type(self).__name__, **asdict(self.config)}
        atomic_write(out / WEIGHTS_NAME, lambda p: save_file(state, str(p), metadata={"format": "pt"}))
        atomic_write_text(out / CONFIG_NAME, json.dumps(config, indent=2) + "\n")  # both world-readable (0644)
        return out

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike, device: str | torch.device = "cpu") -> UnitTokenizer:
        """Rebuild a tokenizer saved with :meth:`save_pretrained` (a directory with config + safetensors)."""
        config, state = read_pretrained(directory)
        name = config.pop("tokenizer_class", cls.__name__)
        if name != cls.__name__:
            raise ValueError(f"{directory}: config names tokenizer class {name!r}, not {cls.__name__}")
        try:
            tok = cls(UnitConfig(**config))
        except TypeError as e:
            raise ValueError(f"{directory}/{CONFIG_NAME} has unknown or missing fields: {e}") from e
        try:
            missing, unexpected = tok.load_state_dict({k: v.float() for k, v in state.items()}, strict=False)
        except RuntimeError as e:  # a tensor of another shape than the config builds
            raise ValueError(f"{directory}/{WEIGHTS_NAME}: weights do not match the config: {e}") from e
        if missing or unexpected:
            raise ValueError(f"{directory}: weights do not match the config (missing {missing[:5]}, "
                             f"unexpected {unexpected[:5]})")
        return tok.to(device).eval()

    def extra_repr(self) -> str:
        layer = f", feature_layer={self.config.feature_layer}" if self.kind != "mfcc" else ""
        return f"kind={self.kind}, num_units={self.num_units}, frame_rate={FRAME_RATE}{layer}"

