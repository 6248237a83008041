"""LAS baseline: pyramid lengths, padding invariance, attention normalization, a tiny model that learns, decoding
(beam 1 == greedy, termination), scheduled sampling, save/load, alignment plots, MoChA (expected alignment
against its sequential recurrence, hard monotonic streaming inference), and joint CTC-attention (the CTC head's
loss and learning, save/load and old configs, CTC prefix scores against brute force, joint beam search), and the
guided (diagonal) attention loss (diagonal vs stuck attention, per-utterance lengths, its pull towards the diagonal,
its weight in the loss, save/load and old configs)."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from legacy_seq2seq.alignment_plot import plot_alignment
from legacy_seq2seq.checkpoint import CheckpointError
from legacy_seq2seq.ctc_prefix_score import CTCPrefixScorer
from legacy_seq2seq.guided_attention import GUIDED_ATTENTION_G, guided_attention_loss
from legacy_seq2seq.las import LASConfig, LASModel, pyramid_lengths, sampling_schedule
from legacy_seq2seq.las_attention import AttentionState
from legacy_seq2seq.las_decoding import LASDecodingOptions, beam_search, decode, greedy_decode
from legacy_seq2seq.mocha import MonotonicChunkwiseAttention, expected_chunk_attention, expected_monotonic_alignment

N_MELS = 8
PAD, SOS, EOS = 0, 1, 2
VOCAB = 8


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def tiny_config(**overrides: object) -> LASConfig:
    fields = dict(vocab_size=VOCAB, sos_id=SOS, eos_id=EOS, pad_id=PAD, n_mels=N_MELS, listener_hidden=16,
                  speller_hidden=32, embed_dim=16, attention_dim=16, location_channels=4, location_kernel=3)
    fields.update(overrides)
    return LASConfig(**fields)


def tiny_model(seed: int = 0, **overrides: object) -> LASModel:
    torch.manual_seed(seed)
    return LASModel(tiny_config(**overrides)).eval()


def padded_batch(lengths: list[int], seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Random features ``[B, max(lengths), N_MELS]`` with random (not zero) padding, so leaks would show."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(len(lengths), max(lengths), N_MELS, generator=g), torch.tensor(lengths)


def fit(model: LASModel, feats: torch.Tensor, lens: torch.Tensor, targets: torch.Tensor, steps: int,
        term: str = "loss") -> list[dict[str, float]]:
    """Adam (lr 1e-2) on one fixed batch for ``steps`` steps, minimising output field ``term``; every step's losses."""
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    history = []
    for _ in range(steps):
        out = model(feats, lens, targets)
        opt.zero_grad()
        getattr(out, term).backward()
        opt.step()
        history.append({k: getattr(out, k).item() for k in ("loss", "attention_loss", "ctc_loss", "guided_loss")
                        if isinstance(getattr(out, k, None), torch.Tensor)})
    return history


def test_pyramid_reduces_time_eightfold_dropping_odd_frames() -> None:
    model = tiny_model()
    for t in (8, 9, 15, 16, 17, 31, 33, 64):
        memory = model.encode(*padded_batch([t]))
        assert memory.values.shape[1] == t // 8 and memory.lengths.tolist() == [t // 8]
    assert pyramid_lengths(torch.tensor([7, 8, 23, 24, 100]), 3).tolist() == [0, 1, 2, 3, 12]
    with pytest.raises(ValueError, match="reduces time"):
        model.encode(*padded_batch([7]))


