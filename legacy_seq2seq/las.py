"""Listen, Attend and Spell (Chan et al. 2016): a pyramidal BiLSTM listener and an attending LSTM speller.

Shapes: ``B`` utterances, ``T`` feature frames (log-mel, ``n_mels`` wide), ``T' = T // 8`` listener frames,
``U`` output steps, ``V`` vocabulary entries::

    features [B, T, n_mels] --BLSTM--> [B, T, 2H] --3 x pBLSTM--> h [B, T', 2H]
    s_u = LSTM_2(LSTM_1([embed(y_{u-1}); c_{u-1}]))          # input feeding of the previous context
    c_u, a_u = Attend(s_u, h)                                   # location-aware (default) or MoChA
    logits_u = MLP([s_u; c_u])                                  # [B, V]

Each pyramid layer concatenates frames ``2i`` and ``2i + 1``. Where a length is odd the last frame is dropped,
so every pyramid layer maps a length ``L`` to ``L // 2`` and the listener maps ``T`` valid frames to exactly
``T // 8`` (input needs at least 8 frames). Each BLSTM runs on packed sequences, so the listener's output on
valid frames does not depend on the padding.

Joint CTC-attention training (Kim, Hori & Watanabe 2017; ESPnet's ``mtlalpha``), on when ``ctc_weight > 0``: a
linear CTC head on the listener output, over the same ids plus the blank (``BLANK_ID`` = 0 of
:mod:`legacy_seq2seq.text`, which is also the LAS padding id), and the loss
``ctc_weight * CTC + (1 - ctc_weight) * CE``. CTC makes the listener's frames monotonic and aligned with the
characters, so the attention has something to lock on to. At 8x reduction a listener frame lasts 80 ms
(12.5 frames/s), fewer than the 13-19 characters per second of corpus-3h's speech (10th-90th percentile), so
CTC (which needs a frame per character, and one more between repeated characters) cannot align 93% of its
utterances; the head therefore emits ``ctc_upsample`` CTC frames per listener frame (the upsampled CTC of
Libovicky & Helcl 2018; 2 leaves 0.2% unalignable)::

    h [B, T', D] --Linear(D, k V)--> [B, T', k V] --reshape--> CTC log-probs [B, k T', V]    (k = ctc_upsample)

Guided attention (Tachibana et al. 2017), on when ``guided_attention_weight > 0``: a BiLSTM listener can let the
attention sit on one frame that summarizes the utterance (the last one, measured here), and the speller then
writes language-model guesses while the CTC head on the same frames aligns fine. The penalty of
:func:`legacy_seq2seq.guided_attention.guided_attention_loss` on the attention ``[B, U, T']`` (output step ``u`` of
``U_b`` x listener frame ``t`` of ``T'_b``; 0 on the diagonal ``t / T'_b = u / U_b``, up to 1 off it) is added to
the loss in training mode, as Tacotron 2's; the trainer turns it off after ``guided_attention_steps``.

Training (:meth:`LASModel.forward`) is teacher-forced; scheduled sampling (Bengio et al. 2015) feeds, with
probability ``sampling_prob`` per utterance and step, a token sampled from the model's own previous output
distribution instead (training mode only; keep it 0 at the start, then ramp it with :func:`sampling_schedule`).
Decoding lives in :mod:`legacy_seq2seq.las_decoding`.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from legacy_seq2seq.checkpoint import load_model_dir, save_model_dir
from legacy_seq2seq.ctc import ctc_greedy_decode
from legacy_seq2seq.guided_attention import GUIDED_ATTENTION_G, guided_attention_loss
from legacy_seq2seq.las_attention import AttentionState, EncoderMemory, LocationAwareAttention
from legacy_seq2seq.mocha import MonotonicChunkwiseAttention
from legacy_seq2seq.text import BLANK_ID

logger = logging.getLogger(__name__)

SCHEMA_VERSION = 1
ATTENTIONS = ("location", "mocha")


@dataclass
class LASConfig:
    """Architecture and training-loss settings of :class:`LASModel`; saved as ``config.json``.

    Attributes:
        vocab_size: output vocabulary size V (token ids in ``[0, V)``).
        sos_id: the token fed before the first output step.
        eos_id: the token that ends a transcript (targets end with it).
        pad_id: the padding id of targets; ignored by the loss.
        n_mels: feature width.
        listener_hidden: LSTM units per direction H.
        pyramid_layers: pBLSTM layers above the first BLSTM; time reduction ``2 ** pyramid_layers``.
        listener_bidirectional: False gives a unidirectional (streaming) listener.
        speller_hidden: units of each speller LSTM layer.
        speller_layers: stacked speller LSTM layers.
        embed_dim: token embedding size.
        attention: ``"location"`` (Chorowski et al. 2015) or ``"mocha"`` (Chiu & Raffel 2018).
        attention_dim: size of the attention energy MLP(s).
        location_channels: location-aware attention: number of filters over the previous weights.
        location_kernel: location-aware attention: filter width (odd).
        mocha_chunk: MoChA chunk width ``w`` (listener frames).
        mocha_init_bias: MoChA initial monotonic energy offset ``r``.
        mocha_noise_std: MoChA pre-sigmoid noise in training.
        dropout: between LSTM layers and before the output MLP.
        label_smoothing: cross-entropy label smoothing.
        sampling_prob: scheduled-sampling probability (training mode only).
        ctc_weight: joint CTC-attention weight in ``[0, 1)``; > 0 adds the CTC head on the listener output and
            trains ``ctc_weight * CTC + (1 - ctc_weight) * CE``. Its blank is ``BLANK_ID`` (0), so it needs
            ``pad_id == 0`` (the :func:`legacy_seq2seq.inference.las_token_ids` layout). Configs saved before
            this field load with 0.0 (no head).
        ctc_upsample: CTC frames per listener frame ``k`` (only with ``ctc_weight > 0``); 2 gives 25 CTC
            frames/s at the 8x pyramid, enough for character targets.
        guided_attention_weight: weight of the guided (diagonal) attention loss added to the loss in training
            mode (:meth:`LASModel.forward` can override it, e.g. 0 after the first steps); 0 leaves it out. Configs
            saved before this field load with 0.0.
        guided_attention_g: the diagonal band's width ``g`` (Tacotron 2's :data:`GUIDED_ATTENTION_G`).
        schema_version: version of this config's layout.
    """

    vocab_size: int
    sos_id: int
    eos_id: int
    pad_id: int = 0
    n_mels: int = 80
    listener_hidden: int = 256
    pyramid_layers: int = 3
    listener_bidirectional: bool = True
    speller_hidden: int = 512
    speller_layers: int = 2
    embed_dim: int = 256
    attention: str = "location"
    attention_dim: int = 256
    location_channels: int = 10
    location_kernel: int = 31
    mocha_chunk: int = 4
    mocha_init_bias: float = -4.0
    mocha_noise_std: float = 1.0
    dropout: float = 0.0
    label_smoothing: float = 0.1
    sampling_prob: float = 0.0
    ctc_weight: float = 0.0
    ctc_upsample: int = 1
    guided_attention_weight: float = 0.0
    guided_attention_g: float = GUIDED_ATTENTION_G
    schema_version: int = SCHEMA_VERSION

    def __post_init__(self) -> None:
        if self.schema_version != SCHEMA_VERSION:
            raise ValueError(f"LASConfig schema_version {self.schema_version} is not supported (this code reads "
                             f"{SCHEMA_VERSION}); re-export the model with a matching version of legacy_seq2seq")
        if self.attention not in ATTENTIONS:
            raise ValueError(f"attention must be one of {ATTENTIONS}, got {self.attention!r}")
        for name in ("sos_id", "eos_id", "pad_id"):
            if not 0 <= getattr(self, name) < self.vocab_size:
                raise ValueError(f"{name}={getattr(self, name)} is outside the vocabulary [0, {self.vocab_size})")
        if not 0.0 <= self.sampling_prob <= 1.0 or not 0.0 <= self.label_smoothing < 1.0:
            raise ValueError("sampling_prob must be in [0, 1] and label_smoothing in [0, 1)")
        if self.pyramid_layers < 0 or self.speller_layers < 1:
            raise ValueError("pyramid_layers must be >= 0 and speller_layers >= 1")
        if not 0.0 <= self.ctc_weight < 1.0 or self.ctc_upsample < 1:
            raise ValueError(f"ctc_weight must be in [0, 1) and ctc_upsample >= 1, got {self.ctc_weight} and "
                             f"{self.ctc_upsample}")
        if self.ctc_weight > 0 and (self.pad_id != BLANK_ID or BLANK_ID in (self.sos_id, self.eos_id)):
            raise ValueError(f"ctc_weight > 0: the CTC blank is id {BLANK_ID}, which must be the pad_id (never a "
                             f"target) and neither sos_id nor eos_id; got pad_id={self.pad_id}, "
                             f"sos_id={self.sos_id}, eos_id={self.eos_id}")
        if self.guided_attention_weight < 0 or self.guided_attention_g <= 0:
            raise ValueError(f"guided_attention_weight must be >= 0 and guided_attention_g > 0, got "
                             f"{self.guided_attention_weight} and {self.guided_attention_g}")

    @property
    def time_reduction(self) -> int:
        """Feature frames per listener frame: ``2 ** pyramid_layers`` (8 for the paper's 3 pBLSTM layers)."""
        return 2 ** self.pyramid_layers

    @property
    def encoder_dim(self) -> int:
        """Listener output size D (both directions concatenated)."""
        return self.listener_hidden * (2 if self.listener_bidirectional else 1)


@dataclass
class LASOutput:
    """What :meth:`LASModel.forward` returns.

    Attributes:
        loss: scalar, what is optimized: ``attention_loss``, or with a CTC head
            ``ctc_weight * ctc_loss + (1 - ctc_weight) * attention_loss``; in training mode plus
            ``guided_attention_weight * guided_loss``.
        logits: ``[B, U, V]``.
        attention: ``[B, U, T']`` attention weights of every output step.
        encoder_lengths: ``[B]`` valid listener frames ``T'_b``.
        attention_loss: scalar, label-smoothed cross-entropy averaged over non-pad target tokens.
        ctc_loss: scalar CTC loss (per utterance divided by its label count, then averaged; utterances CTC
            cannot align count zero), or None without a CTC head.
        guided_loss: scalar guided attention loss (unweighted, in ``[0, 1]``: 0 on the diagonal), computed in
            training and eval mode whenever ``config.guided_attention_weight > 0`` (eval: a measure of how diagonal
            the attention is), else None.
    """

    loss: torch.Tensor
    logits: torch.Tensor
    attention: torch.Tensor
    encoder_lengths: torch.Tensor
    attention_loss: torch.Tensor
    ctc_loss: torch.Tensor | None = None
    guided_loss: torch.Tensor | None = None


@dataclass
class LASState:
    """The speller's recurrent state between output steps.

    Attributes:
        h: per speller layer, ``[B, S]`` LSTM hidden states.
        c: per speller layer, ``[B, S]`` LSTM cell states.
        context: ``[B, D]`` the previous attention context (input feeding).
        attention: the attention module's state.
        weights: ``[B, T']`` the latest step's attention weights.
    """

    h: list[torch.Tensor]
    c: list[torch.Tensor]
    context: torch.Tensor
    attention: AttentionState
    weights: torch.Tensor

    def index_select(self, index: torch.Tensor) -> LASState:
        """Rows ``index`` of every tensor (beam search reorders hypotheses)."""
        return LASState(
            h=[x.index_select(0, index) for x in self.h], c=[x.index_select(0, index) for x in self.c],
            context=self.context.index_select(0, index), attention=self.attention.index_select(index),
            weights=self.weights.index_select(0, index),
        )


def pyramid_lengths(lengths: torch.Tensor, layers: int) -> torch.Tensor:
    """Listener frames per utterance: every pyramid layer halves a length, dropping an odd last frame.

    Args:
        lengths: ``[B]`` valid feature frames.
        layers: pyramid layers.

    Returns:
        ``[B]`` ``lengths // 2 ** layers``.
    """
    for _ in range(layers):
        lengths = torch.div(lengths, 2, rounding_mode="floor")
    return lengths


def sampling_schedule(step: int, *, warmup_steps: int, ramp_steps: int, final_prob: float) -> float:
    """Scheduled-sampling probability: 0 for ``warmup_steps``, then linear up to ``final_prob`` over ``ramp_steps``."""
    if step < warmup_steps:
        return 0.0
    return final_prob * min(1.0, (step - warmup_steps) / max(1, ramp_steps))


class Listener(nn.Module):
    """A BLSTM, then ``pyramid_layers`` pBLSTMs each reading pairs of frames of the layer below."""

    def __init__(self, config: LASConfig) -> None:
        super().__init__()
        hidden, bi = config.listener_hidden, config.listener_bidirectional
        self.layers = nn.ModuleList([nn.LSTM(config.n_mels, hidden, batch_first=True, bidirectional=bi)])
        for _ in range(config.pyramid_layers):
            self.layers.append(nn.LSTM(2 * config.encoder_dim, hidden, batch_first=True, bidirectional=bi))
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, features: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Encode log-mel features.

        Args:
            features: ``[B, T, n_mels]``; frames at and beyond ``lengths[b]`` are padding.
            lengths: ``[B]`` valid frames, each at least ``2 ** pyramid_layers``.

        Returns:
            ``(h [B, T // 8, D], lengths [B])``, ``h`` zero beyond each utterance's ``lengths[b] // 8``.
        """
        x = features
        for i, lstm in enumerate(self.layers):
            if i > 0:  # concatenate frame pairs; an odd last frame is dropped
                b, t, d = x.shape
                x = x[:, : t // 2 * 2].reshape(b, t // 2, 2 * d)
                lengths = torch.div(lengths, 2, rounding_mode="floor")
            packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
            x, _ = pad_packed_sequence(lstm(packed)[0], batch_first=True, total_length=x.size(1))
            x = self.dropout(x)
        return x, lengths


class LASModel(nn.Module):
    """Listen, Attend and Spell; ``LASModel(LASConfig(vocab_size=..., sos_id=..., eos_id=...))``.

    Args:
        config: the architecture; :meth:`save_pretrained` stores it with the weights.
    """

    def __init__(self, config: LASConfig) -> None:
        super().__init__()
        self.config = config
        self.listener = Listener(config)
        self.embedding = nn.Embedding(config.vocab_size, config.embed_dim)
        sizes = [config.embed_dim + config.encoder_dim] + [config.speller_hidden] * (config.speller_layers - 1)
        self.speller = nn.ModuleList([nn.LSTMCell(n, config.speller_hidden) for n in sizes])
        d, s, a = config.encoder_dim, config.speller_hidden, config.attention_dim
        if config.attention == "location":
            self.attention = LocationAwareAttention(s, d, a, config.location_channels, config.location_kernel)
        else:
            self.attention = MonotonicChunkwiseAttention(s, d, a, config.mocha_chunk, config.mocha_init_bias,
                                                         config.mocha_noise_std)
        self.dropout = nn.Dropout(config.dropout)
        self.output = nn.Sequential(nn.Linear(s + d, s), nn.Tanh(), nn.Linear(s, config.vocab_size))
        # the joint CTC-attention head (None keeps old checkpoints' weight files exact)
        self.ctc_head = nn.Linear(d, config.ctc_upsample * config.vocab_size) if config.ctc_weight > 0 else None
        self._warned_unalignable = False

    def encode(self, features: torch.Tensor, lengths: torch.Tensor) -> EncoderMemory:
        """Run the listener and project its output for attention.

        Args:
            features: ``[B, T, n_mels]`` log-mel frames.
            lengths: ``[B]`` valid frames per utterance (at least ``config.time_reduction`` each).

        Returns:
            The memory (``values [B, T', D]``, ``mask [B, T']``) every decoding step reads.
        """
        if features.dim() != 3 or features.size(-1) != self.config.n_mels:
            raise ValueError(f"features must be [B, T, {self.config.n_mels}], got {list(features.shape)}")
        lengths = lengths.to(torch.long)
        if int(lengths.min()) < self.config.time_reduction or int(lengths.max()) > features.size(1):
            raise ValueError(f"lengths must be in [{self.config.time_reduction}, {features.size(1)}] (the "
                             f"listener reduces time {self.config.time_reduction}x), got {lengths.tolist()}")
        values, enc_lengths = self.listener(features, lengths)
        mask = torch.arange(values.size(1), device=values.device) < enc_lengths.to(values.device).unsqueeze(1)
        return self.attention.prepare(values, mask)

    def ctc_log_probs(self, memory: EncoderMemory) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-frame CTC log-probabilities of the listener output (needs ``ctc_weight > 0``).

        Args:
            memory: from :meth:`encode`.

        Returns:
            ``(log_probs [B, k T', V], lengths [B])`` with ``k = ctc_upsample``; id ``BLANK_ID`` (0) is the blank,
            frames at and beyond ``lengths[b] = k T'_b`` are padding.
        """
        if self.ctc_head is None:
            raise ValueError("this LAS model has no CTC head (ctc_weight=0); train one with ctc_weight > 0")
        b, t, _ = memory.values.shape
        logits = self.ctc_head(memory.values).view(b, t * self.config.ctc_upsample, self.config.vocab_size)
        return logits.float().log_softmax(-1), memory.lengths * self.config.ctc_upsample

    def ctc_loss(self, memory: EncoderMemory, targets: torch.Tensor) -> torch.Tensor:
        """CTC loss of the listener output against the transcripts (``torch.nn.functional.ctc_loss``).

        Args:
            memory: from :meth:`encode`.
            targets: ``[B, U]`` as in :meth:`forward`; ``pad_id``, ``sos_id`` and ``eos_id`` are left out.

        Returns:
            Scalar: per utterance the negative log-likelihood divided by its label count, averaged over the batch;
            an utterance with more labels (plus repeats) than CTC frames counts zero (``zero_infinity``).
        """
        cfg = self.config
        log_probs, lengths = self.ctc_log_probs(memory)
        keep = (targets != cfg.pad_id) & (targets != cfg.sos_id) & (targets != cfg.eos_id)  # [B, U]
        target_lengths = keep.sum(1)
        if not self._warned_unalignable:  # CTC needs a frame per label and one more between repeated labels
            repeats = (keep[:, 1:] & keep[:, :-1] & (targets[:, 1:] == targets[:, :-1])).sum(1)
            short = int(((target_lengths + repeats).to(lengths.device) > lengths).sum())
            if short:
                self._warned_unalignable = True
                logger.warning("%d of %d utterances have more labels than CTC frames (%d per listener frame); their "
                               "CTC loss is zero: raise ctc_upsample (warned once)", short, targets.size(0),
                               cfg.ctc_upsample)
        return F.ctc_loss(log_probs.transpose(0, 1), targets[keep], lengths, target_lengths, blank=BLANK_ID,
                          reduction="mean", zero_infinity=True)

    @torch.no_grad()
    def ctc_greedy_decode(self, features: torch.Tensor, lengths: torch.Tensor) -> list[list[int]]:
        """Best-path decoding of the CTC head (a check that the listener learned to align).

        Args:
            features: ``[B, T, n_mels]`` log-mel frames.
            lengths: ``[B]`` valid frames.

        Returns:
            B lists of label ids (blanks and repeats collapsed; ``sos_id`` and ``eos_id`` dropped).
        """
        log_probs, ctc_lengths = self.ctc_log_probs(self.encode(features, lengths))
        special = (self.config.sos_id, self.config.eos_id)
        return [[i for i in ctc_greedy_decode(log_probs[b, : int(n)]) if i not in special]
                for b, n in enumerate(ctc_lengths)]

    def initial_state(self, memory: EncoderMemory) -> LASState:
        """Zero LSTM states and context; attention starts on frame 0."""
        b, t, d = memory.values.shape
        zeros = memory.values.new_zeros(b, self.config.speller_hidden)
        return LASState(h=[zeros] * len(self.speller), c=[zeros] * len(self.speller),
                        context=memory.values.new_zeros(b, d), attention=AttentionState.initial(memory),
                        weights=memory.values.new_zeros(b, t))

    def step(
        self, prev_tokens: torch.Tensor, state: LASState, memory: EncoderMemory, hard: bool = False
    ) -> tuple[torch.Tensor, LASState]:
        """One output step.

        Args:
            prev_tokens: ``[B]`` the previous output token (``sos_id`` first).
            state: the previous state (:meth:`initial_state` first).
            memory: from :meth:`encode`.
            hard: MoChA's hard monotonic inference (ignored by location-aware attention).

        Returns:
            ``(logits [B, V], new state)``; ``new_state.weights [B, T']`` is this step's attention.
        """
        x = torch.cat([self.embedding(prev_tokens), state.context], dim=-1)
        hs, cs = [], []
        for cell, h, c in zip(self.speller, state.h, state.c):
            h, c = cell(x, (h, c))
            hs.append(h)
            cs.append(c)
            x = self.dropout(h)
        context, weights, att_state = self.attention(hs[-1], memory, state.attention, hard=hard)
        logits = self.output(self.dropout(torch.cat([hs[-1], context], dim=-1)))
        return logits, LASState(h=hs, c=cs, context=context, attention=att_state, weights=weights)

    def forward(
        self, features: torch.Tensor, lengths: torch.Tensor, targets: torch.Tensor, sampling_prob: float | None = None,
        guided_attention_weight: float | None = None,
    ) -> LASOutput:
        """Teacher-forced (optionally scheduled-sampling) loss.

        Args:
            features: ``[B, T, n_mels]`` log-mel frames.
            lengths: ``[B]`` valid frames.
            targets: ``[B, U]`` token ids, each transcript ending with ``eos_id``, padded with ``pad_id``. The
                speller reads ``[sos_id, targets[:, :-1]]``.
            sampling_prob: overrides ``config.sampling_prob`` (training mode only).
            guided_attention_weight: overrides ``config.guided_attention_weight`` in the loss (training mode, and
                only where the config's weight is > 0; the trainer passes 0 after ``guided_attention_steps``).

        Returns:
            :class:`LASOutput` with the loss (joint CTC-attention with a CTC head), logits ``[B, U, V]`` and
            attention ``[B, U, T']``.
        """
        cfg = self.config
        memory = self.encode(features, lengths)
        state = self.initial_state(memory)
        prob = cfg.sampling_prob if sampling_prob is None else sampling_prob
        prob = prob if self.training else 0.0
        prev = targets.new_full((targets.size(0),), cfg.sos_id)
        all_logits, all_weights = [], []
        for u in range(targets.size(1)):
            if u > 0:
                prev = targets[:, u - 1]
                if prob > 0:  # the model's own guess, sampled from its previous output distribution
                    guess = torch.multinomial(F.softmax(all_logits[-1].detach().float(), dim=-1), 1).squeeze(1)
                    use = torch.rand(prev.shape, device=prev.device) < prob
                    prev = torch.where(use, guess, prev)
            logits, state = self.step(prev, state, memory)
            all_logits.append(logits)
            all_weights.append(state.weights)
        logits = torch.stack(all_logits, dim=1)  # [B, U, V]
        att_loss = F.cross_entropy(logits.reshape(-1, cfg.vocab_size).float(), targets.reshape(-1),
                                   ignore_index=cfg.pad_id, label_smoothing=cfg.label_smoothing)
        ctc_loss, loss = None, att_loss
        if self.ctc_head is not None:
            ctc_loss = self.ctc_loss(memory, targets)
            loss = cfg.ctc_weight * ctc_loss + (1 - cfg.ctc_weight) * att_loss
        attention = torch.stack(all_weights, dim=1)  # [B, U, T']
        guided_loss = None
        if cfg.guided_attention_weight > 0:
            steps = (targets != cfg.pad_id).sum(1)  # U_b: the characters and the end id
            guided_loss = guided_attention_loss(attention, memory.lengths, steps, cfg.guided_attention_g)
            weight = cfg.guided_attention_weight if guided_attention_weight is None else guided_attention_weight
            if self.training and weight > 0:
                loss = loss + weight * guided_loss
        return LASOutput(loss=loss, logits=logits, attention=attention, encoder_lengths=memory.lengths,
                         attention_loss=att_loss, ctc_loss=ctc_loss, guided_loss=guided_loss)

    def save_pretrained(self, directory: str | os.PathLike) -> Path:
        """Write ``config.json`` + ``model.safetensors`` to ``directory`` atomically (temp dir, then rename)."""
        return save_model_dir(directory, self, self.config)

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike, device: str | torch.device = "cpu") -> LASModel:
        """Rebuild a model saved with :meth:`save_pretrained`; in eval mode on ``device``.

        Raises:
            legacy_seq2seq.checkpoint.CheckpointError: the directory is not a complete LAS model directory.
        """
        return load_model_dir(directory, cls, LASConfig, device=device)
