"""Classic TTS baselines (Tacotron 2, FastSpeech 2, HiFi-GAN) on tiny configs and made-up data, CPU, seconds."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from codec.features import log_mel
from legacy_seq2seq.checkpoint import CheckpointError
from legacy_seq2seq.fastspeech2 import (
    FastSpeech2,
    durations_from_alignment,
    fastspeech2_tiny,
    length_regulate,
)
from legacy_seq2seq.hifigan import (
    HiFiGANConfig,
    HiFiGANGenerator,
    LogMel,
    MultiPeriodDiscriminator,
    MultiScaleDiscriminator,
    discriminator_loss,
    generator_loss,
    hifigan_cpu,
    multi_resolution_stft_loss,
)
from legacy_seq2seq.tacotron2 import Tacotron2, guided_attention_loss, stop_token_loss, tacotron2_tiny

N_MELS = 8
VOCAB = 10
TEXT = torch.tensor([[1, 2, 3, 4, 5, 6], [3, 4, 5, 0, 0, 0]])
TEXT_LENGTHS = torch.tensor([6, 3])
DURATIONS = torch.tensor([[2, 3, 1, 2, 4, 2], [3, 3, 4, 0, 0, 0]])  # sums 14 and 10


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def _mels(frames: int) -> torch.Tensor:
    """A smooth, learnable ``[2, frames, N_MELS]`` target."""
    t = torch.linspace(0, 1, frames)[:, None]
    k = torch.arange(1, N_MELS + 1)[None]
    return torch.stack([torch.sin(6 * t * k), torch.cos(4 * t * k)]) - 2.0


def _tiny_hifigan() -> HiFiGANConfig:
    # hop 20 = 5 x 4: an odd rate exercises the transposed conv's output padding
    return HiFiGANConfig(n_mels=N_MELS, n_fft=80, hop_length=20, upsample_rates=(5, 4), upsample_kernel_sizes=(10, 8),
                         upsample_initial_channel=16, resblock_kernel_sizes=(3, 5), resblock_dilations=((1, 3), (1, 3)),
                         mpd_channels=(4, 8, 8, 8), msd_channels=(4, 8, 8, 8, 8, 8, 8))


def _train(model: torch.nn.Module, step, n: int = 30) -> tuple[float, float]:  # noqa: ANN001
    """Adam on one fixed batch; loss before and after, each computed under the same dropout seed."""
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(n + 1):
        torch.manual_seed(1)
        loss = step()
        losses.append(float(loss.detach()))
        opt.zero_grad()
        loss.backward()
        opt.step()
    return losses[0], losses[-1]


# --- Tacotron 2 ---------------------------------------------------------------------------------------------
def test_tacotron2_shapes_and_alignments() -> None:
    model = Tacotron2(tacotron2_tiny(VOCAB, N_MELS))  # r = 2
    out = model(TEXT, TEXT_LENGTHS, _mels(15), torch.tensor([15, 10]), attention_loss_weight=1.0)
    assert out.mel_before.shape == out.mel_after.shape == (2, 15, N_MELS)
    assert out.stop_logits.shape == (2, 15)
    assert out.alignments.shape == (2, 8, 6)  # ceil(15 / 2) decoder steps
    torch.testing.assert_close(out.alignments.sum(-1), torch.ones(2, 8))
    assert float(out.alignments[1, :, 3:].abs().max()) == 0.0  # no attention on padding
    assert float(out.mel_after[1, 10:].abs().max()) == 0.0
    for term in (out.mel_loss, out.stop_loss, out.attention_loss, out.loss):
        assert term.dim() == 0 and torch.isfinite(term)


def test_tacotron2_inference_terminates_within_bound() -> None:
    config = tacotron2_tiny(VOCAB, N_MELS)
    model = Tacotron2(config)
    model.train()
    inf = model.infer(TEXT, TEXT_LENGTHS)
    bounds = torch.tensor([config.max_decoder_steps(6), config.max_decoder_steps(3)]) * config.reduction_factor
    assert ((inf.mel_lengths >= 1) & (inf.mel_lengths <= bounds)).all()
    assert inf.mel.shape == (2, int(inf.mel_lengths.max()), N_MELS)
    assert inf.alignments.shape[0] == 2 and inf.alignments.shape[2] == 6
    assert model.training  # mode restored
    single = model.infer(TEXT[0])  # [L] input works
    assert single.mel.shape[0] == 1


def test_stop_token_loss_ignores_padding_and_weights_the_last_frame() -> None:
    lengths = torch.tensor([4, 2])
    right = torch.full((2, 6), -10.0)
    right[0, 3], right[1, 1] = 10.0, 10.0
    assert float(stop_token_loss(right, lengths)) < 1e-3
    padded = right.clone()
    padded[:, 4:], padded[1, 2:] = -10.0, 3.0  # anything past each length
    assert float(stop_token_loss(padded, lengths)) == pytest.approx(float(stop_token_loss(right, lengths)))
    late = right.clone()
    late[0, 3] = -10.0  # missed stop
    assert float(stop_token_loss(late, lengths, pos_weight=5.0)) > 2.0 * float(stop_token_loss(late, lengths, 1.0))


def test_tacotron2_stop_loss_does_not_see_padding() -> None:
    # Teacher-forced inputs past a length are padding, which inference never feeds back: training the stop there
    # (as a target-1 run) taught the shipped recipe's model to stop only on padding, so it never stopped.
    model = Tacotron2(tacotron2_tiny(VOCAB, N_MELS))
    mels, lengths = _mels(15), torch.tensor([15, 10])
    other = mels.clone()
    other[1, 10:] = 0.0
    model.eval()
    with torch.no_grad():
        torch.manual_seed(1)
        a = model(TEXT, TEXT_LENGTHS, mels, lengths)
        torch.manual_seed(1)
        b = model(TEXT, TEXT_LENGTHS, other, lengths)
    assert not torch.allclose(a.stop_logits[1, 11:], b.stop_logits[1, 11:])  # the padding does reach the logits
    assert float(a.stop_loss) == pytest.approx(float(b.stop_loss))


def test_guided_attention_loss_diagonal_vs_antidiagonal() -> None:
    n = torch.tensor([10])
    diagonal = torch.eye(10)[None]
    anti = torch.eye(10).flip(1)[None]
    low, high = guided_attention_loss(diagonal, n, n), guided_attention_loss(anti, n, n)
    assert float(low) < 1e-6
    assert 0.5 < float(high) <= 1.0  # per-step off-diagonal mass: most of the anti-diagonal is outside the band


def test_guided_attention_loss_scale_does_not_shrink_with_text_length() -> None:
    # uniform attention over N symbols: the off-band mass per step is about the same fraction for any N
    values = []
    for length in (10, 80):
        n = torch.tensor([length])
        values.append(float(guided_attention_loss(torch.full((1, length, length), 1.0 / length), n, n)))
    assert abs(values[0] - values[1]) < 0.1 and values[1] > 0.3, values


def test_guided_attention_loss_pulls_tacotron2_attention_onto_the_diagonal() -> None:
    torch.manual_seed(0)
    model = Tacotron2(tacotron2_tiny(VOCAB, N_MELS))
    mels, lengths = _mels(15), torch.tensor([15, 10])
    r = model.config.reduction_factor
    steps = torch.div(lengths + r - 1, r, rounding_mode="floor")

    def attention_loss() -> torch.Tensor:
        return guided_attention_loss(model(TEXT, TEXT_LENGTHS, mels, lengths).alignments, TEXT_LENGTHS, steps)

    with torch.no_grad():
        torch.manual_seed(1)
        before = float(attention_loss())
    _train(model, lambda: model(TEXT, TEXT_LENGTHS, mels, lengths, 10.0).loss, n=60)
    with torch.no_grad():
        torch.manual_seed(1)
        after = float(attention_loss())
    assert after < 0.5 * before, (before, after)


def test_tacotron2_learns_a_tiny_batch() -> None:
    model = Tacotron2(tacotron2_tiny(VOCAB, N_MELS))
    mels, lengths = _mels(15), torch.tensor([15, 10])
    first, last = _train(model, lambda: model(TEXT, TEXT_LENGTHS, mels, lengths, 1.0).loss)
    assert last < 0.4 * first, (first, last)


# --- FastSpeech 2 -------------------------------------------------------------------------------------------
def _fs2_batch() -> tuple[torch.Tensor, ...]:
    t = torch.linspace(0, 1, 14)
    pitch = torch.stack([torch.sin(5 * t), torch.cos(3 * t)])
    return TEXT, TEXT_LENGTHS, DURATIONS, pitch, 0.5 * pitch, _mels(14)


def test_fastspeech2_shapes() -> None:
    model = FastSpeech2(fastspeech2_tiny(VOCAB, N_MELS))
    out = model(*_fs2_batch())
    assert out.mel.shape == (2, 14, N_MELS)
    assert out.log_duration.shape == (2, 6)
    assert out.pitch.shape == out.energy.shape == (2, 14)
    assert out.mel_lengths.tolist() == [14, 10]
    assert float(out.mel[1, 10:].abs().max()) == 0.0
    inf = model.infer(TEXT, TEXT_LENGTHS, pitch_shift=1.0)
    assert inf.mel.shape == (2, int(inf.mel_lengths.max()), N_MELS)
    assert inf.durations.shape == (2, 6) and inf.durations[1, 3:].eq(0).all()
    assert inf.mel_lengths.tolist() == inf.durations.sum(1).tolist()


def test_fastspeech2_learns_a_tiny_batch() -> None:
    model = FastSpeech2(fastspeech2_tiny(VOCAB, N_MELS))
    batch = _fs2_batch()
    first, last = _train(model, lambda: model(*batch).loss)
    assert last < 0.3 * first, (first, last)


def test_length_regulator_totals_and_order() -> None:
    x = torch.randn(2, 6, 3)
    y, lengths = length_regulate(x, DURATIONS)
    assert lengths.tolist() == DURATIONS.sum(1).tolist() and y.shape == (2, 14, 3)
    expected = torch.repeat_interleave(x[0], DURATIONS[0], dim=0)
    torch.testing.assert_close(y[0], expected)
    assert float(y[1, 10:].abs().max()) == 0.0


def test_speed_halves_length() -> None:
    model = FastSpeech2(fastspeech2_tiny(VOCAB, N_MELS))
    with torch.no_grad():  # a predictor that says 10 frames for every symbol
        model.duration_predictor.out.weight.zero_()
        model.duration_predictor.out.bias.fill_(math.log(11.0))
    normal = model.infer(TEXT, TEXT_LENGTHS).mel_lengths
    fast = model.infer(TEXT, TEXT_LENGTHS, speed=2.0).mel_lengths
    assert normal.tolist() == [60, 30]
    assert ((fast.float() / normal.float() - 0.5).abs() < 0.1).all()


def test_durations_from_alignment_sum_to_frames() -> None:
    alignment = torch.softmax(torch.randn(23, 7) * 3, dim=-1)
    d = durations_from_alignment(alignment)
    assert d.shape == (7,) and int(d.sum()) == 23
    assert durations_from_alignment(torch.eye(5).repeat_interleave(2, 0)).tolist() == [2] * 5


# --- HiFi-GAN -----------------------------------------------------------------------------------------------
def test_generator_length_is_frames_times_hop() -> None:
    config = _tiny_hifigan()
    assert HiFiGANGenerator(config)(torch.randn(2, N_MELS, 7)).shape == (2, 7 * 20)
    cpu = HiFiGANGenerator(hifigan_cpu())  # the shipped preset: 16 kHz, hop 160
    assert cpu(torch.randn(1, 80, 3)).shape == (1, 3 * 160)


def test_discriminators_return_logits_and_feature_maps() -> None:
    config = _tiny_hifigan()
    wav = torch.randn(2, 240)
    logits, fmaps = MultiPeriodDiscriminator(config)(wav)
    assert len(logits) == len(fmaps) == 5
    assert all(x.dim() == 2 and x.shape[0] == 2 for x in logits)
    assert all(len(f) == len(config.mpd_channels) + 1 for f in fmaps)
    logits, fmaps = MultiScaleDiscriminator(config)(wav)
    assert len(logits) == len(fmaps) == 3
    assert all(len(f) == 8 and f[-1].flatten(1).shape == x.shape for f, x in zip(fmaps, logits))


def _test_signal(n: int, sample_rate: int = 16000) -> torch.Tensor:
    t = torch.arange(n) / sample_rate
    return torch.stack([0.5 * torch.sin(2 * math.pi * 440 * t), 0.3 * torch.sin(2 * math.pi * 1000 * t)]) \
        + 0.01 * torch.randn(2, n)


def test_loss_mel_matches_project_log_mel() -> None:
    config = _tiny_hifigan()
    wav = _test_signal(12 * 20)
    fields = {f.name: getattr(config.features, f.name) for f in dataclasses.fields(config.features)}
    reference = log_mel(wav, **fields)
    torch.testing.assert_close(LogMel(config.features)(wav), reference, atol=1e-3, rtol=1e-4)
    default = hifigan_cpu().features  # the project's 16 kHz / 400 / 160 / 80 features
    wav = _test_signal(1600)
    torch.testing.assert_close(LogMel(default)(wav), log_mel(wav), atol=1e-3, rtol=1e-4)


def test_one_gan_step_gives_finite_losses() -> None:
    config = _tiny_hifigan()
    G, mpd, msd, mel_fn = (HiFiGANGenerator(config), MultiPeriodDiscriminator(config),
                           MultiScaleDiscriminator(config), LogMel(config.features))
    opt_g = torch.optim.AdamW(G.parameters(), 2e-4, betas=(0.8, 0.99))
    opt_d = torch.optim.AdamW([*mpd.parameters(), *msd.parameters()], 2e-4, betas=(0.8, 0.99))
    wav = _test_signal(12 * 20)
    mel_real = mel_fn(wav)
    fake = G(mel_real[..., :12])  # 12 * hop samples have 13 centred frames: drop the last
    assert fake.shape == wav.shape

    real_logits = mpd(wav)[0] + msd(wav)[0]
    fake_logits = mpd(fake.detach())[0] + msd(fake.detach())[0]
    d_loss = discriminator_loss(real_logits, fake_logits)
    opt_d.zero_grad()
    d_loss.backward()
    opt_d.step()

    (_, rf1), (_, rf2) = mpd(wav), msd(wav)
    (fl1, ff1), (fl2, ff2) = mpd(fake), msd(fake)
    g = generator_loss(fl1 + fl2, rf1 + rf2, ff1 + ff2, mel_fn(fake), mel_real)
    opt_g.zero_grad()
    g.total.backward()
    opt_g.step()
    assert torch.isfinite(d_loss)
    assert all(torch.isfinite(x) for x in (g.adversarial, g.feature_matching, g.mel, g.total))
    torch.testing.assert_close(g.total, g.adversarial + 2 * g.feature_matching + 45 * g.mel)
    assert all(torch.isfinite(p.grad).all() for p in G.parameters() if p.grad is not None)


def test_multi_resolution_stft_loss_is_zero_on_identity_and_grows_with_noise() -> None:
    wav = _test_signal(4000)
    assert float(multi_resolution_stft_loss(wav, wav)) < 1e-5
    small = float(multi_resolution_stft_loss(wav + 0.01 * torch.randn_like(wav), wav))
    large = float(multi_resolution_stft_loss(wav + 0.1 * torch.randn_like(wav), wav))
    assert 0 < small < large


def test_generator_warm_up_alone_lowers_the_spectral_loss() -> None:
    # the warm-up objective (mel L1 + multi-resolution STFT, no discriminators) trains the generator by itself
    torch.manual_seed(0)
    config = _tiny_hifigan()
    G, mel_fn = HiFiGANGenerator(config), LogMel(config.features)
    opt = torch.optim.Adam(G.parameters(), 2e-3)
    wav = _test_signal(40 * 20)
    mel = mel_fn(wav)[..., :40]
    losses = []
    for _ in range(41):
        fake = G(mel)
        loss = F.l1_loss(mel_fn(fake)[..., :40], mel) + multi_resolution_stft_loss(fake, wav, ((64, 16, 64),))
        losses.append(float(loss.detach()))
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert losses[-1] < 0.7 * losses[0], losses[::10]


# --- speaker ids --------------------------------------------------------------------------------------------
def _two_models(kind: str) -> tuple[torch.nn.Module, torch.nn.Module]:
    """A single-voice model and the same weights with a table of three voices (zero at the start)."""
    cls, config = (Tacotron2, tacotron2_tiny(VOCAB, N_MELS)) if kind == "tacotron2" else \
        (FastSpeech2, fastspeech2_tiny(VOCAB, N_MELS))
    one = cls(config).eval()
    many = cls(dataclasses.replace(config, speakers=("a", "b", "c"))).eval()
    missing, unexpected = many.load_state_dict(one.state_dict(), strict=False)
    assert missing == ["speaker_table.embedding.weight"] and unexpected == []
    return one, many


@pytest.mark.parametrize("kind", ["tacotron2", "fastspeech2"])
def test_speaker_table_starts_neutral_and_then_tells_voices_apart(kind: str) -> None:
    one, many = _two_models(kind)
    ids = torch.tensor([2, 1])

    @torch.no_grad()
    def memory(model: torch.nn.Module, speaker_ids: torch.Tensor | None) -> torch.Tensor:
        return model.encode(TEXT, TEXT_LENGTHS, speaker_ids)

    torch.testing.assert_close(memory(many, ids), memory(one, None))  # a warm start changes nothing at step 0
    with torch.no_grad():
        many.speaker_table.embedding.weight.normal_()
    a, b = memory(many, torch.tensor([0, 0])), memory(many, torch.tensor([1, 1]))
    assert not torch.allclose(a[:, :3], b[:, :3])
    assert float(a[1, 3:].abs().max()) == float(b[1, 3:].abs().max()) == 0.0  # padding stays zero
    torch.testing.assert_close(memory(many, None), a)  # no ids: voice 0
    assert many.speaker_id("c") == 2
    with pytest.raises(ValueError, match="unknown speaker 'd'.*a, b, c"):
        many.speaker_id("d")
    with pytest.raises(ValueError, match="speaker ids must be in"):
        memory(many, torch.tensor([0, 3]))
    with pytest.raises(ValueError, match="one voice"):
        memory(one, ids)


def test_speaker_config_round_trips_and_refuses_bad_names(tmp_path: Path) -> None:
    _, many = _two_models("fastspeech2")
    many.save_pretrained(tmp_path / "m")
    loaded = FastSpeech2.from_pretrained(tmp_path / "m")
    assert loaded.config.speakers == ("a", "b", "c") and loaded.config == many.config  # JSON list -> tuple
    for bad in (("a", "a"), ("a", "")):
        with pytest.raises(ValueError, match="speaker names"):
            dataclasses.replace(many.config, speakers=bad)


def test_multi_speaker_fastspeech2_fits_two_voices_of_one_text() -> None:
    """Two items with the same text, durations and prosody but different mels (two voices): without ids the
    model can only learn their average; with them it fits both."""
    text, lengths = TEXT[:1].repeat(2, 1), TEXT_LENGTHS[:1].repeat(2)
    durations = DURATIONS[:1].repeat(2, 1)
    target = _mels(14)[:1].repeat(2, 1, 1)
    target[1] += 1.5
    pitch = torch.zeros(2, 14)
    finals = {}
    for voices in ((), ("x", "y")):
        torch.manual_seed(0)
        model = FastSpeech2(dataclasses.replace(fastspeech2_tiny(VOCAB, N_MELS), dropout=0.0, variance_dropout=0.0,
                                                speakers=voices))
        ids = torch.tensor([0, 1]) if voices else None
        finals[voices] = _train(model, lambda m=model, i=ids: m(text, lengths, durations, pitch, pitch, target,
                                                                  speaker_ids=i).mel_loss, n=60)[1]
    assert finals[()] > 0.6, finals  # the average is 0.75 from each voice
    assert finals[("x", "y")] < 0.5 * finals[()], finals


# --- save / load --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["tacotron2", "fastspeech2", "hifigan"])
def test_save_load_identity(name: str, tmp_path: Path) -> None:
    if name == "tacotron2":
        model, cls = Tacotron2(tacotron2_tiny(VOCAB, N_MELS)), Tacotron2
    elif name == "fastspeech2":
        model, cls = FastSpeech2(fastspeech2_tiny(VOCAB, N_MELS)), FastSpeech2
    else:
        model, cls = HiFiGANGenerator(_tiny_hifigan()), HiFiGANGenerator
    model.save_pretrained(tmp_path / "m")
    model.save_pretrained(tmp_path / "m")  # overwriting an existing directory is atomic too
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]
    loaded = cls.from_pretrained(tmp_path / "m")
    assert loaded.config == model.config
    state, loaded_state = model.state_dict(), loaded.state_dict()
    assert state.keys() == loaded_state.keys()
    assert all(torch.equal(state[k], loaded_state[k]) for k in state)
    model.eval()
    if name == "hifigan":
        mel = torch.randn(1, N_MELS, 5)
        torch.testing.assert_close(loaded(mel), model(mel))
    elif name == "fastspeech2":
        torch.testing.assert_close(loaded.infer(TEXT, TEXT_LENGTHS).mel, model.infer(TEXT, TEXT_LENGTHS).mel)
    other = FastSpeech2 if cls is not FastSpeech2 else Tacotron2
    with pytest.raises(CheckpointError, match="holds a"):
        other.from_pretrained(tmp_path / "m")
    with pytest.raises(CheckpointError, match="no config.json"):
        cls.from_pretrained(tmp_path / "missing")


def test_half_precision_copy_loads_and_speaks_like_the_original(tmp_path: Path) -> None:
    from legacy_seq2seq.checkpoint import WEIGHTS_NAME, half_precision_copy

    model = FastSpeech2(fastspeech2_tiny(VOCAB, N_MELS)).eval()
    model.save_pretrained(tmp_path / "m")
    (tmp_path / "m" / "vocab.json").write_text('{"chars": "ab"}', encoding="utf-8")  # files beside come along
    half_precision_copy(tmp_path / "m", tmp_path / "half")
    assert (tmp_path / "half" / "vocab.json").read_text(encoding="utf-8") == '{"chars": "ab"}'
    full_bytes, half_bytes = ((tmp_path / d / WEIGHTS_NAME).stat().st_size for d in ("m", "half"))
    assert half_bytes < 0.55 * full_bytes
    loaded = FastSpeech2.from_pretrained(tmp_path / "half")
    assert all(p.dtype == torch.float32 for p in loaded.parameters())
    state, loaded_state = model.state_dict(), loaded.state_dict()
    for k, v in state.items():  # each weight rounded to float16, nothing else changed
        assert torch.equal(loaded_state[k], v.half().to(v.dtype) if v.is_floating_point() else v), k
    with torch.no_grad():
        ref, out = model.infer(TEXT, TEXT_LENGTHS), loaded.infer(TEXT, TEXT_LENGTHS)
    if torch.equal(out.durations, ref.durations):  # a rounded duration may move by a frame; the mel otherwise not
        torch.testing.assert_close(out.mel, ref.mel, rtol=0.02, atol=0.02)
    assert (out.durations - ref.durations).abs().max() <= 1
    with pytest.raises(CheckpointError, match="another directory"):
        half_precision_copy(tmp_path / "half", tmp_path / "half")
    with pytest.raises(CheckpointError, match="no config.json"):
        half_precision_copy(tmp_path / "missing", tmp_path / "out")
    state = {k: v.clone() for k, v in state.items()}
    next(v for v in state.values() if v.is_floating_point()).view(-1)[0] = 1e6
    model.load_state_dict(state)
    model.save_pretrained(tmp_path / "big")
    with pytest.raises(CheckpointError, match="too large for float16"):
        half_precision_copy(tmp_path / "big", tmp_path / "out")
    assert not (tmp_path / "out").exists()
