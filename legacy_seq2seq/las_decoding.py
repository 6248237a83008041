"""Decoding for :class:`legacy_seq2seq.las.LASModel`: greedy search and beam search with length and coverage penalties.

A hypothesis ``y`` (``|y|`` steps, counting the final ``eos`` when it has one) is ranked by::

    score(y) = log P(y | x) / |y| ** alpha  +  beta * sum_{t < T'} log(min(sum_u a_{u,t}, 1))

the length normalization of Wu et al. 2016 in its plain form, and the coverage penalty of GNMT (in the spirit of
Chorowski & Jaitly 2017's coverage term): frames the attention never reached cost ``log`` of their small
cumulative attention (floored at ``COVERAGE_FLOOR``, so a frame with exactly zero attention, e.g. outside every
MoChA chunk, costs ``log(1e-6)`` rather than ``-inf``). Every hypothesis stops after
``max_len_ratio * T' + max_len_offset`` steps (``T'`` its listener frames), so decoding always terminates;
one cut off there has no ``eos`` and ``finished=False``.

Joint CTC-attention decoding (Watanabe et al. 2017), for a model trained with a CTC head: with ``ctc_weight``
``lambda > 0`` beam search scores each step's candidate ``c`` of prefix ``g`` as
``(1 - lambda) log P_att(c | g, x) + lambda (log psi(g + c) - log psi(g))``, the CTC prefix score of
:mod:`legacy_seq2seq.ctc_prefix_score`, so ``log P(y | x)`` above becomes that joint score. CTC keeps the
hypotheses monotonic and stops them at the right length; it needs beam search (``beam_size=1`` is fine).

With ``beam_size=1`` beam search keeps the single best token each step, exactly like greedy search, whatever
``alpha`` and ``beta`` (they only rescale the one finished hypothesis); :func:`decode` then runs greedy search.
MoChA models decode with hard monotonic attention (the streaming mode). Put the model in eval mode first.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from legacy_seq2seq.ctc_prefix_score import CTCPrefixScorer
from legacy_seq2seq.las import LASModel
from legacy_seq2seq.las_attention import EncoderMemory

logger = logging.getLogger(__name__)

COVERAGE_FLOOR = 1e-6  # cumulative attention below this counts as this in the coverage penalty


@dataclass(frozen=True)
class LASDecodingOptions:
    """How to decode; validated on creation.

    Attributes:
        beam_size: hypotheses kept per step; 1 is greedy search.
        length_penalty: ``alpha``; 0 ranks by total log-probability (favours short outputs), 1 by per-token.
        coverage_penalty: ``beta`` >= 0; 0 turns the coverage term off.
        max_len_ratio: output steps allowed per listener frame.
        max_len_offset: output steps allowed on top of that.
        ctc_weight: ``lambda`` in ``[0, 1]``, the CTC prefix score's weight in beam search (0: attention alone);
            > 0 needs a model with a CTC head and beam search.
    """

    beam_size: int = 1
    length_penalty: float = 0.0
    coverage_penalty: float = 0.0
    max_len_ratio: float = 1.5
    max_len_offset: int = 10
    ctc_weight: float = 0.0

    def __post_init__(self) -> None:
        if self.beam_size < 1:
            raise ValueError(f"beam_size must be >= 1, got {self.beam_size}")
        if self.length_penalty < 0 or self.coverage_penalty < 0:
            raise ValueError("length_penalty and coverage_penalty must be >= 0")
        if self.max_len_ratio < 0 or self.max_len_offset < 1:
            raise ValueError("max_len_ratio must be >= 0 and max_len_offset >= 1 (so decoding takes a step)")
        if not 0.0 <= self.ctc_weight <= 1.0:
            raise ValueError(f"ctc_weight must be in [0, 1], got {self.ctc_weight}")

    def max_length(self, encoder_length: int) -> int:
        """Most output steps for an utterance of ``encoder_length`` listener frames."""
        return int(self.max_len_ratio * encoder_length) + self.max_len_offset


@dataclass
class LASHypothesis:
    """One decoded transcript.

    Attributes:
        tokens: output ids, without ``sos`` and ``eos``.
        score: the ranking score (log-probability with length and coverage terms).
        log_prob: total log-probability of the emitted steps (``eos`` included when finished); with
            ``ctc_weight > 0`` the joint CTC-attention score.
        finished: whether it ended with ``eos`` (False: cut at the maximum length).
    """

    tokens: list[int]
    score: float
    log_prob: float
    finished: bool


@dataclass
class LASDecodingResult:
    """Decoding output for one utterance.

    Attributes:
        hypotheses: best first (greedy: one).
        attention: ``[U, T'_b]`` attention weights of the best hypothesis, one row per step (``eos`` included).
    """

    hypotheses: list[LASHypothesis]
    attention: torch.Tensor

    @property
    def tokens(self) -> list[int]:
        """The best hypothesis's tokens."""
        return self.hypotheses[0].tokens


def hypothesis_score(log_prob: float, steps: int, coverage: torch.Tensor, options: LASDecodingOptions) -> float:
    """``log_prob / steps ** alpha + beta * sum_t log(min(coverage_t, 1))`` (see the module docstring).

    Args:
        log_prob: total log-probability.
        steps: output steps taken (``eos`` included).
        coverage: ``[T']`` attention summed over the steps.
        options: ``alpha`` and ``beta``.
    """
    score = log_prob / max(steps, 1) ** options.length_penalty
    if options.coverage_penalty > 0:
        score += options.coverage_penalty * float(torch.log(coverage.clamp(COVERAGE_FLOOR, 1.0)).sum())
    return score


def _check_mode(model: LASModel) -> None:
    if model.training:
        logger.warning("decoding a LASModel in training mode (dropout active); call model.eval() first")


@torch.no_grad()
def greedy_decode(
    model: LASModel, features: torch.Tensor, lengths: torch.Tensor, options: LASDecodingOptions | None = None
) -> list[LASDecodingResult]:
    """Pick the most probable token at every step, for the whole batch at once.

    Args:
        model: the LAS model.
        features: ``[B, T, n_mels]`` log-mel frames.
        lengths: ``[B]`` valid frames.
        options: maximum length and score settings (beam size ignored).

    Returns:
        One result per utterance.

    Raises:
        ValueError: ``options.ctc_weight > 0`` (joint decoding is :func:`beam_search`'s).
    """
    options = options or LASDecodingOptions()
    if options.ctc_weight > 0:
        raise ValueError("greedy_decode does not use the CTC prefix score: call beam_search (beam_size=1 is fine)")
    _check_mode(model)
    memory = model.encode(features, lengths)
    enc_lengths = memory.lengths.tolist()
    limits = torch.tensor([options.max_length(n) for n in enc_lengths], device=memory.values.device)
    state = model.initial_state(memory)
    b = features.size(0)
    prev = torch.full((b,), model.config.sos_id, dtype=torch.long, device=memory.values.device)
    done = torch.zeros(b, dtype=torch.bool, device=prev.device)
    steps = torch.zeros(b, dtype=torch.long, device=prev.device)
    log_prob = torch.zeros(b, dtype=torch.float64, device=prev.device)
    tokens, weights = [], []
    while not bool(done.all()):
        logits, state = model.step(prev, state, memory, hard=True)
        logp = F.log_softmax(logits.float(), dim=-1)
        prev = logp.argmax(-1)
        active = ~done
        log_prob += torch.where(active, logp.gather(1, prev[:, None]).squeeze(1).double(), 0.0)
        steps += active.long()
        tokens.append(prev)
        weights.append(state.weights)
        done = done | (prev == model.config.eos_id) | (steps >= limits)
    all_tokens, all_weights = torch.stack(tokens, 1).tolist(), torch.stack(weights, 1).float().cpu()
    results = []
    for i in range(b):
        n = int(steps[i])
        seq = all_tokens[i][:n]
        finished = seq[-1] == model.config.eos_id
        att = all_weights[i, :n, : enc_lengths[i]]
        hyp = LASHypothesis(tokens=seq[:-1] if finished else seq, finished=finished, log_prob=float(log_prob[i]),
                            score=hypothesis_score(float(log_prob[i]), n, att.sum(0), options))
        results.append(LASDecodingResult(hypotheses=[hyp], attention=att))
    return results


@torch.no_grad()
def beam_search(
    model: LASModel, features: torch.Tensor, lengths: torch.Tensor, options: LASDecodingOptions | None = None
) -> list[LASDecodingResult]:
    """Beam search, one utterance at a time (the beam is the batch).

    Args:
        model: the LAS model.
        features: ``[B, T, n_mels]`` log-mel frames.
        lengths: ``[B]`` valid frames.
        options: beam size, penalties and maximum length.

    Returns:
        One result per utterance, with up to ``beam_size`` hypotheses, best first.
    """
    options = options or LASDecodingOptions()
    _check_mode(model)
    memory = model.encode(features, lengths)
    return [_beam_one(model, memory.utterance(i, options.beam_size), options) for i in range(features.size(0))]


def _beam_one(model: LASModel, memory: EncoderMemory, options: LASDecodingOptions) -> LASDecodingResult:
    k, eos = options.beam_size, model.config.eos_id
    t = memory.values.size(1)
    device = memory.values.device
    scorer, ctc_state, w = None, None, options.ctc_weight
    if w > 0:  # memory holds k copies of one utterance: score its valid CTC frames once
        ctc_log_probs, ctc_lengths = model.ctc_log_probs(memory)
        scorer = CTCPrefixScorer(ctc_log_probs[0, : int(ctc_lengths[0])], eos, invalid_ids=(model.config.sos_id,))
        ctc_state = scorer.initial_state(k)
    state = model.initial_state(memory)
    prev = torch.full((k,), model.config.sos_id, dtype=torch.long, device=device)
    # All rows start identical: only row 0 is live at first, so the first step does not pick k copies.
    sums = torch.full((k,), -math.inf, dtype=torch.float64, device=device)
    sums[0] = 0.0
    seqs: list[list[int]] = [[] for _ in range(k)]
    history = torch.zeros(k, 0, t)  # [k, steps, T'] attention so far
    finished: list[tuple[LASHypothesis, torch.Tensor]] = []
    for step in range(options.max_length(t)):
        logits, state = model.step(prev, state, memory, hard=True)
        logp = F.log_softmax(logits.float(), dim=-1).double()  # [k, V]
        if scorer is not None:
            increment, ctc_psi, ctc_r = scorer.score(ctc_state)
            logp = (1 - w) * logp + w * increment.double()
        history = torch.cat([history, state.weights.float().cpu().unsqueeze(1)], dim=1)
        candidates = (sums.unsqueeze(1) + logp).view(-1)
        top, index = candidates.topk(min(2 * k, candidates.numel()))
        rows, toks = (index // logp.size(1)).tolist(), (index % logp.size(1)).tolist()
        live: list[tuple[int, int, float]] = []
        for score, row, tok in zip(top.tolist(), rows, toks):
            if score == -math.inf or len(live) == k:
                break
            if tok == eos:
                att = history[row]
                hyp = LASHypothesis(tokens=list(seqs[row]), log_prob=score, finished=True,
                                    score=hypothesis_score(score, step + 1, att.sum(0), options))
                finished.append((hyp, att))
            else:
                live.append((row, tok, score))
        if len(finished) >= k or not live:
            break
        live += [(live[0][0], live[0][1], -math.inf)] * (k - len(live))  # keep k rows; dead ones score -inf
        index_rows = torch.tensor([r for r, _, _ in live], device=device)
        state = state.index_select(index_rows)
        if scorer is not None:
            ctc_state = scorer.select(ctc_psi, ctc_r, index_rows, torch.tensor([tok for _, tok, _ in live],
                                                                                device=device))
        history = history[index_rows.cpu()]
        seqs = [seqs[r] + [tok] for r, tok, _ in live]
        sums = torch.tensor([s for _, _, s in live], dtype=torch.float64, device=device)
        prev = torch.tensor([tok for _, tok, _ in live], dtype=torch.long, device=device)
    else:  # out of steps: the live hypotheses end unfinished
        for row in range(k):
            if sums[row] > -math.inf:
                s, att = float(sums[row]), history[row]
                hyp = LASHypothesis(tokens=seqs[row], log_prob=s, finished=False,
                                    score=hypothesis_score(s, len(seqs[row]), att.sum(0), options))
                finished.append((hyp, att))
    finished.sort(key=lambda pair: (pair[0].finished, pair[0].score), reverse=True)
    finished = finished[:k]
    return LASDecodingResult(hypotheses=[h for h, _ in finished], attention=finished[0][1])


def decode(
    model: LASModel, features: torch.Tensor, lengths: torch.Tensor, options: LASDecodingOptions | None = None
) -> list[LASDecodingResult]:
    """Greedy search for ``beam_size == 1`` without CTC, beam search otherwise (see :class:`LASDecodingOptions`)."""
    options = options or LASDecodingOptions()
    if options.beam_size == 1 and options.ctc_weight == 0:
        return greedy_decode(model, features, lengths, options)
    return beam_search(model, features, lengths, options)