@torch.no_grad()
def test_padding_does_not_change_valid_frames_or_outputs() -> None:
    model = tiny_model()
    feats, lens = padded_batch([50, 37, 21])
    targets = torch.tensor([[3, 4, 5, EOS], [6, 7, EOS, PAD], [5, EOS, PAD, PAD]])
    memory = model.encode(feats, lens)
    batch_out = model(feats, lens, targets)
    for b, n in enumerate(lens.tolist()):
        alone = model.encode(feats[b : b + 1, :n], lens[b : b + 1])
        torch.testing.assert_close(memory.values[b, : n // 8], alone.values[0], atol=1e-5, rtol=1e-5)
        assert torch.all(memory.values[b, n // 8 :] == 0)
        out = model(feats[b : b + 1, :n], lens[b : b + 1], targets[b : b + 1])
        torch.testing.assert_close(batch_out.logits[b], out.logits[0], atol=1e-5, rtol=1e-5)


@torch.no_grad()
def test_attention_sums_to_one_on_valid_frames_and_zero_on_padding() -> None:
    model = tiny_model()
    feats, lens = padded_batch([48, 30, 16])
    out = model(feats, lens, torch.tensor([[3, 4, 5, EOS]] * 3))
    assert out.attention.shape == (3, 4, 6) and out.logits.shape == (3, 4, VOCAB)
    for b, n in enumerate(out.encoder_lengths.tolist()):
        torch.testing.assert_close(out.attention[b, :, :n].sum(-1), torch.ones(4))
        assert torch.all(out.attention[b, :, n:] == 0)


def test_tiny_model_learns_to_spell_fixed_sequences() -> None:
    model = tiny_model(seed=0).train()
    feats, lens = padded_batch([48, 44, 40], seed=1)
    targets = torch.tensor([[3, 4, 5, EOS, PAD], [6, 7, 3, 4, EOS], [5, 5, EOS, PAD, PAD]])
    losses = [h["loss"] for h in fit(model, feats, lens, targets, 100)]
    assert losses[-1] < 0.5 * losses[0]
    decoded = [r.tokens for r in greedy_decode(model.eval(), feats, lens)]
    expected = [[t for t in row if t not in (PAD, EOS)] for row in targets.tolist()]
    assert sum(d == e for d, e in zip(decoded, expected)) >= 1, (decoded, expected)


@pytest.mark.parametrize("attention", ["location", "mocha"])
def test_beam_width_one_equals_greedy(attention: str) -> None:
    model = tiny_model(seed=3, attention=attention, mocha_init_bias=0.0)
    feats, lens = padded_batch([40, 27], seed=2)
    options = LASDecodingOptions(beam_size=1, length_penalty=0.0, coverage_penalty=0.0)
    greedy, beam = greedy_decode(model, feats, lens, options), beam_search(model, feats, lens, options)
    for g, b in zip(greedy, beam):
        assert g.tokens == b.tokens and g.hypotheses[0].finished == b.hypotheses[0].finished
        assert g.hypotheses[0].score == pytest.approx(b.hypotheses[0].score, abs=1e-4)
        torch.testing.assert_close(g.attention, b.attention, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("attention", ["location", "mocha"])
def test_decoding_terminates_within_the_length_bound(attention: str) -> None:
    model = tiny_model(seed=4, attention=attention)
    with torch.no_grad():  # a model that never says eos must still stop
        model.output[-1].bias[EOS] = -1e4
    feats, lens = padded_batch([33, 64], seed=3)
    options = LASDecodingOptions(beam_size=3, length_penalty=1.0, coverage_penalty=0.2, max_len_ratio=1.0,
                                 max_len_offset=4)
    for results in (decode(model, feats, lens, options), greedy_decode(model, feats, lens, options)):
        for result, t in zip(results, (4, 8)):
            best = result.hypotheses[0]
            assert len(best.tokens) == options.max_length(t) == t + 4 and not best.finished
            assert result.attention.shape == (t + 4, t)
            assert all(len(h.tokens) <= t + 4 for h in result.hypotheses)


def test_scheduled_sampling_with_probability_one_gives_a_finite_loss() -> None:
    model = tiny_model(sampling_prob=1.0).train()
    feats, lens = padded_batch([40, 32])
    out = model(feats, lens, torch.tensor([[3, 4, 5, EOS], [6, EOS, PAD, PAD]]))
    assert torch.isfinite(out.loss)
    out.loss.backward()
    assert sampling_schedule(5, warmup_steps=10, ramp_steps=10, final_prob=0.4) == 0.0
    assert sampling_schedule(15, warmup_steps=10, ramp_steps=10, final_prob=0.4) == pytest.approx(0.2)
    assert sampling_schedule(99, warmup_steps=10, ramp_steps=10, final_prob=0.4) == pytest.approx(0.4)


@pytest.mark.parametrize("attention", ["location", "mocha"])
def test_save_and_load_give_identical_outputs(tmp_path: Path, attention: str) -> None:
    model = tiny_model(attention=attention)
    feats, lens = padded_batch([40, 24])
    targets = torch.tensor([[3, 4, EOS], [5, EOS, PAD]])
    model.save_pretrained(tmp_path / "las")
    model.save_pretrained(tmp_path / "las")  # overwriting an existing directory works
    loaded = LASModel.from_pretrained(tmp_path / "las")
    assert loaded.config == model.config
    assert sorted(p.name for p in tmp_path.iterdir()) == ["las"]  # no temporary directory left behind
    with torch.no_grad():
        assert torch.equal(model(feats, lens, targets).logits, loaded(feats, lens, targets).logits)
    with pytest.raises(CheckpointError):
        LASModel.from_pretrained(tmp_path / "missing")


def test_config_is_validated() -> None:
    with pytest.raises(ValueError, match="attention"):
        tiny_config(attention="dot")
    with pytest.raises(ValueError, match="schema_version"):
        tiny_config(schema_version=99)
    with pytest.raises(ValueError, match="eos_id"):
        tiny_config(eos_id=VOCAB)


def test_plot_alignment_writes_a_png(tmp_path: Path) -> None:
    weights = torch.softmax(torch.randn(7, 12), dim=-1)
    path = plot_alignment(weights, tmp_path / "plots" / "align.png", title="LAS")
    assert path == tmp_path / "plots" / "align.png"
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 1000
    with pytest.raises(ValueError):
        plot_alignment(torch.ones(5), tmp_path / "bad.png")


def test_mocha_expected_alignment_matches_its_recurrence() -> None:
    g = torch.Generator().manual_seed(0)
    p = torch.rand(3, 10, generator=g)
    p[2, 7:] = 0.0  # padding
    previous = torch.softmax(torch.randn(3, 10, generator=g), -1) * torch.tensor([[1.0], [0.6], [1.0]])
    previous[2, 7:] = 0.0
    alpha = expected_monotonic_alignment(p, previous)
    # alpha_j = p_j q_j with q_j = (1 - p_{j-1}) q_{j-1} + previous_j: the sequential form of the same sum
    q = torch.zeros(3)
    expected = []
    for j in range(10):
        q = (1 - p[:, j - 1]) * q + previous[:, j] if j else previous[:, 0]
        expected.append(p[:, j] * q)
    torch.testing.assert_close(alpha, torch.stack(expected, 1))
    assert torch.all(alpha.sum(-1) <= previous.sum(-1) + 1e-6) and torch.all(alpha[2, 7:] == 0)
    # chunk attention against its definition: beta_j = sum_{k=j}^{j+w-1} alpha_k softmax(c[k-w+1 .. k])_j
    energy, w = torch.randn(3, 10, generator=g), 3
    beta = expected_chunk_attention(alpha, energy, w)
    naive = torch.zeros(3, 10)
    for k in range(10):
        lo = max(0, k - w + 1)
        naive[:, lo : k + 1] += alpha[:, k : k + 1] * torch.softmax(energy[:, lo : k + 1], -1)
    torch.testing.assert_close(beta, naive)
    torch.testing.assert_close(beta.sum(-1), alpha.sum(-1))


def test_mocha_training_alignments_sum_to_at_most_one() -> None:
    model = tiny_model(attention="mocha", mocha_init_bias=0.0).train()
    feats, lens = padded_batch([48, 30])
    out = model(feats, lens, torch.tensor([[3, 4, 5, 6, EOS]] * 2))
    sums = out.attention.sum(-1)
    assert torch.all(sums <= 1 + 1e-5) and torch.all(sums >= 0) and torch.all(out.attention[1, :, 3:] == 0)
    out.loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


@torch.no_grad()
def test_mocha_hard_attention_is_monotonic_and_reads_no_frame_past_its_stop() -> None:
    model = tiny_model(seed=5, attention="mocha", mocha_init_bias=0.0, mocha_chunk=2)
    memory = model.encode(*padded_batch([96, 80], seed=4))
    state, prev = model.initial_state(memory), torch.full((2,), SOS)
    positions, stopped = [], 0
    for _ in range(12):
        logits, state = model.step(prev, state, memory, hard=True)
        prev = logits.argmax(-1)
        pos, w = state.attention.position, state.weights
        positions.append(pos)
        for b in range(2):
            if w[b].sum() > 0:  # the head stopped: weights live on the chunk [pos - 1, pos] only
                stopped += 1
                assert torch.all(w[b, int(pos[b]) + 1 :] == 0) and torch.all(w[b, : max(0, int(pos[b]) - 1)] == 0)
    assert stopped > 0
    assert torch.all(torch.stack(positions, 1).diff(dim=1) >= 0)

    # Streaming: changing frames after the stop frame changes neither the stop frame nor the context.
    torch.manual_seed(6)
    attention = MonotonicChunkwiseAttention(8, 6, 8, chunk_size=2, init_bias=0.0).eval()
    values, mask = torch.randn(1, 12, 6), torch.ones(1, 12, dtype=torch.bool)
    start = AttentionState(align=torch.zeros(1, 12), position=torch.tensor([3]))
    for query in torch.randn(20, 1, 8):
        context, weights, after = attention(query, attention.prepare(values, mask), start, hard=True)
        if weights.sum() > 0 and int(after.position) < 11:
            break
    else:
        pytest.fail("the monotonic head never stopped before the last frame")
    stop = int(after.position)
    assert stop >= 3
    changed = values.clone()
    changed[:, stop + 1 :] = torch.randn(1, 11 - stop, 6)
    context2, _, after2 = attention(query, attention.prepare(changed, mask), start, hard=True)
    assert int(after2.position) == stop
    torch.testing.assert_close(context2, context)


# --- joint CTC-attention --------------------------------------------------------------------------------------
CTC_TARGETS = torch.tensor([[3, 4, 5, EOS, PAD], [6, 7, 3, 3, EOS], [5, 5, EOS, PAD, PAD]])


def test_ctc_head_adds_a_finite_ctc_loss_to_the_attention_loss() -> None:
    assert tiny_model().ctc_head is None and tiny_model()(*padded_batch([48, 40]), CTC_TARGETS[:2]).ctc_loss is None
    model = tiny_model(ctc_weight=0.3, ctc_upsample=2).train()
    assert model.ctc_head.out_features == 2 * VOCAB
    feats, lens = padded_batch([48, 44, 40], seed=1)
    out = model(feats, lens, CTC_TARGETS)
    assert out.ctc_loss is not None and torch.isfinite(out.ctc_loss) and out.ctc_loss > 0
    torch.testing.assert_close(out.loss, 0.3 * out.ctc_loss + 0.7 * out.attention_loss)
    log_probs, ctc_lengths = model.ctc_log_probs(model.encode(feats, lens))
    assert log_probs.shape == (3, 12, VOCAB) and ctc_lengths.tolist() == [12, 10, 10]
    # the loss reads the labels alone: sos/eos/pad left out, matching a direct ctc_loss call
    labels = torch.tensor([3, 4, 5, 6, 7, 3, 3, 5, 5])
    direct = F.ctc_loss(log_probs.transpose(0, 1), labels, ctc_lengths, torch.tensor([3, 4, 2]), blank=0,
                        zero_infinity=True)
    torch.testing.assert_close(out.ctc_loss, direct)
    out.ctc_loss.backward()  # CTC trains the listener, not the speller
    assert model.ctc_head.weight.grad.abs().sum() > 0 and model.listener.layers[0].weight_ih_l0.grad.abs().sum() > 0
    assert model.output[-1].weight.grad is None


def test_ctc_config_is_validated() -> None:
    for bad in (dict(ctc_weight=1.0), dict(ctc_weight=-0.1), dict(ctc_weight=0.3, ctc_upsample=0)):
        with pytest.raises(ValueError, match="ctc_weight"):
            tiny_config(**bad)
    with pytest.raises(ValueError, match="blank"):  # the blank (id 0) must be the padding, never a target
        tiny_config(ctc_weight=0.3, pad_id=3)


def test_joint_ctc_attention_training_lowers_both_losses() -> None:
    model = tiny_model(seed=0, ctc_weight=0.3, ctc_upsample=2).train()
    feats, lens = padded_batch([48, 44, 40], seed=1)
    history = [(h["loss"], h["ctc_loss"], h["attention_loss"]) for h in fit(model, feats, lens, CTC_TARGETS, 15)]
    (loss0, ctc0, att0), (loss1, ctc1, att1) = history[0], history[-1]
    assert loss1 < 0.7 * loss0 and ctc1 < 0.7 * ctc0 and att1 < att0, history


def test_ctc_greedy_decoding_of_a_trained_listener_spells_the_targets() -> None:
    model = tiny_model(seed=0, ctc_weight=0.5).train()  # one CTC frame per listener frame learns fastest here
    feats, lens = padded_batch([48, 44, 40], seed=1)
    fit(model, feats, lens, CTC_TARGETS, 120)
    expected = [[t for t in row if t not in (PAD, EOS)] for row in CTC_TARGETS.tolist()]
    assert model.eval().ctc_greedy_decode(feats, lens) == expected
    with pytest.raises(ValueError, match="no CTC head"):
        tiny_model().ctc_greedy_decode(feats, lens)


@pytest.mark.parametrize("attention", ["location", "mocha"])
def test_save_and_load_keep_the_ctc_head(tmp_path: Path, attention: str) -> None:
    model = tiny_model(seed=2, attention=attention, ctc_weight=0.3, ctc_upsample=2)
    model.save_pretrained(tmp_path / "las")
    loaded = LASModel.from_pretrained(tmp_path / "las")
    assert loaded.config == model.config and loaded.config.ctc_weight == 0.3 and loaded.config.ctc_upsample == 2
    assert torch.equal(loaded.ctc_head.weight, model.ctc_head.weight)
    assert torch.equal(loaded.ctc_head.bias, model.ctc_head.bias)
    feats, lens = padded_batch([40, 24])
    with torch.no_grad():
        out, out2 = model(feats, lens, CTC_TARGETS[:2, :3]), loaded(feats, lens, CTC_TARGETS[:2, :3])
    assert torch.equal(out.loss, out2.loss) and torch.equal(out.ctc_loss, out2.ctc_loss)


def test_a_config_json_without_ctc_fields_loads_without_a_head(tmp_path: Path) -> None:
    model = tiny_model(seed=1)
    model.save_pretrained(tmp_path / "old")
    config_path = tmp_path / "old" / "config.json"
    fields = json.loads(config_path.read_text())
    del fields["ctc_weight"], fields["ctc_upsample"]  # as written before joint CTC-attention existed
    config_path.write_text(json.dumps(fields))
    loaded = LASModel.from_pretrained(tmp_path / "old")
    assert loaded.config.ctc_weight == 0.0 and loaded.ctc_head is None
    feats, lens, targets = *padded_batch([40, 24]), CTC_TARGETS[:2, :3]
    with torch.no_grad():
        assert torch.equal(model(feats, lens, targets).logits, loaded(feats, lens, targets).logits)
    fields["ctc_weight"] = 0.3  # a config that asks for a head its weights lack is refused
    config_path.write_text(json.dumps(fields))
    with pytest.raises(CheckpointError, match="missing"):
        LASModel.from_pretrained(tmp_path / "old")


def _collapse(path: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(k for i, k in enumerate(path) if k != 0 and (i == 0 or k != path[i - 1]))


def test_ctc_prefix_scores_match_brute_force_path_sums() -> None:
    torch.manual_seed(0)
    t_len, v, eos = 5, 4, 3  # blank 0, labels 1 and 2, end id 3 (also a CTC output, as in a LAS head)
    x = torch.randn(t_len, v).log_softmax(-1)
    rows = x.tolist()
    paths = {path: sum(rows[t][k] for t, k in enumerate(path)) for path in itertools.product(range(v), repeat=t_len)}

    def brute(prefix: tuple[int, ...], exact: bool) -> float:
        probs = [math.exp(lp) for p, lp in paths.items()
                 if (_collapse(p) == prefix if exact else _collapse(p)[: len(prefix)] == prefix)]
        return math.log(sum(probs)) if probs else -math.inf

    scorer = CTCPrefixScorer(x, eos)
    state, prefixes = scorer.initial_state(2), [(), ()]
    for rows, tokens in (([0, 0], [1, 2]), ([0, 1], [1, 1]), ([0, 1], [2, 2])):  # covers repeated labels
        increment, psi, r = scorer.score(state)
        for row, prefix in enumerate(prefixes):
            for c in (1, 2):
                assert float(psi[row, c]) == pytest.approx(brute(prefix + (c,), exact=False), abs=1e-5)
            assert float(psi[row, eos]) == pytest.approx(brute(prefix, exact=True), abs=1e-5)
            assert float(psi[row, 0]) == -math.inf
            torch.testing.assert_close(increment[row], psi[row] - state.psi[row])
        state = scorer.select(psi, r, torch.tensor(rows), torch.tensor(tokens))
        prefixes = [prefixes[row] + (tok,) for row, tok in zip(rows, tokens)]


def test_joint_beam_search_with_ctc_weight_one_scores_the_ctc_probability() -> None:
    model = tiny_model(seed=7, ctc_weight=0.3, ctc_upsample=2)
    feats, lens = padded_batch([40, 48], seed=5)
    options = LASDecodingOptions(beam_size=3, ctc_weight=1.0, max_len_offset=6)
    results = beam_search(model, feats, lens, options)
    with torch.no_grad():
        log_probs, ctc_lengths = model.ctc_log_probs(model.encode(feats, lens))
    for b, result in enumerate(results):
        best = result.hypotheses[0]
        assert best.finished and result.attention.shape == (len(best.tokens) + 1, int(lens[b]) // 8)
        target = torch.tensor(best.tokens, dtype=torch.long)
        nll = F.ctc_loss(log_probs[b : b + 1, : int(ctc_lengths[b])].transpose(0, 1), target[None],
                         ctc_lengths[b : b + 1], torch.tensor([len(target)]), blank=0, reduction="sum")
        assert best.log_prob == pytest.approx(-float(nll), abs=1e-4)  # the whole score is log P_ctc(y | x)
    joint = beam_search(model, feats, lens, LASDecodingOptions(beam_size=2, ctc_weight=0.3))
    assert all(r.hypotheses[0].finished and math.isfinite(r.hypotheses[0].log_prob) for r in joint)
    assert decode(model, feats, lens, LASDecodingOptions(beam_size=1, ctc_weight=0.3))[0].tokens \
        == beam_search(model, feats, lens, LASDecodingOptions(beam_size=1, ctc_weight=0.3))[0].tokens
    with pytest.raises(ValueError, match="beam_search"):
        greedy_decode(model, feats, lens, LASDecodingOptions(ctc_weight=0.3))
    with pytest.raises(ValueError, match="no CTC head"):
        beam_search(tiny_model(), feats, lens, LASDecodingOptions(beam_size=2, ctc_weight=0.3))


def test_loss_module_reports_the_ctc_and_attention_losses() -> None:
    from training.legacy.steps import LossModule

    module = LossModule("las", tiny_model(ctc_weight=0.3, ctc_upsample=2))
    feats, lens = padded_batch([48, 40])
    loss = module(features=feats, lengths=lens, targets=CTC_TARGETS[:2])
    assert set(module.terms) == {"attention_loss", "ctc_loss"}
    torch.testing.assert_close(loss.detach(), 0.3 * module.terms["ctc_loss"] + 0.7 * module.terms["attention_loss"])
    plain = LossModule("las", tiny_model())
    plain(features=feats, lengths=lens, targets=CTC_TARGETS[:2])
    assert plain.terms == {}


# --- guided (diagonal) attention --------------------------------------------------------------------------------
GUIDED_TARGETS = torch.tensor([[3, 4, 5, 6, 7, 3, EOS, PAD], [6, 7, 3, 3, 5, EOS, PAD, PAD],
                               [5, 5, 4, EOS, PAD, PAD, PAD, PAD]])


def _one_hot_attention(steps: list[int], frames: list[int], where: str) -> torch.Tensor:
    """``[B, 8, 16]`` one-hot attention: output step ``u`` on frame ``2 u`` (``where="diagonal"``, with frames
    ``= 2 steps`` exactly on ``t / T' = u / U``) or on the last valid frame; padding cells hold garbage (5.0)."""
    attention = torch.full((len(steps), 8, 16), 5.0)
    for b, (n_steps, n_frames) in enumerate(zip(steps, frames)):
        attention[b, :n_steps, :n_frames] = 0.0
        for u in range(n_steps):
            attention[b, u, 2 * u if where == "diagonal" else n_frames - 1] = 1.0
    return attention


def test_guided_loss_is_zero_on_the_diagonal_and_large_on_the_last_frame() -> None:
    steps, frames = [7, 6, 4], [14, 12, 8]  # LAS layout [B, U, T'] with U_b output steps, T'_b listener frames
    u_len, t_len = torch.tensor(steps), torch.tensor(frames)
    diagonal = guided_attention_loss(_one_hot_attention(steps, frames, "diagonal"), t_len, u_len)
    stuck = guided_attention_loss(_one_hot_attention(steps, frames, "last"), t_len, u_len)
    assert float(diagonal) == pytest.approx(0.0, abs=1e-6)  # the padding's garbage never counts
    # stuck on the last frame: step u is (1 - u/U - 1/T') off the diagonal; at g = 0.2 that costs ~0.75 here
    assert 0.5 < float(stuck) < 1.0


def test_guided_loss_respects_each_utterances_lengths() -> None:
    torch.manual_seed(0)
    steps, frames = [7, 3, 5], [9, 16, 4]
    attention = torch.rand(3, 8, 16)
    mask = (torch.arange(8)[None, :, None] < torch.tensor(steps)[:, None, None]) \
        & (torch.arange(16)[None, None, :] < torch.tensor(frames)[:, None, None])
    u_len, t_len = torch.tensor(steps), torch.tensor(frames)
    loss = guided_attention_loss(attention, t_len, u_len)
    garbage = torch.where(mask, attention, torch.full_like(attention, 100.0))  # padding cells never count
    torch.testing.assert_close(guided_attention_loss(garbage, t_len, u_len), loss)
    # = each utterance alone (cropped to its lengths), weighted by its valid steps
    alone = [float(guided_attention_loss(attention[b : b + 1, :u, :t], torch.tensor([t]), torch.tensor([u]))) * u
             for b, (u, t) in enumerate(zip(steps, frames))]
    assert float(loss) == pytest.approx(sum(alone) / sum(steps), rel=1e-5)


def test_las_forward_adds_the_weighted_guided_loss_in_training_only() -> None:
    feats, lens = padded_batch([96, 80, 64], seed=1)
    assert tiny_model()(feats, lens, GUIDED_TARGETS).guided_loss is None  # weight 0: not computed
    model = tiny_model(seed=3, guided_attention_weight=5.0, ctc_weight=0.3, ctc_upsample=2).train()
    out = model(feats, lens, GUIDED_TARGETS)
    direct = guided_attention_loss(out.attention, out.encoder_lengths, torch.tensor([7, 6, 4]), GUIDED_ATTENTION_G)
    torch.testing.assert_close(out.guided_loss, direct)
    assert out.encoder_lengths.tolist() == [12, 10, 8] and 0 < out.guided_loss.item() < 1
    torch.testing.assert_close(out.loss, 0.3 * out.ctc_loss + 0.7 * out.attention_loss + 5.0 * out.guided_loss)
    off = model(feats, lens, GUIDED_TARGETS, guided_attention_weight=0.0)  # the trainer's switch after N steps
    assert off.guided_loss is not None
    torch.testing.assert_close(off.loss, 0.3 * off.ctc_loss + 0.7 * off.attention_loss)
    with torch.no_grad():  # eval: measured (valid_guided_loss), not added
        ev = model.eval()(feats, lens, GUIDED_TARGETS)
    assert ev.guided_loss is not None
    torch.testing.assert_close(ev.loss, 0.3 * ev.ctc_loss + 0.7 * ev.attention_loss)


def test_guided_loss_alone_pulls_the_attention_onto_the_diagonal() -> None:
    model = tiny_model(seed=0, guided_attention_weight=1.0).train()
    feats, lens = padded_batch([96, 80, 64], seed=1)
    history = [h["guided_loss"] for h in fit(model, feats, lens, GUIDED_TARGETS, 30, term="guided_loss")]
    assert history[-1] < 0.5 * history[0], history
    with torch.no_grad():
        out = model.eval()(feats, lens, GUIDED_TARGETS)
    position = (out.attention * torch.arange(out.attention.size(2))).sum(-1)  # [B, U] expected listener frame
    for b, (u, t) in enumerate(zip([7, 6, 4], out.encoder_lengths.tolist())):
        assert position[b, u - 1] - position[b, 0] > t / 3, position[b, :u]  # it moves along the utterance


def test_guided_attention_config_is_validated_saved_and_defaulted(tmp_path: Path) -> None:
    for bad in (dict(guided_attention_weight=-1.0), dict(guided_attention_g=0.0)):
        with pytest.raises(ValueError, match="guided_attention"):
            tiny_config(**bad)
    model = tiny_model(seed=1, guided_attention_weight=5.0, guided_attention_g=0.3)
    model.save_pretrained(tmp_path / "las")
    loaded = LASModel.from_pretrained(tmp_path / "las")
    assert loaded.config == model.config
    assert (loaded.config.guided_attention_weight, loaded.config.guided_attention_g) == (5.0, 0.3)
    config_path = tmp_path / "las" / "config.json"
    fields = json.loads(config_path.read_text())
    del fields["guided_attention_weight"], fields["guided_attention_g"]  # as written before guided attention
    config_path.write_text(json.dumps(fields))
    old = LASModel.from_pretrained(tmp_path / "las")
    assert (old.config.guided_attention_weight, old.config.guided_attention_g) == (0.0, GUIDED_ATTENTION_G)
    feats, lens = padded_batch([40, 24])
    with torch.no_grad():
        assert old(feats, lens, CTC_TARGETS[:2, :3]).guided_loss is None
