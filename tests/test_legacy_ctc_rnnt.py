"""CTC and RNN-T baselines on a Conformer encoder: tiny models, made-up features, brute-force loss checks."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import pytest
import torch

from legacy_seq2seq.checkpoint import CheckpointError
from legacy_seq2seq.conformer import ConformerEncoder, ConformerStreamer, subsampled_length
from legacy_seq2seq.ctc import CTCConfig, CTCModel, ctc_greedy_decode, ctc_prefix_beam_search
from legacy_seq2seq.rnnt import RNNTConfig, RNNTModel
from legacy_seq2seq.rnnt_decoding import StreamingRNNT, rnnt_beam_search, rnnt_greedy_decode
from legacy_seq2seq.rnnt_loss import rnnt_loss
from legacy_seq2seq.text import BLANK_ID, CharVocab

N_MELS = 20
TINY = dict(n_mels=N_MELS, d_model=16, n_heads=2, n_layers=2, ff_mult=2, conv_kernel=3, dropout=0.0)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _frames(n_out: int) -> int:
    """Input frames that give exactly ``n_out`` encoder frames (the fewest)."""
    return 4 * (n_out - 1) + 7


def _encoder(causal: bool, chunk_size: int = 2) -> ConformerEncoder:
    torch.manual_seed(0)
    return ConformerEncoder(N_MELS, d_model=16, n_heads=2, n_layers=2, ff_mult=2, conv_kernel=5, dropout=0.0,
                            causal=causal, chunk_size=chunk_size).eval()


def _rnnt(causal: bool = False, vocab_size: int = 6, seed: int = 0) -> RNNTModel:
    torch.manual_seed(seed)
    config = RNNTConfig(**TINY, vocab_size=vocab_size, pred_dim=16, joint_dim=16, causal=causal, chunk_size=2)
    return RNNTModel(config).eval()


def _lively(model: RNNTModel, features: torch.Tensor, lengths: torch.Tensor) -> RNNTModel:
    """Make an untrained transducer emit labels on about half of the frames, so decoding tests see both."""
    from legacy_seq2seq.rnnt_decoding import _start

    with torch.no_grad():
        model.joint.enc_proj.weight.mul_(4)
        model.joint.out.weight.mul_(3)
        enc, _ = model.encoder(features, lengths)
        pred, _ = _start(model)
        logits = model.joint.step(enc.reshape(-1, enc.size(-1)), pred.expand(enc.size(0) * enc.size(1), -1))
        margins = (logits[:, 1:].max(-1).values - logits[:, BLANK_ID]).sort().values
        middle = len(margins) // 2  # halfway between two margins: no frame sits on a blank/label tie
        model.joint.out.bias[BLANK_ID] += (margins[middle - 1] + margins[middle]) / 2
    return model


# ---- Conformer ---------------------------------------------------------------------------------------------


def test_subsampling_shapes_and_lengths() -> None:
    enc = _encoder(causal=False)
    lengths = torch.tensor([30, 7, 6, 19, 22])
    out, out_lengths = enc(torch.randn(5, 30, N_MELS), lengths)
    expected = [((n - 1) // 2 - 1) // 2 if n >= 7 else 0 for n in lengths.tolist()]
    assert out_lengths.tolist() == expected == [subsampled_length(n) for n in lengths.tolist()]
    assert out.shape == (5, subsampled_length(30), 16) and torch.isfinite(out).all()
    short, short_lengths = enc(torch.randn(1, 3, N_MELS), torch.tensor([3]))  # padded internally, no frame out
    assert short_lengths.tolist() == [0] and torch.isfinite(short).all()


@pytest.mark.parametrize("causal", [False, True])
def test_padding_does_not_change_valid_frames(causal: bool) -> None:
    enc = _encoder(causal)
    a, b = torch.randn(1, 45, N_MELS), torch.randn(1, 27, N_MELS)
    garbage = 100 * torch.randn(1, 45 - 27, N_MELS)  # padding frames hold anything
    batch = torch.cat([a, torch.cat([b, garbage], dim=1)])
    out, lengths = enc(batch, torch.tensor([45, 27]))
    alone, alone_len = enc(b, torch.tensor([27]))
    n = int(alone_len[0])
    assert int(lengths[1]) == n == alone.size(1)
    torch.testing.assert_close(out[1, :n], alone[0], atol=1e-5, rtol=1e-4)


def test_causal_prefix_equals_prefix_of_whole() -> None:
    enc = _encoder(causal=True, chunk_size=2)
    x = torch.randn(1, 61, N_MELS)
    whole, _ = enc(x, torch.tensor([61]))
    for n_out in (2, 4, 6):  # prefixes ending on chunk boundaries
        for extra in (0, 3):  # input frames that do not complete another encoder frame
            cut = _frames(n_out) + extra
            prefix, lengths = enc(x[:, :cut], torch.tensor([cut]))
            assert int(lengths[0]) == n_out
            torch.testing.assert_close(prefix[0], whole[0, :n_out], atol=1e-5, rtol=1e-4)
    # the non-causal encoder does look ahead
    full = _encoder(causal=False)
    assert not torch.allclose(full(x[:, :_frames(4)], torch.tensor([_frames(4)]))[0][0],
                              full(x, torch.tensor([61]))[0][0, :4], atol=1e-4)


def test_streamer_encodes_like_the_whole_utterance() -> None:
    enc = _encoder(causal=True, chunk_size=3)
    x = torch.randn(70, N_MELS)
    whole, _ = enc(x[None], torch.tensor([70]))
    streamer = ConformerStreamer(enc)
    pieces, start = [], 0
    for size in (5, 1, 13, 8, 2, 20, 21):
        pieces.append(streamer.accept(x[start:start + size]))
        start += size
    assert start == 70
    pieces.append(streamer.flush())
    torch.testing.assert_close(torch.cat(pieces), whole[0], atol=1e-5, rtol=1e-4)
    assert streamer.frames_emitted == subsampled_length(70)


# ---- losses against brute force -----------------------------------------------------------------------------


def _logsumexp(values: list[float]) -> float:
    return torch.logsumexp(torch.tensor(values, dtype=torch.float64), 0).item() if values else -math.inf


def _ctc_nll_brute_force(log_probs: torch.Tensor, target: list[int]) -> float:
    """Sum over all V^T alignments that collapse (merge repeats, drop blanks) to ``target``."""
    t_len, vocab = log_probs.shape
    scores = []
    for path in itertools.product(range(vocab), repeat=t_len):
        collapsed = [k for i, k in enumerate(path) if k != BLANK_ID and (i == 0 or path[i - 1] != k)]
        if collapsed == target:
            scores.append(sum(float(log_probs[t, k]) for t, k in enumerate(path)))
    return -_logsumexp(scores)


def _rnnt_nll_brute_force(log_probs: torch.Tensor, target: list[int]) -> float:
    """Sum over every lattice path: T - 1 blanks and U labels in any order, then the final blank at (T-1, U)."""
    t_len, u_len = log_probs.size(0), len(target)
    scores = []
    for label_moves in itertools.combinations(range(t_len - 1 + u_len), u_len):
        t = u = 0
        score = 0.0
        for move in range(t_len - 1 + u_len):
            if move in label_moves:
                score += float(log_probs[t, u, target[u]])
                u += 1
            else:
                score += float(log_probs[t, u, BLANK_ID])
                t += 1
        scores.append(score + float(log_probs[t_len - 1, u_len, BLANK_ID]))
    return -_logsumexp(scores)


def test_ctc_loss_equals_brute_force() -> None:
    torch.manual_seed(0)
    model = CTCModel(CTCConfig(**TINY, vocab_size=3)).eval()
    features, lengths = torch.randn(3, _frames(4), N_MELS), torch.full((3,), _frames(4))
    targets, target_lengths = torch.tensor([[1, 2], [2, 2], [1, 0]]), torch.tensor([2, 2, 1])
    loss = model.loss(features, lengths, targets, target_lengths, reduction="none")
    log_probs, out_lengths = model(features, lengths)
    assert out_lengths.tolist() == [4, 4, 4]
    expected = [_ctc_nll_brute_force(log_probs[b], targets[b, : int(n)].tolist()) for b, n in enumerate(target_lengths)]
    torch.testing.assert_close(loss.double(), torch.tensor(expected, dtype=torch.float64), atol=1e-4, rtol=1e-5)


def test_rnnt_loss_equals_brute_force() -> None:
    torch.manual_seed(0)
    # a padded batch: (T=3, U=2) and (T=2, U=1)
    log_probs = torch.randn(2, 3, 3, 3).log_softmax(-1)
    targets, t_lengths, u_lengths = torch.tensor([[1, 2], [2, 0]]), torch.tensor([3, 2]), torch.tensor([2, 1])
    loss = rnnt_loss(log_probs, targets, t_lengths, u_lengths, reduction="none")
    expected = [_rnnt_nll_brute_force(log_probs[0], [1, 2]), _rnnt_nll_brute_force(log_probs[1, :2, :2], [2])]
    torch.testing.assert_close(loss.double(), torch.tensor(expected, dtype=torch.float64), atol=1e-5, rtol=1e-5)
    # and through the model: T' = 3 encoder frames, U = 2, vocabulary of 3
    model = _rnnt(vocab_size=3)
    features, lengths = torch.randn(2, _frames(3), N_MELS), torch.full((2,), _frames(3))
    targets = torch.tensor([[1, 2], [2, 2]])
    loss = model.loss(features, lengths, targets, torch.tensor([2, 2]), reduction="none")
    lattice, enc_lengths = model(features, lengths, targets)
    assert lattice.shape == (2, 3, 3, 3) and enc_lengths.tolist() == [3, 3]
    expected = [_rnnt_nll_brute_force(lattice[b], targets[b].tolist()) for b in range(2)]
    torch.testing.assert_close(loss.double(), torch.tensor(expected, dtype=torch.float64), atol=1e-4, rtol=1e-5)


def test_rnnt_loss_gradient_is_finite() -> None:
    model = _rnnt().train()
    features, lengths = torch.randn(2, 40, N_MELS), torch.tensor([40, 25])
    loss = model.loss(features, lengths, torch.tensor([[1, 2, 3], [4, 0, 0]]), torch.tensor([3, 1]))
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    assert sum(float(g.abs().sum()) for g in grads) > 0


# ---- learning ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["ctc", "rnnt"])
def test_a_few_steps_lower_the_loss(kind: str) -> None:
    torch.manual_seed(0)
    model: torch.nn.Module
    if kind == "ctc":
        model = CTCModel(CTCConfig(**TINY, vocab_size=6))
    else:
        model = RNNTModel(RNNTConfig(**TINY, vocab_size=6, pred_dim=16, joint_dim=16))
    features, lengths = torch.randn(2, 40, N_MELS), torch.tensor([40, 33])
    targets, target_lengths = torch.tensor([[1, 2, 3], [4, 5, 0]]), torch.tensor([3, 2])
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(30):
        loss = model.loss(features, lengths, targets, target_lengths)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.6 * losses[0], losses


# ---- decoding ----------------------------------------------------------------------------------------------


def test_ctc_greedy_collapses_repeats_and_drops_blanks() -> None:
    path = torch.tensor([1, 1, 0, 1, 2, 2, 0, 0, 3])
    assert ctc_greedy_decode(torch.nn.functional.one_hot(path, 4).float().log()) == [1, 1, 2, 3]


def test_ctc_prefix_beam_width_one_equals_greedy_on_peaked_frames() -> None:
    # Width 1 keeps the most probable prefix, which is the best path's when each frame's argmax dominates.
    for seed in range(5):
        torch.manual_seed(seed)
        log_probs = (20 * torch.randn(30, 6)).log_softmax(-1)
        assert ctc_prefix_beam_search(log_probs, beam_size=1)[0][0] == ctc_greedy_decode(log_probs)
    torch.manual_seed(0)
    model = CTCModel(CTCConfig(**TINY, vocab_size=6)).eval()
    with torch.no_grad():
        model.head.weight.mul_(50)  # peaked outputs
    features, lengths = torch.randn(2, 60, N_MELS), torch.tensor([60, 41])
    assert model.beam_search(features, lengths, beam_size=1) == model.greedy_decode(features, lengths)


def test_ctc_prefix_beam_search_is_exact_with_a_wide_beam() -> None:
    torch.manual_seed(0)
    log_probs = torch.randn(4, 3).log_softmax(-1)
    hyps = ctc_prefix_beam_search(log_probs, beam_size=1000)
    scores = [s for _, s in hyps]
    assert scores == sorted(scores, reverse=True)
    assert math.isclose(math.fsum(math.exp(s) for s in scores), 1.0, rel_tol=1e-6)  # every label sequence
    for tokens, score in hyps:
        assert math.isclose(-score, _ctc_nll_brute_force(log_probs, tokens), rel_tol=1e-5, abs_tol=1e-6)


def test_rnnt_beam_width_one_equals_greedy() -> None:
    features, lengths = torch.randn(3, 80, N_MELS), torch.tensor([80, 61, 30])
    for seed in range(2):
        model = _lively(_rnnt(seed=seed), features, lengths)
        greedy = model.greedy_decode(features, lengths, max_symbols_per_frame=3)
        assert any(0 < len(g) < 3 * subsampled_length(80) for g in greedy), greedy  # labels and blanks both
        assert model.beam_search(features, lengths, beam_size=1, max_symbols_per_frame=3) == greedy


def test_decoding_terminates_on_random_input() -> None:
    torch.manual_seed(1)
    features, lengths = torch.randn(2, 50, N_MELS), torch.tensor([50, 9])
    ctc = CTCModel(CTCConfig(**TINY, vocab_size=6)).eval()
    for hyp in ctc.greedy_decode(features, lengths) + ctc.beam_search(features, lengths, beam_size=4):
        assert len(hyp) <= subsampled_length(50) and all(0 < k < 6 for k in hyp)
    model = _rnnt()
    with torch.no_grad():
        model.joint.out.bias[BLANK_ID] = -100.0  # never blank: only the per-frame bound stops decoding
    enc, enc_lengths = model.encoder(features, lengths)
    for b in range(2):
        n = int(enc_lengths[b])
        assert len(rnnt_greedy_decode(model, enc[b, :n], max_symbols_per_frame=2)) == 2 * n
        hyps = rnnt_beam_search(model, enc[b, :n], beam_size=3, max_symbols_per_frame=2)
        assert 1 <= len(hyps) <= 3 and all(len(tokens) <= 2 * n for tokens, _ in hyps)
        assert [s for _, s in hyps] == sorted((s for _, s in hyps), reverse=True)


# ---- checkpoints, streaming, vocabulary ---------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["ctc", "rnnt"])
def test_save_load_identity(kind: str, tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = (CTCModel(CTCConfig(**TINY, vocab_size=6)) if kind == "ctc"
             else RNNTModel(RNNTConfig(**TINY, vocab_size=6, pred_dim=16, joint_dim=16)))
    features, lengths, targets = torch.randn(2, 30, N_MELS), torch.tensor([30, 21]), torch.tensor([[1, 2], [3, 0]])
    args = (features, lengths) if kind == "ctc" else (features, lengths, targets)
    model.train()(*args)  # moves the BatchNorm running statistics away from their initial values
    model.eval()
    model.save_pretrained(tmp_path / "m")
    model.save_pretrained(tmp_path / "m")  # overwriting works
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    assert config["schema_version"] == 1 and sorted(p.name for p in (tmp_path / "m").iterdir()) == [
        "config.json", "model.safetensors"]
    cls = type(model)
    loaded = cls.from_pretrained(tmp_path / "m")
    assert loaded.config == model.config and not loaded.training
    with torch.no_grad():
        torch.testing.assert_close(loaded(*args)[0], model(*args)[0], atol=0, rtol=0)
    other = RNNTModel if kind == "ctc" else CTCModel
    with pytest.raises(CheckpointError):
        other.from_pretrained(tmp_path / "m")


def test_streaming_rnnt_equals_full_utterance_greedy() -> None:
    features = torch.randn(1, 90, N_MELS)
    model = _lively(_rnnt(causal=True), features, torch.tensor([90]))
    expected = model.greedy_decode(features, torch.tensor([90]), max_symbols_per_frame=3)[0]
    assert 0 < len(expected) < 3 * subsampled_length(90)
    stream = StreamingRNNT(model, max_symbols_per_frame=3)
    emitted, start = [], 0
    for size in (3, 17, 1, 9, 30, 30):
        emitted += stream.accept(features[0, start:start + size])
        start += size
    assert len(emitted) > 0  # labels come out before the end of the stream
    emitted += stream.finish()
    assert emitted == stream.tokens == expected
    with pytest.raises(ValueError, match="causal"):
        StreamingRNNT(_rnnt(causal=False))


def test_char_vocab_round_trip(tmp_path: Path) -> None:
    vocab = CharVocab.from_texts(["hello world", "hola mundo"])
    assert len(vocab) == len(set("hello worldhola mundo")) + 1
    ids = vocab.encode("hola mundo")
    assert BLANK_ID not in ids and vocab.decode(ids) == "hola mundo"
    assert vocab.decode([BLANK_ID, *ids, BLANK_ID]) == "hola mundo"
    assert CharVocab.load(vocab.save(tmp_path / "vocab.json")) == vocab
    with pytest.raises(ValueError, match="not in the vocabulary"):
        vocab.encode("hallo!")
