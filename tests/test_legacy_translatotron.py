"""Translatotron and its d-vector speaker encoder on tiny configs and made-up data, CPU, seconds."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from legacy_seq2seq.checkpoint import CheckpointError
from legacy_seq2seq.speaker_encoder import GE2ELoss, SpeakerEncoder, speaker_encoder_tiny
from legacy_seq2seq.translatotron import Translatotron, TranslatotronConfig, stack_frames, translatotron_tiny

N_MELS = 8
V_SRC, V_TGT = 12, 9
SRC_LENGTHS = torch.tensor([20, 13])  # 2x frame stacking: 10 and 7 encoder frames
TGT_LENGTHS = torch.tensor([15, 10])
SOURCE_IDS = torch.tensor([[3, 4, 5, 6, 7, 1], [8, 9, 1, 0, 0, 0]])  # 1 plays end-of-sentence, 0 pads
TARGET_IDS = torch.tensor([[2, 3, 4, 1], [5, 1, 0, 0]])


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def _model() -> Translatotron:
    return Translatotron(translatotron_tiny(N_MELS, V_SRC, V_TGT))


def _batch() -> tuple[torch.Tensor, ...]:
    """Made-up source ``[2, 20, 8]`` (noise) and a smooth, learnable target ``[2, 15, 8]``."""
    g = torch.Generator().manual_seed(3)
    src = torch.randn(2, 20, N_MELS, generator=g)
    t = torch.linspace(0, 1, 15)[:, None]
    k = torch.arange(1, N_MELS + 1)[None]
    tgt = torch.stack([torch.sin(6 * t * k), torch.cos(4 * t * k)]) - 2.0
    return src, SRC_LENGTHS, tgt, TGT_LENGTHS


def test_stack_frames_and_config_validation() -> None:
    mel = torch.arange(2 * 5 * 2, dtype=torch.float).reshape(2, 5, 2)
    stacked, lengths = stack_frames(mel, torch.tensor([5, 3]), 2)
    assert stacked.shape == (2, 3, 4) and lengths.tolist() == [3, 2]
    assert stacked[0, 0].tolist() == [0.0, 1.0, 2.0, 3.0] and stacked[0, 2].tolist() == [8.0, 9.0, 0.0, 0.0]
    assert float(stacked[1, 1, 2:].abs().max()) == 0.0  # padding frame 3 of item 1 is zeroed
    with pytest.raises(ValueError):
        TranslatotronConfig(frame_stack=3)
    with pytest.raises(ValueError):
        TranslatotronConfig(encoder_layers=2, aux_source_layer=4)


def test_forward_shapes_and_alignments() -> None:
    model = _model()
    out = model(*_batch(), source_ids=SOURCE_IDS, target_ids=TARGET_IDS, attention_loss_weight=1.0)
    assert out.mel_before.shape == out.mel_after.shape == (2, 15, N_MELS)
    assert out.stop_logits.shape == (2, 15)
    assert out.alignments.shape == (2, 8, 10)  # ceil(15 / r=2) decoder steps x ceil(20 / 2) encoder frames
    assert out.encoder_lengths.tolist() == [10, 7]
    torch.testing.assert_close(out.alignments.sum(-1), torch.ones(2, 8))
    assert float(out.alignments[1, :, 7:].abs().max()) == 0.0  # no attention on encoder padding
    assert float(out.mel_after[1, 10:].abs().max()) == 0.0
    assert out.source_logits.shape == (2, 6, V_SRC) and out.target_logits.shape == (2, 4, V_TGT)
    for term in (out.mel_loss, out.stop_loss, out.source_aux_loss, out.target_aux_loss, out.attention_loss):
        assert term.dim() == 0 and torch.isfinite(term) and float(term) > 0
    expected = out.mel_loss + out.stop_loss + out.source_aux_loss + out.target_aux_loss + out.attention_loss
    torch.testing.assert_close(out.loss, expected)
    no_aux = model(*_batch())  # without id targets the auxiliary terms are 0
    assert no_aux.source_logits is None and float(no_aux.source_aux_loss) == 0.0


def test_translate_terminates_within_bound() -> None:
    config = translatotron_tiny(N_MELS, V_SRC, V_TGT)
    model = Translatotron(config).train()
    src = _batch()[0]
    inf = model.translate(src, src_lengths=SRC_LENGTHS)
    bounds = torch.tensor([config.max_decoder_steps(20), config.max_decoder_steps(13)]) * config.reduction_factor
    assert ((inf.mel_lengths >= 1) & (inf.mel_lengths <= bounds)).all()
    assert inf.mel.shape == (2, int(inf.mel_lengths.max()), N_MELS)
    assert inf.alignments.shape[0] == 2 and inf.alignments.shape[2] == 10
    assert inf.alignments.shape[1] <= int(bounds.max()) // config.reduction_factor
    assert model.training  # mode restored
    single = model.translate(src[1, :13])  # [T, n_mels] input works
    assert single.mel.shape[0] == 1 and int(single.mel_lengths[0]) <= bounds[1]


def test_learns_a_tiny_batch() -> None:
    model = _model()
    batch = _batch()
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=3e-3)
    losses = []
    for _ in range(31):
        torch.manual_seed(1)  # the same prenet dropout mask each step
        loss = model(*batch, source_ids=SOURCE_IDS, target_ids=TARGET_IDS).loss
        losses.append(float(loss))
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert losses[-1] < 0.5 * losses[0], losses


def test_speaker_encoder_unit_norm_and_ge2e_learns() -> None:
    encoder = SpeakerEncoder(speaker_encoder_tiny(N_MELS))
    n_speakers, n_utts, frames = 3, 4, 12
    offsets = torch.randn(n_speakers, 1, 1, N_MELS) * 0.3  # each synthetic "speaker" shifts every frame (a bit)
    feats = (torch.randn(n_speakers, n_utts, frames, N_MELS) + offsets).reshape(-1, frames, N_MELS)
    lengths = torch.randint(6, frames + 1, (n_speakers * n_utts,))
    emb = encoder(feats, lengths)
    assert emb.shape == (12, 8)
    torch.testing.assert_close(emb.norm(dim=-1), torch.ones(12))
    padded = F.pad(feats, (0, 0, 0, 5), value=7.0)  # extra padding frames change nothing
    torch.testing.assert_close(encoder(padded, lengths), emb)
    long = encoder.embed_utterance(torch.randn(50, N_MELS), window=16)
    assert long.shape == (8,) and abs(float(long.norm()) - 1.0) < 1e-5

    ge2e = GE2ELoss()
    opt = torch.optim.Adam([*encoder.parameters(), *ge2e.parameters()], lr=1e-2)
    losses = []
    for _ in range(25):
        loss = ge2e(encoder(feats, lengths).reshape(n_speakers, n_utts, -1))
        losses.append(float(loss))
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert losses[0] > 0.5 and losses[-1] < 0.2 * losses[0], losses  # not separable at first, then separated


def test_speaker_embedding_changes_the_output() -> None:
    model = _model().eval()
    src, src_lengths, tgt, tgt_lengths = _batch()
    a, b = F.normalize(torch.randn(2, 2, 8), dim=-1)

    def run(speaker: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        torch.manual_seed(5)  # the same prenet dropout for every call
        forced = model(src, src_lengths, tgt, tgt_lengths, speaker_embedding=speaker).mel_after
        torch.manual_seed(5)
        return forced, model.translate(src, speaker, src_lengths).mel

    (forced_a, gen_a), (forced_b, gen_b) = run(a), run(b)
    assert float((forced_a - forced_b).abs().max()) > 1e-4
    assert gen_a.shape != gen_b.shape or float((gen_a - gen_b).abs().max()) > 1e-4
    own = model.speaker_embedding(src, src_lengths)  # default: the source speaker's d-vector
    torch.testing.assert_close(run(None)[0], run(own)[0])


def test_save_load_identity(tmp_path: Path) -> None:
    model = _model().eval()
    path = model.save_pretrained(tmp_path / "s2st")
    loaded = Translatotron.from_pretrained(path)
    assert loaded.config == model.config and not loaded.training
    assert all(torch.equal(v, loaded.state_dict()[k]) for k, v in model.state_dict().items())
    src = _batch()[0]
    torch.manual_seed(2)
    first = model.translate(src, src_lengths=SRC_LENGTHS)
    torch.manual_seed(2)
    again = loaded.translate(src, src_lengths=SRC_LENGTHS)
    torch.testing.assert_close(first.mel, again.mel)
    assert not any(p.requires_grad for p in loaded.speaker_encoder.parameters())  # frozen, as configured
    with pytest.raises(CheckpointError):
        SpeakerEncoder.from_pretrained(path)  # another model class
    encoder = SpeakerEncoder(speaker_encoder_tiny(N_MELS))
    reloaded = SpeakerEncoder.from_pretrained(encoder.save_pretrained(tmp_path / "spk"))
    torch.testing.assert_close(reloaded(src), encoder(src))
