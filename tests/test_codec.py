"""The neural codec behind the AudioTokenizer interface: shapes, every K decodes, chunked == whole, save/load,
bad input, a tiny codec that learns, and the shipped model."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import codec
from codec import AudioInputError, AudioTokenizer
from codec.neural import CodecConfig, NeuralCodec
from training.codec_losses import MultiScaleMelLoss, mel_distance

TINY = CodecConfig(n_filters=4, dimension=16, num_codebooks=4, cardinality=64, kmeans_iters=5)


def speechlike(seconds: float, sr: int = 16000, seed: int = 0) -> torch.Tensor:
    """A harmonic tone with a wandering pitch and syllable-like amplitude, plus a little noise: [T]."""
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(int(seconds * sr)) / sr
    f0 = 120 + 30 * torch.sin(2 * math.pi * 0.7 * t + float(torch.rand(1, generator=g)) * 6)
    phase = 2 * math.pi * torch.cumsum(f0, 0) / sr
    x = sum(torch.sin(k * phase) / k for k in range(1, 8))
    env = 0.5 + 0.5 * torch.sin(2 * math.pi * 4 * t).clamp(min=0)
    return (0.2 * x * env + 0.005 * torch.randn(len(t), generator=g)).float()


@pytest.fixture(scope="module")
def tiny() -> NeuralCodec:
    torch.manual_seed(0)
    model = NeuralCodec(TINY)
    model.train()
    with torch.no_grad():  # one training pass initializes the codebooks by k-means
        model(torch.stack([speechlike(1.0, seed=s) for s in range(4)]))
    return model.eval()


def test_shapes_and_every_number_of_codebooks_decodes(tiny: NeuralCodec) -> None:
    assert (tiny.sample_rate, tiny.frame_rate, tiny.hop_length) == (16000, 50, 320)
    x = torch.stack([speechlike(0.73, seed=1), speechlike(0.73, seed=2)])
    for k in range(1, TINY.num_codebooks + 1):
        tiny.set_num_codebooks(k)
        codes = tiny.encode(x)
        assert codes.shape == (2, k, math.ceil(x.shape[1] / 320)) and codes.dtype == torch.int64
        assert int(codes.min()) >= 0 and int(codes.max()) < TINY.cardinality
        wav = tiny.decode(codes)
        assert wav.shape == (2, codes.shape[-1] * 320) and torch.isfinite(wav).all()
    # coarse-to-fine: the first k codebooks of a K=4 encoding are the K=k encoding
    full = tiny.encode(x)
    tiny.set_num_codebooks(2)
    assert torch.equal(tiny.encode(x), full[:, :2])
    tiny.set_num_codebooks(4)
    assert tiny.bitrate == 4 * 50 * 6
    with pytest.raises(ValueError, match="num_codebooks"):
        tiny.set_num_codebooks(5)


def test_chunked_equals_whole(tiny: NeuralCodec) -> None:
    x = speechlike(3.3, seed=3)
    whole = tiny.encode(x)
    chunked = tiny.encode_chunked(x, chunk_seconds=0.5, context_frames=16)
    assert chunked.shape == whole.shape
    # identical but for float rounding (~1e-7 in the latent) flipping a code that sits on a tie between two
    # (near-)duplicate codewords of this barely trained codebook
    assert (chunked == whole).float().mean() > 0.98
    with torch.no_grad():
        z = tiny.encoder(tiny.prepare(x)[:, None])
        z_part = tiny.encoder(tiny.prepare(x)[:, None, : 41 * 320])  # frames 0..24 plus 16 frames of context
    assert (z[..., :25] - z_part[..., :25]).abs().max() < 1e-5
    wav = tiny.decode(whole)
    wav_chunked = tiny.decode_chunked(whole, chunk_seconds=0.5, context_frames=16)
    assert wav_chunked.shape == wav.shape
    assert (wav_chunked - wav).abs().max() < 1e-4 * max(1.0, float(wav.abs().max()))


def test_save_load_identity(tiny: NeuralCodec, tmp_path) -> None:
    tiny.save_pretrained(tmp_path / "c")
    again = codec.load_codec(tmp_path / "c")
    assert isinstance(again, NeuralCodec) and again.config == tiny.config
    x = speechlike(1.0, seed=4)
    codes = tiny.encode(x)
    assert torch.equal(again.encode(x), codes)
    assert torch.allclose(again.decode(codes), tiny.decode(codes))
    with pytest.raises(FileNotFoundError, match="no model directory"):
        codec.load_codec(tmp_path / "missing")
    (tmp_path / "c" / "config.json").write_text("{broken")
    with pytest.raises(ValueError, match="not valid JSON"):
        AudioTokenizer.from_pretrained(tmp_path / "c")


def test_token_file_and_cli_round_trip(tiny: NeuralCodec, tmp_path) -> None:
    from typer.testing import CliRunner

    from alm.cli import app
    from codec import load_audio, save_audio

    tiny.save_pretrained(tmp_path / "c")
    wav = speechlike(1.03, seed=5)
    save_audio(tmp_path / "in.wav", wav, 16000)
    runner = CliRunner()
    r = runner.invoke(app, ["codec", "encode", str(tmp_path / "in.wav"), "-o", str(tmp_path / "t.npz"), "--kbps", "0.9",
                            "--model", str(tmp_path / "c")])
    assert r.exit_code == 0, r.output
    from codec.token_file import load_tokens

    tf = load_tokens(tmp_path / "t.npz")
    assert tf.codes.shape == (3, 52) and tf.num_samples == len(wav)
    tiny.set_num_codebooks(3)
    assert torch.equal(tf.codes, tiny.encode(load_audio(tmp_path / "in.wav"))[0])
    tiny.set_num_codebooks(4)
    r = runner.invoke(app, ["codec", "decode", str(tmp_path / "t.npz"), "-o", str(tmp_path / "out.wav"),
                            "--model", str(tmp_path / "c")])
    assert r.exit_code == 0, r.output
    assert len(load_audio(tmp_path / "out.wav")) == len(wav)
    r = runner.invoke(app, ["codec", "encode", str(tmp_path / "in.wav"), "-o", str(tmp_path / "x.npz"), "--kbps", "9",
                            "--model", str(tmp_path / "c")])
    assert r.exit_code != 0 and "kbps" in r.output
    (tmp_path / "junk.npz").write_bytes(b"junk")
    with pytest.raises(ValueError, match="not an alm token file"):
        load_tokens(tmp_path / "junk.npz")


def test_bad_and_edge_inputs(tiny: NeuralCodec) -> None:
    # shorter than one frame: padded to one frame
    assert tiny.encode(torch.zeros(100)).shape == (1, 4, 1)
    # silence is valid
    assert torch.isfinite(tiny.decode(tiny.encode(torch.zeros(16000)))).all()
    # clipping: louder than full scale is clipped, not rejected
    loud = speechlike(0.5) * 10
    assert torch.equal(tiny.encode(loud), tiny.encode(loud.clamp(-1, 1)))
    # another sample rate is resampled: 0.5 s at 8 kHz is 25 frames
    assert tiny.encode(np.zeros(4000, dtype=np.float32), sample_rate=8000).shape[-1] == 25
    with pytest.raises(AudioInputError, match="empty"):
        tiny.encode(torch.zeros(0))
    with pytest.raises(AudioInputError, match="NaN"):
        tiny.encode(torch.full((1000,), float("nan")))
    with pytest.raises(AudioInputError, match="shape"):
        tiny.encode(torch.zeros(1, 2, 100))
    with pytest.raises(AudioInputError, match="sample rate"):
        tiny.encode(torch.zeros(1000), sample_rate=5)
    codes = tiny.encode(torch.zeros(3200))
    with pytest.raises(ValueError, match="out of range"):
        tiny.decode(codes + TINY.cardinality)
    negative = codes.clone()
    negative[0, 0, 0] = -1
    with pytest.raises(ValueError, match="out of range"):
        tiny.decode(negative)
    with pytest.raises(ValueError, match="codebooks"):
        tiny.decode(torch.zeros(1, 5, 10, dtype=torch.long))
    with pytest.raises(ValueError, match="integers"):
        tiny.decode(codes.float())
    with pytest.raises(ValueError, match="zero frames"):
        tiny.decode(torch.zeros(1, 2, 0, dtype=torch.long))


def test_tiny_codec_learns() -> None:
    torch.manual_seed(0)
    model = NeuralCodec(TINY)
    model.train()
    mel = MultiScaleMelLoss(scales=(8, 9, 10))
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    x = torch.stack([speechlike(0.4, seed=s) for s in range(4)])
    losses = []
    for _ in range(40):
        y, _, commit = model(x)
        loss = 0.1 * (y - x).abs().mean() + mel(y, x) + commit
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss))
    assert np.mean(losses[-5:]) < 0.6 * np.mean(losses[:5]), losses


def test_data_dependent_init_keeps_the_signal_alive() -> None:
    torch.manual_seed(0)
    model = NeuralCodec(CodecConfig(n_filters=4, dimension=16, num_codebooks=2, cardinality=64))
    x = torch.stack([speechlike(0.5, seed=s) for s in range(4)])

    def time_variation() -> float:
        with torch.no_grad():
            z = model.encoder(x[:, None])
        return float(z.std(dim=2).mean() / (z.mean(dim=2).abs().mean() + 1e-8))

    before = time_variation()
    model.init_from_data(x)
    assert time_variation() > 5 * before
    with torch.no_grad():
        y = model.decoder(model.encoder(x[:, None]))[:, 0]
    assert 0.3 < float(y.std() / x.std()) < 3


def test_dead_codes_are_revived_and_stay_revived() -> None:
    torch.manual_seed(0)
    model = NeuralCodec(CodecConfig(n_filters=4, dimension=16, num_codebooks=2, cardinality=64))
    model.train()
    x = torch.stack([speechlike(0.5, seed=s) for s in range(4)])
    model(x)
    cb = model.quantizer.vq.layers[0]._codebook
    cb.cluster_size[:10] = 0.0  # ten dead codes
    replaced = model.revive_dead_codes(model._last_latents, n_q=2)
    assert replaced >= 10
    revived = cb.embed[:10].clone()
    latents = model._last_latents.transpose(1, 2).reshape(-1, 16)
    # each revived code is a latent vector of the batch
    assert all(bool((latents - v).abs().sum(dim=1).min() < 1e-5) for v in revived)
    model(x)  # an EMA step must not undo the revival (encodec's own expiry is undone this way)
    assert (cb.embed[:10] - revived).abs().max() < 0.5 * revived.abs().max()
    assert (cb.cluster_size[:10] > 0).all()


def test_shipped_codec_loads_and_beats_an_untrained_one() -> None:
    shipped = codec.load_codec()
    assert isinstance(shipped, NeuralCodec)
    assert (shipped.sample_rate, shipped.frame_rate, shipped.max_codebooks, shipped.cardinality) == (16000, 50, 8, 1024)
    from training.data.engines import synthesize
    from training.data.voices import by_id

    wav = torch.from_numpy(synthesize(by_id("espeak-f4"), "A held out voice says a new sentence.", "en"))
    untrained = NeuralCodec(shipped.config)
    untrained.train()
    with torch.no_grad():
        untrained(wav[None, : len(wav) // 320 * 320])
    untrained.eval()
    dist = {}
    for name, m in (("shipped", shipped), ("untrained", untrained)):
        y = m.decode(m.encode(wav))[0, : len(wav)]
        dist[name] = mel_distance(y[None], wav[None])
    assert dist["shipped"] < 0.7 * dist["untrained"], dist
