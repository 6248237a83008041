"""Decoding an RNN-T: greedy, frame-synchronous beam search, and streaming greedy over a causal encoder.

All three read encoder frames one at a time and ask the joint network, per frame, "blank or which label?":

- :func:`rnnt_greedy_decode`: take the argmax; a label feeds the prediction network and the same frame is asked
  again, at most ``max_symbols_per_frame`` times (so decoding always ends), a blank moves to the next frame.
- :func:`rnnt_beam_search`: the same expansion kept breadth-first over ``beam_size`` hypotheses, in the spirit
  of Graves (2012) and ESPnet's default transducer beam: within a frame, each round scores "blank" (the
  hypothesis is done with this frame) and the best labels (it stays) of every live hypothesis, keeps the best
  ``beam_size`` of those together with the hypotheses already done, and merges equal label sequences by adding
  their probabilities. With ``beam_size=1`` every round keeps the single argmax: exactly greedy decoding.
- :class:`StreamingRNNT`: greedy decoding of a stream, chunk by chunk through a causal encoder
  (:class:`~legacy_seq2seq.conformer.ConformerStreamer`); on the whole input it gives the full-utterance output.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from legacy_seq2seq.conformer import ConformerStreamer
from legacy_seq2seq.text import BLANK_ID

if TYPE_CHECKING:
    from legacy_seq2seq.rnnt import LSTMState, RNNTModel

logger = logging.getLogger(__name__)

MAX_SYMBOLS_PER_FRAME = 5  # bound on labels emitted at one encoder frame (40 ms): more than speech ever needs


def _check_max_symbols(max_symbols_per_frame: int) -> None:
    if max_symbols_per_frame < 1:
        raise ValueError(f"max_symbols_per_frame must be positive, got {max_symbols_per_frame}")


def _start(model: RNNTModel) -> tuple[torch.Tensor, LSTMState]:
    """Prediction-network output ``[1, P]`` and state after the start symbol."""
    device = next(model.parameters()).device
    return model.prediction.step(torch.tensor([BLANK_ID], device=device), None)


class _GreedyDecoder:
    """Greedy decoding state of one utterance, advanced one encoder frame at a time."""

    def __init__(self, model: RNNTModel, max_symbols_per_frame: int) -> None:
        _check_max_symbols(max_symbols_per_frame)
        self.model, self.max_symbols = model, max_symbols_per_frame
        self.tokens: list[int] = []
        self.pred, self.state = _start(model)

    def frame(self, enc: torch.Tensor) -> list[int]:
        """Decode one encoder frame ``[D]``; returns the labels it emitted."""
        new: list[int] = []
        for _ in range(self.max_symbols):
            log_probs = self.model.joint.step(enc[None], self.pred).log_softmax(-1)[0]
            k = int(log_probs.argmax())
            if k == BLANK_ID:
                break
            new.append(k)
            self.pred, self.state = self.model.prediction.step(torch.tensor([k], device=enc.device), self.state)
        self.tokens.extend(new)
        return new


@torch.no_grad()
def rnnt_greedy_decode(model: RNNTModel, encoded: torch.Tensor,
                       max_symbols_per_frame: int = MAX_SYMBOLS_PER_FRAME) -> list[int]:
    """Greedy decoding of one utterance.

    Args:
        model: the transducer (in eval mode).
        encoded: its encoder's output for the valid frames ``[T', D]``.
        max_symbols_per_frame: labels allowed per frame.

    Returns:
        The label ids (at most ``T' * max_symbols_per_frame`` of them).
    """
    decoder = _GreedyDecoder(model, max_symbols_per_frame)
    for t in range(encoded.size(0)):
        decoder.frame(encoded[t])
    return decoder.tokens


@dataclass
class _Hypothesis:
    tokens: tuple[int, ...]
    score: float  # log-probability of every path to this label sequence kept so far
    pred: torch.Tensor  # prediction-network output after `tokens`, [1, P]
    state: LSTMState


def _merge(pool: dict[tuple[int, ...], _Hypothesis], hyp: _Hypothesis) -> None:
    """Add ``hyp`` to ``pool``; an equal label sequence (same prediction state) adds its probability."""
    seen = pool.get(hyp.tokens)
    if seen is None:
        pool[hyp.tokens] = hyp
    else:
        hi, lo = max(seen.score, hyp.score), min(seen.score, hyp.score)
        seen.score = hi + math.log1p(math.exp(lo - hi))


@torch.no_grad()
def rnnt_beam_search(model: RNNTModel, encoded: torch.Tensor, beam_size: int = 4,
                     max_symbols_per_frame: int = MAX_SYMBOLS_PER_FRAME) -> list[tuple[list[int], float]]:
    """Frame-synchronous breadth-first beam search of one utterance (see the module docstring).

    Args:
        model: the transducer (in eval mode).
        encoded: its encoder's output for the valid frames ``[T', D]``.
        beam_size: hypotheses kept; 1 gives exactly :func:`rnnt_greedy_decode`'s labels.
        max_symbols_per_frame: labels a hypothesis may add per frame.

    Returns:
        Up to ``beam_size`` ``(label ids, log-probability)`` pairs, best first.
    """
    if beam_size < 1:
        raise ValueError(f"beam_size must be positive, got {beam_size}")
    _check_max_symbols(max_symbols_per_frame)
    n_labels = min(beam_size, model.config.vocab_size - 1)
    pred, state = _start(model)
    beam = [_Hypothesis((), 0.0, pred, state)]
    for t in range(encoded.size(0)):
        live, done = beam, {}
        for step in range(max_symbols_per_frame + 1):
            if not live:
                break
            log_probs = model.joint.step(encoded[t].expand(len(live), -1), torch.cat([h.pred for h in live]))
            log_probs = log_probs.log_softmax(-1).double()
            top_lp, top_k = log_probs[:, 1:].topk(n_labels, dim=-1)  # ids shifted by one: blank is id 0
            # candidates: (score, hypothesis, label or None for blank); the blank comes first, as in argmax ties
            candidates: list[tuple[float, _Hypothesis, int | None]] = []
            for i, h in enumerate(live):
                candidates.append((h.score + float(log_probs[i, BLANK_ID]), h, None))
                if step < max_symbols_per_frame:
                    candidates += [(h.score + float(lp), h, int(k) + 1) for lp, k in zip(top_lp[i], top_k[i])]
            candidates += [(h.score, h, None) for h in done.values()]  # already done with this frame
            candidates.sort(key=lambda c: c[0], reverse=True)  # stable: ties keep the order above
            done, grown = {}, {}
            for score, h, k in candidates[:beam_size]:
                if k is None:
                    _merge(done, _Hypothesis(h.tokens, score, h.pred, h.state))
                else:
                    out, new_state = model.prediction.step(torch.tensor([k], device=encoded.device), h.state)
                    _merge(grown, _Hypothesis(h.tokens + (k,), score, out, new_state))
            live = list(grown.values())
        beam = sorted(done.values(), key=lambda h: h.score, reverse=True)[:beam_size]
    return [(list(h.tokens), h.score) for h in beam]


class StreamingRNNT:
    """Greedy RNN-T decoding of one stream of features, emitting labels as soon as their chunk is encoded.

    The model must be causal (``RNNTConfig(causal=True)``) and in eval mode. Feed log-mel frames in pieces of
    any size with :meth:`accept`; call :meth:`finish` at the end. The labels equal
    ``model.greedy_decode`` on the whole utterance.

    Args:
        model: a causal transducer.
        max_symbols_per_frame: labels allowed per encoder frame.
    """

    def __init__(self, model: RNNTModel, max_symbols_per_frame: int = MAX_SYMBOLS_PER_FRAME) -> None:
        if not model.config.causal:
            raise ValueError("streaming needs a causal model: RNNTConfig(causal=True)")
        self.model = model
        self.encoder = ConformerStreamer(model.encoder)
        self._decoder = _GreedyDecoder(model, max_symbols_per_frame)

    @property
    def tokens(self) -> list[int]:
        """Every label emitted so far."""
        return list(self._decoder.tokens)

    @torch.no_grad()
    def accept(self, features: torch.Tensor) -> list[int]:
        """Take the next log-mel frames ``[T, n_mels]``; returns the labels they completed."""
        return self._decode(self.encoder.accept(features))

    @torch.no_grad()
    def finish(self) -> list[int]:
        """End the stream: decode the last partial chunk; returns its labels."""
        return self._decode(self.encoder.flush())

    def _decode(self, encoded: torch.Tensor) -> list[int]:
        new: list[int] = []
        for t in range(encoded.size(0)):
            new += self._decoder.frame(encoded[t])
        return new
