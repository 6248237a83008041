"""HuBERT-style units: frame contract, collapse round trip, save/load identity, a tiny HuBERT that learns, metrics.

The audio is a handful of short espeak-ng sentences synthesized here (a few seconds in all); everything runs on
CPU in well under a minute.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from transformers import Wav2Vec2BertModel

from codec.audio import AudioInputError
from codec.units import (
    UnitConfig,
    UnitTokenizer,
    collapse_repeats,
    conformer_arch,
    conformer_inputs,
    hubert_arch,
    small_conformer_config,
    small_hubert_config,
)
from training.data.engines import available_engines, synthesize
from training.data.voices import by_id
from training.train_units import (
    HubertTrainConfig,
    codebook_features,
    fit_codebook,
    fit_conformer_units,
    fit_hubert_units,
    fit_mfcc_units,
    span_mask,
    train_hubert,
)
from training.unit_quality import phone_labelled_set, purity_metrics, unit_quality

SENTENCES = [("the cat sat on the mat", "en"), ("open the window please", "en"), ("hola, buenos días", "es"),
             ("seven green apples", "en"), ("el perro come pan", "es"), ("where is the station", "en")]
K = 12  # units of the tiny tokenizers


def tiny_hubert_config(**overrides):
    return small_hubert_config(hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64, conv_dim=32,
                               num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4, **overrides)


@pytest.fixture(scope="module")
def wavs() -> list[np.ndarray]:
    assert "espeak" in available_engines(), "espeak-ng is not installed (make setup installs it)"
    torch.set_num_threads(1)
    speaker = by_id("espeak-m1")
    return [synthesize(speaker, text, lang) for text, lang in SENTENCES]


@pytest.fixture(scope="module")
def mfcc_tok(wavs) -> UnitTokenizer:
    return fit_mfcc_units(wavs, n_clusters=K, seed=0)


@pytest.fixture(scope="module")
def labels(mfcc_tok, wavs) -> list[np.ndarray]:
    return [mfcc_tok.encode(w).numpy() for w in wavs]


@pytest.fixture(scope="module")
def hubert_run(wavs, labels):
    # shorter spans than HuBERT's 10 frames: 30 steps on 8 s of audio must show learning, not reach convergence
    cfg = HubertTrainConfig(steps=30, batch_size=8, crop_seconds=1.0, lr=1e-2, warmup_steps=3, mask_prob=0.5,
                            mask_length=5, log_every=5, seed=0)
    return train_hubert(wavs, labels, K, tiny_hubert_config(), cfg, progress=False)


def test_mfcc_units_fit_and_encode(wavs, mfcc_tok):
    assert mfcc_tok.kind == "mfcc" and mfcc_tok.num_units == K and mfcc_tok.frame_rate == 50
    for w in wavs:
        u = mfcc_tok.encode(w)
        assert u.dtype == torch.int64 and u.shape == (math.ceil(len(w) / 320),)
        assert int(u.min()) >= 0 and int(u.max()) < K
    used = torch.cat([mfcc_tok.encode(w) for w in wavs]).unique()
    assert len(used) > K // 2  # k-means on this data uses most clusters
    for n in (1, 319, 320, 321, 1000):
        assert mfcc_tok.encode(wavs[0][:n]).shape == (math.ceil(n / 320),)


def test_batch_matches_single_and_resampling(wavs, mfcc_tok):
    x = np.stack([wavs[0][:8000], wavs[1][:8000]])
    batch = mfcc_tok.encode(x)
    assert isinstance(batch, list) and len(batch) == 2
    for row, u in zip(x, batch, strict=True):
        assert torch.equal(u, mfcc_tok.encode(row))
    import soxr

    at8k = soxr.resample(wavs[0], 16000, 8000).astype(np.float32)
    u = mfcc_tok.encode(at8k, sample_rate=8000)
    assert u.shape == (math.ceil(len(at8k) * 2 / 320),)
    same = (u[: len(u) - 1] == mfcc_tok.encode(wavs[0])[: len(u) - 1]).float().mean()
    assert same > 0.5  # band-limited copy of the same speech: mostly the same units


def test_collapse_repeats_round_trip(mfcc_tok, wavs):
    units = mfcc_tok.encode(wavs[0])
    short, durations = collapse_repeats(units)
    assert torch.equal(short.repeat_interleave(durations), units)
    assert int(durations.sum()) == len(units) and bool((durations >= 1).all())
    assert not bool((short[1:] == short[:-1]).any())
    assert torch.equal(mfcc_tok.encode(wavs[0], collapse=True), short)
    u, d = UnitTokenizer.collapse_repeats([3, 3, 3, 1, 3, 3])
    assert u.tolist() == [3, 1, 3] and d.tolist() == [3, 1, 2]
    u, d = collapse_repeats(torch.zeros(0, dtype=torch.long))
    assert u.numel() == 0 and d.numel() == 0


def test_mfcc_save_load_identity(mfcc_tok, wavs, tmp_path):
    mfcc_tok.save_pretrained(tmp_path / "mfcc")
    assert json.loads((tmp_path / "mfcc" / "config.json").read_text())["kind"] == "mfcc"
    again = UnitTokenizer.from_pretrained(tmp_path / "mfcc")
    for w in wavs:
        assert torch.equal(again.encode(w), mfcc_tok.encode(w))


def test_tiny_hubert_learns_masked_prediction(hubert_run, labels):
    losses = [h["loss"] for h in hubert_run.history]  # mean over each 5 steps
    assert len(losses) == 6
    # A model that ignores the audio cannot beat the entropy of the label distribution; this one must use it.
    p = np.bincount(np.concatenate(labels), minlength=K) / sum(len(y) for y in labels)
    entropy = float(-(p[p > 0] * np.log(p[p > 0])).sum())
    assert losses[-1] < losses[0] - 0.2 and losses[-1] < entropy - 0.15, (losses, entropy)
    assert hubert_run.history[-1]["acc_masked"] > hubert_run.history[0]["acc_masked"] + 0.1


def test_hubert_units_save_load_identity(hubert_run, wavs, tmp_path):
    tok = fit_hubert_units(hubert_run.model, wavs, n_clusters=K, feature_layer=1, seed=0)
    assert tok.kind == "hubert" and tok.config.feature_layer == 1
    units = [tok.encode(w) for w in wavs]
    for w, u in zip(wavs, units, strict=True):
        assert u.shape == (math.ceil(len(w) / 320),) and int(u.min()) >= 0 and int(u.max()) < K
    tok.save_pretrained(tmp_path / "hubert")
    assert json.loads((tmp_path / "hubert" / "config.json").read_text())["kind"] == "hubert"
    again = UnitTokenizer.from_pretrained(tmp_path / "hubert")
    for w, u in zip(wavs, units, strict=True):
        assert torch.equal(again.encode(w), u)


def test_hubert_frame_count_and_chunking(monkeypatch):
    import codec.units

    cfg = tiny_hubert_config()
    tok = UnitTokenizer(UnitConfig(kind="hubert", num_units=4, feature_dim=32, feature_layer=2,
                                   hubert=hubert_arch(cfg)))
    tok.set_codebook(torch.randn(4, 32), torch.zeros(32), torch.ones(32))
    x = 0.1 * torch.randn(16000)
    for n in (1, 320, 321, 4799):
        assert tok.encode(x[:n]).shape == (math.ceil(n / 320),)
    monkeypatch.setattr(codec.units, "CHUNK_FRAMES", 7)
    assert tok.encode(x).shape == (50,)
    assert tok.features(x)[0].shape == (50, 32)


def test_span_mask_within_lengths():
    mask = span_mask([100, 40, 5], 100, prob=0.65, span=10, rng=np.random.default_rng(0))
    assert mask.shape == (3, 100)
    assert 0.3 < float(mask[0].float().mean()) < 0.9
    assert not bool(mask[1, 40:].any()) and not bool(mask[2, 5:].any())
    assert bool(mask[2, :5].all())  # a row shorter than a span is masked whole


def test_purity_metrics_on_hand_made_labels():
    phones = np.array(list("aabbbccdda") * 30)
    perfect = np.array([{"a": 7, "b": 3, "c": 9, "d": 0}[p] for p in phones])
    m = purity_metrics(perfect, phones)
    assert m["phone_purity"] == pytest.approx(1.0) and m["cluster_purity"] == pytest.approx(1.0)
    assert m["pnmi"] == pytest.approx(1.0) and m["n_frames"] == len(phones)
    finer = perfect * 2 + np.arange(len(phones)) % 2  # every phone split over two units
    m = purity_metrics(finer, phones)
    assert m["phone_purity"] == pytest.approx(1.0) and m["pnmi"] == pytest.approx(1.0)
    assert m["cluster_purity"] < 0.75
    rng = np.random.default_rng(0)
    m = purity_metrics(rng.integers(0, 20, 50000), rng.integers(0, 30, 50000))
    assert m["pnmi"] < 0.01
    assert m["phone_purity"] < 0.1 and m["cluster_purity"] < 0.1
    with pytest.raises(ValueError):
        purity_metrics(np.zeros(3), np.zeros(4))


def test_phone_labelled_set_aligned(mfcc_tok):
    assert "mbrola" in available_engines(), "mbrola is not installed (make setup installs it)"
    labelled = phone_labelled_set(2, voices=("us1", "es1"), seed=3)
    assert len(labelled) == 2
    for (wav, labels), lang in zip(labelled, ("en", "es"), strict=True):
        assert wav.dtype == np.float32 and len(wav) > 8000
        assert len(labels) == math.ceil(len(wav) / 320)
        speech = [y for y in labels if y != "sil"]
        assert len(speech) > 0.6 * len(labels) and all(y.startswith(f"{lang}:") for y in speech)
        assert labels[-1] == "sil"  # espeak ends every sentence with a pause
    q = unit_quality(mfcc_tok, labelled)
    assert 0.0 < q["pnmi"] < 1.0 and q["n_frames"] == sum(len(y) for _, y in labelled)


@pytest.mark.parametrize("bad", [
    np.zeros(0, dtype=np.float32),
    np.zeros((2, 0), dtype=np.float32),
    np.array([0.0, np.nan, 0.1], dtype=np.float32),
    torch.tensor([0.0, float("inf")]),
    np.zeros((1, 2, 320), dtype=np.float32),
    np.zeros(320, dtype=np.int16),
    [0.0, 0.1],
])
def test_bad_input_raises_audio_input_error(mfcc_tok, bad):
    with pytest.raises(AudioInputError):
        mfcc_tok.encode(bad)


def test_absurd_sample_rate_and_bad_directory(mfcc_tok, tmp_path):
    with pytest.raises(AudioInputError, match="sample rate"):
        mfcc_tok.encode(np.zeros(320, dtype=np.float32), sample_rate=10)
    with pytest.raises(FileNotFoundError):
        UnitTokenizer.from_pretrained(tmp_path / "nothing")


def test_fit_codebook_rejects_too_few_frames(wavs):
    tok = UnitTokenizer(UnitConfig(kind="mfcc", num_units=500, feature_dim=39))
    with pytest.raises(ValueError, match="cannot make"):
        fit_codebook(tok, codebook_features(tok, [wavs[0][:3200]]))


def test_cli_smoke(wavs, tmp_path, capsys):
    import soundfile as sf

    from training import train_units, unit_quality

    corpus = tmp_path / "corpus"
    (corpus / "wavs").mkdir(parents=True)
    with open(corpus / "manifest.jsonl", "w") as f:
        for i, (w, (text, lang)) in enumerate(zip(wavs, SENTENCES, strict=True)):
            sf.write(corpus / "wavs" / f"{i}.wav", w, 16000, subtype="PCM_16")
            f.write(json.dumps({"id": str(i), "path": f"wavs/{i}.wav", "text": text, "lang": lang,
                                "split": "train"}) + "\n")
    out = tmp_path / "units"
    train_units.main(["--corpus", str(corpus), "--out", str(out), "--steps", "3", "--log-every", "1",
                      "--mfcc-clusters", "8", "--hubert-clusters", "8", "--hidden", "32", "--layers", "2",
                      "--heads", "2", "--conv-dim", "16", "--threads", "1"])
    for kind in ("mfcc", "hubert"):
        assert UnitTokenizer.from_pretrained(out / kind).kind == kind
    assert (out / "hubert_training.png").stat().st_size > 0
    assert len(json.loads((out / "training.json").read_text())["history"]) == 3
    if "mbrola" in available_engines():
        capsys.readouterr()
        unit_quality.main(["--units", str(out / "mfcc"), str(out / "hubert"), "--sentences", "2"])
        table = capsys.readouterr().out
        assert "PNMI" in table and str(out / "hubert") in table


def test_shipped_units_load_in_one_line_and_track_phones() -> None:
    """Every shipped unit tokenizer loads with one call; their units carry phone information (PNMI well above
    that of the same units shuffled across frames)."""
    import codec
    from training.unit_quality import phone_labelled_set, unit_quality

    labelled = phone_labelled_set(12, seed=7)
    for kind in ("mfcc", "hubert", "conformer", "phone"):
        tok = codec.load_units(kind=kind)
        assert tok.kind == kind and tok.frame_rate == 50
        if kind == "phone":  # CTC decisions are blank on most frames: judged by phone error rate (test below)
            continue
        q = unit_quality(tok, labelled)
        assert q["pnmi"] > q["pnmi_chance"] + 0.1, (kind, q)
    assert codec.load_units().kind == "mfcc"
    with pytest.raises(ValueError, match="kind"):
        codec.load_units(kind="wav2vec")


def _corpus(tmp_path, wavs, name="corpus", keep=range(len(SENTENCES))):
    """The six sentences (or those in ``keep``) as a manifest corpus: all in train, the first two again in valid."""
    import soundfile as sf

    corpus = tmp_path / name
    (corpus / "wavs").mkdir(parents=True)
    with open(corpus / "manifest.jsonl", "w") as f:
        for n, i in enumerate(keep):
            w, (text, lang) = wavs[i], SENTENCES[i]
            sf.write(corpus / "wavs" / f"{i}.wav", w, 16000, subtype="PCM_16")
            for split in ("train", "valid") if n < 2 else ("train",):
                f.write(json.dumps({"id": f"{split}{i}", "path": f"wavs/{i}.wav", "text": text, "lang": lang,
                                    "duration": len(w) / 16000, "split": split}) + "\n")
    return corpus


def _tone(hz: float, seconds: float = 1.0) -> np.ndarray:
    t = np.arange(int(seconds * 16000)) / 16000
    return (0.3 * np.sin(2 * np.pi * hz * t)).astype(np.float32)


def test_speed_perturbation_resamples_tempo_and_pitch_within_the_length_limits(wavs):
    from training.augment import AugmentConfig, augment_waveform, speed_perturb

    x = wavs[0].astype(np.float32) / 32768.0
    for factor in (0.9, 1.1):
        y = speed_perturb(x, factor)
        assert y.dtype == np.float32 and abs(len(y) - len(x) / factor) <= 1  # 1.1: ~1/1.1 of the samples
    assert speed_perturb(x, 1.0) is x
    spectrum = np.abs(np.fft.rfft(speed_perturb(_tone(1000.0), 1.1)))
    assert abs(np.argmax(spectrum) * 16000 / (2 * (len(spectrum) - 1)) - 1100) < 5  # pitch rises with tempo
    cfg = AugmentConfig(speeds=(0.9, 1.0, 1.1))
    assert cfg.max_stretch == pytest.approx(1 / 0.9)
    draws = [augment_waveform(wavs[0], cfg, np.random.default_rng(s)) for s in range(16)]
    assert {len(d) for d in draws} == {len(x), round(len(x) / 0.9), round(len(x) / 1.1)}
    again = [augment_waveform(wavs[0], cfg, np.random.default_rng(s)) for s in range(16)]
    assert all(np.array_equal(a, b) for a, b in zip(draws, again, strict=True))  # a seed fixes the draws
    # a factor that would leave the limits (--max-seconds; the frames CTC needs) is not drawn
    capped = [augment_waveform(wavs[0], cfg, np.random.default_rng(s), max_samples=len(x)) for s in range(8)]
    assert max(len(d) for d in capped) <= len(x)
    floored = [augment_waveform(wavs[0], cfg, np.random.default_rng(s), min_samples=len(x)) for s in range(8)]
    assert min(len(d) for d in floored) >= len(x)
    with pytest.raises(ValueError, match="speed"):
        AugmentConfig(speeds=(0.0,))


def test_vtlp_identity_and_direction_and_frequency_masks():
    from training.augment import AugmentConfig, augment_features, freq_mask, vtlp_warp

    feats = conformer_inputs(torch.from_numpy(_tone(1000.0)))  # [50, 240]: three 80-band frames per unit
    assert torch.equal(vtlp_warp(feats, 1.0), feats)
    peak = {a: int(vtlp_warp(feats, a).reshape(-1, 3, 80).mean((0, 1)).argmax()) for a in (0.9, 1.0, 1.1)}
    assert peak[0.9] < peak[1.0] < peak[1.1], peak  # alpha > 1: a shorter vocal tract, energy moves up
    up = vtlp_warp(feats, 1.1)
    assert up.shape == feats.shape and up.dtype == feats.dtype and torch.isfinite(up).all()

    masked = freq_mask(feats, 2, 27, np.random.default_rng(0)).reshape(-1, 3, 80)
    changed = (masked != feats.reshape(-1, 3, 80)).any(0)  # [3, 80]
    assert torch.equal(changed[0], changed[1]) and torch.equal(changed[0], changed[2])  # same bands, 3 frames
    assert 0 < int(changed[0].sum()) <= 2 * 27
    cfg = AugmentConfig(vtlp=0.1, freq_masks=2)
    a = augment_features(feats, cfg, np.random.default_rng(3))
    assert a.shape == feats.shape and a.dtype == torch.float32
    assert torch.equal(a, augment_features(feats, cfg, np.random.default_rng(3)))
    assert not torch.equal(a, augment_features(feats, cfg, np.random.default_rng(4)))


def test_noise_at_the_asked_snr_and_gain_without_clipping(wavs):
    from training.augment import AugmentConfig, add_noise, augment_waveform, colored_noise, random_gain

    x = wavs[2].astype(np.float32) / 32768.0
    for color in ("white", "pink"):
        for snr in (0.0, 10.0, 25.0):
            y = add_noise(x, snr, np.random.default_rng(1), color)
            assert y.shape == x.shape and y.dtype == np.float32
            measured = 10 * np.log10(np.mean(x.astype(np.float64) ** 2) / np.mean((y - x).astype(np.float64) ** 2))
            assert abs(measured - snr) < 0.5, (color, snr, measured)
        assert np.array_equal(add_noise(x, 10.0, np.random.default_rng(1), color),
                              add_noise(x, 10.0, np.random.default_rng(1), color))
    power = np.abs(np.fft.rfft(colored_noise(16000, "pink", np.random.default_rng(0)))) ** 2
    assert power[10:200].mean() > 10 * power[4000:8000].mean()  # pink: power ~ 1/f
    g = random_gain(x, 6.0, np.random.default_rng(0))
    ratio = float(np.max(np.abs(g)) / np.max(np.abs(x)))
    assert g.dtype == np.float32 and np.max(np.abs(g)) <= 1.0 and 10 ** (-6 / 20) - 1e-6 <= ratio <= 10 ** (6 / 20)
    cfg = AugmentConfig(noise_snr=(10.0, 20.0), gain_db=6.0)
    y = augment_waveform(wavs[2], cfg, np.random.default_rng(5))
    assert y.shape == x.shape and y.dtype == np.float32 and np.max(np.abs(y)) <= 1.0
    assert np.array_equal(y, augment_waveform(wavs[2], cfg, np.random.default_rng(5)))
    with pytest.raises(ValueError, match="noise_snr"):
        AugmentConfig(noise_snr=(20.0, 10.0))


def test_phonemize_gives_ipa_symbols_with_word_marks():
    from codec.word_phones import WORD, phonemize

    en, es = phonemize("the cat sat", "en"), phonemize("el perro", "es")
    assert en.count(WORD) == 2 and es.count(WORD) == 1
    assert "ˈ" not in en + es and "ˌ" not in en + es  # stress marks dropped
    assert "k" in en and "r" in es
    with pytest.raises(ValueError, match="language"):
        phonemize("bonjour", "fr")


def test_phone_ctc_finetune_learns_resumes_and_saves_units(wavs, hubert_run, tmp_path):
    from training import finetune_units

    init = fit_hubert_units(hubert_run.model, wavs, n_clusters=K, feature_layer=2).save_pretrained(tmp_path / "init")
    corpus, out = _corpus(tmp_path, wavs), tmp_path / "ctc"
    args = ["--corpus", str(corpus), "--out", str(out), "--init", str(init), "--lr", "3e-3", "--warmup", "5",
            "--batch-seconds", "6", "--eval-every", "20", "--clusters", str(K), "--kmeans-hours", "0.01",
            "--mask-prob", "0", "--threads", "1"]
    finetune_units.main([*args, "--steps", "40"])
    first = json.loads((out / "training.json").read_text())
    losses = [h["loss"] for h in first["history"][:2]]
    assert losses[1] < 0.8 * losses[0], losses  # CTC on the phones of six sentences: the loss falls
    assert first["steps"] == 40 and (out / "state" / "ctc_state.pt").is_file() and (out / "finetune.png").is_file()
    # a rerun with more steps resumes from the saved state (the first two records are kept as they were)
    finetune_units.main([*args, "--steps", "60"])
    second = json.loads((out / "training.json").read_text())
    assert second["steps"] == 60 and second["history"][:2] == first["history"][:2]
    tok = UnitTokenizer.from_pretrained(out / "units")
    assert tok.kind == "hubert" and tok.num_units == K and tok.config.info["finetuned"].startswith("phone CTC")
    units = tok.encode(torch.from_numpy(wavs[0].astype(np.float32)))
    assert units.shape == (math.ceil(len(wavs[0]) / 320),) and int(units.max()) < K
    # waveform augmentation on the raw-audio path (two steps); the log-mel ones need the Conformer
    aug = [*args[:3], str(tmp_path / "ctc-aug"), *args[4:], "--steps", "2", "--speed-perturb", "0.9,1.1",
           "--noise-snr", "20,30", "--gain-db", "6"]
    assert finetune_units.finetune(finetune_units.main_parser().parse_args(aug))["steps"] == 2
    with pytest.raises(ValueError, match="conformer"):
        finetune_units.main([*aug, "--vtlp", "0.1"])


def tiny_conformer_config(**overrides):
    return small_conformer_config(hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64, conv_kernel=5,
                                  **overrides)


def test_conformer_frame_contract_chunking_and_save_load(wavs, monkeypatch, tmp_path):
    import codec.units

    x = torch.from_numpy(wavs[0].astype(np.float32) / 32768.0)
    feats = conformer_inputs(x)  # three log-mel frames per 20 ms unit
    assert feats.shape == (math.ceil(len(x) / 320), 240) and torch.isfinite(feats).all()
    tok = fit_conformer_units(Wav2Vec2BertModel(tiny_conformer_config()), wavs, n_clusters=K, feature_layer=1)
    assert tok.kind == "conformer" and tok.config.feature_layer == 1 and "feature_layer=1" in repr(tok)
    for n in (1, 320, 321, 4799):
        assert tok.encode(x[:n]).shape == (math.ceil(n / 320),)
    units = [tok.encode(torch.from_numpy(w.astype(np.float32) / 32768.0)) for w in wavs]
    assert all(int(u.min()) >= 0 and int(u.max()) < K for u in units)
    assert len({int(v) for u in units for v in u}) > K // 2  # the codebook is used, not collapsed to a few units
    tok.save_pretrained(tmp_path / "conformer")
    again = UnitTokenizer.from_pretrained(tmp_path / "conformer")
    for w, u in zip(wavs, units, strict=True):
        assert torch.equal(again.encode(torch.from_numpy(w.astype(np.float32) / 32768.0)), u)
    monkeypatch.setattr(codec.units, "CHUNK_FRAMES", 7)  # long input is encoded in chunks, same frame count
    assert again.features(x)[0].shape == (math.ceil(len(x) / 320), 32)
    with pytest.raises(ValueError, match="feature_layer"):
        UnitConfig(kind="conformer", num_units=4, feature_dim=32, feature_layer=3,
                   conformer=conformer_arch(tiny_conformer_config()))


def test_conformer_phone_ctc_from_scratch_learns_and_saves_units(wavs, tmp_path):
    from training import finetune_units

    corpus, out = _corpus(tmp_path, wavs), tmp_path / "conformer-ctc"
    args = ["--arch", "conformer", "--hidden", "32", "--layers", "2", "--corpus", str(corpus), "--out", str(out),
            "--lr", "3e-3", "--warmup", "5", "--batch-seconds", "6", "--eval-every", "20", "--clusters", str(K),
            "--kmeans-hours", "0.01", "--mask-prob", "0", "--threads", "1", "--steps", "40"]
    finetune_units.main(args)
    report = json.loads((out / "training.json").read_text())
    losses = [h["loss"] for h in report["history"][:2]]
    assert losses[1] < 0.8 * losses[0], losses  # the loss falls
    tok = UnitTokenizer.from_pretrained(out / "units")
    assert tok.kind == "conformer" and tok.num_units == K and tok.config.info["init"] == "scratch"
    units = tok.encode(torch.from_numpy(wavs[1].astype(np.float32) / 32768.0))
    assert units.shape == (math.ceil(len(wavs[1]) / 320),) and int(units.max()) < K


def test_phone_units_are_the_ctc_heads_decisions_and_survive_save_load(wavs, tmp_path):
    from training.finetune_units import PhoneCTC, phone_tokenizer

    torch.manual_seed(0)
    model = PhoneCTC(Wav2Vec2BertModel(tiny_conformer_config()), num_symbols=6).eval()
    with torch.no_grad():
        model.head.bias.copy_(torch.tensor([0.0, 0.3, -0.2, 0.1, 0.0, -0.1]))
    symbols = ["<blank>", "a", "b", "|", "k", "s"]
    tok = phone_tokenizer(model, symbols)
    assert tok.kind == "phone" and tok.num_units == 6 and tok.config.phones == symbols
    tok.save_pretrained(tmp_path / "phone")
    again = UnitTokenizer.from_pretrained(tmp_path / "phone")
    for w in wavs:
        x = torch.from_numpy(w.astype(np.float32) / 32768.0)
        feats = conformer_inputs(x)[None]  # [1, F, 240]
        with torch.no_grad():  # the fp16-rounded copy the tokenizer holds, run as the CTC model runs it
            ref = tok.conformer(input_features=feats).last_hidden_state[0] @ model.head.weight.T + model.head.bias
        units = tok.encode(x)
        assert units.shape == (math.ceil(len(x) / 320),)
        assert torch.equal(units, ref.argmax(-1))
        assert torch.equal(again.encode(x), units)
    with pytest.raises(ValueError, match="phones"):
        UnitConfig(kind="phone", num_units=4, feature_dim=32, feature_layer=2,
                   conformer=conformer_arch(tiny_conformer_config()), phones=["<blank>", "a"])
    with pytest.raises(ValueError, match="last layer"):
        UnitConfig(kind="phone", num_units=2, feature_dim=32, feature_layer=1,
                   conformer=conformer_arch(tiny_conformer_config()), phones=["<blank>", "a"])
    with pytest.raises(ValueError, match="phone"):
        fit = fit_conformer_units(Wav2Vec2BertModel(tiny_conformer_config()), wavs[:1], n_clusters=K,
                                  feature_layer=1)
        fit.set_phone_head(torch.zeros(K, 32), torch.zeros(K))


def test_phone_units_from_a_saved_conformer(wavs, tmp_path, monkeypatch):
    from training import finetune_units

    corpus = _corpus(tmp_path, wavs)
    base = fit_conformer_units(Wav2Vec2BertModel(tiny_conformer_config()), wavs, n_clusters=K, feature_layer=1)
    base.save_pretrained(tmp_path / "base")
    out = tmp_path / "phone-ctc"
    args = ["--arch", "conformer", "--init", str(tmp_path / "base"), "--phone-units", "--corpus", str(corpus),
            "--out", str(out), "--lr", "3e-3", "--warmup", "5", "--batch-seconds", "6", "--eval-every", "20",
            "--mask-prob", "0", "--threads", "1", "--steps", "40"]
    finetune_units.main(args)
    report = json.loads((out / "training.json").read_text())
    losses = [h["loss"] for h in report["history"][:2]]
    assert losses[1] < 0.8 * losses[0], losses
    tok = UnitTokenizer.from_pretrained(out / "units")
    assert tok.kind == "phone" and tok.config.phones == report["symbols"]
    assert tok.config.info["init"] == str(tmp_path / "base")
    units = tok.encode(torch.from_numpy(wavs[1].astype(np.float32) / 32768.0))
    assert units.shape == (math.ceil(len(wavs[1]) / 320),) and int(units.max()) < tok.num_units
    # continued from the saved phone units with every training augmentation on (the recommended flags)
    calls = {"wave": 0, "feats": 0}

    def counted(name, fn):
        def wrapper(*a, **kw):
            calls[name] += 1
            return fn(*a, **kw)
        return wrapper

    monkeypatch.setattr(finetune_units, "augment_waveform", counted("wave", finetune_units.augment_waveform))
    monkeypatch.setattr(finetune_units, "augment_features", counted("feats", finetune_units.augment_features))
    # two corpora at once (English only / mostly Spanish): together they give what the one corpus gave
    english, spanish = _corpus(tmp_path, wavs, "en", (0, 1, 3, 5)), _corpus(tmp_path, wavs, "es", (2, 4))
    again = ["--arch", "conformer", "--init", str(out / "units"), "--phone-units", "--corpus", f"{english},{spanish}",
             "--lr", "1e-4", "--warmup", "1", "--batch-seconds", "6", "--eval-every", "1", "--mask-prob", "0.05",
             "--threads", "1", "--speed-perturb", "0.9,1.0,1.1", "--vtlp", "0.1", "--noise-snr", "15,40",
             "--noise-prob", "0.5", "--gain-db", "6", "--freq-masks", "2"]
    second = finetune_units.finetune(finetune_units.main_parser().parse_args(
        [*again, "--out", str(tmp_path / "again"), "--steps", "3"]))
    assert second["args"]["speed_perturb"] == (0.9, 1.0, 1.1) and second["args"]["noise_snr"] == (15.0, 40.0)
    assert 3 <= calls["wave"] == calls["feats"] <= 3 * 6  # every training utterance, once per step it is in
    assert all(math.isfinite(h["loss"]) for h in second["history"])
    assert second["history"][0]["valid_per"] <= report["history"][-1]["valid_per"] + 0.05  # the head came along
    assert second["symbols"] == report["symbols"]
    assert UnitTokenizer.from_pretrained(tmp_path / "again" / "units").config.info["corpus"] == f"{english},{spanish}"
    # one corpus short of some phones: the recognizer keeps its inventory (unit ids stay), not the corpus's
    only_en = finetune_units.finetune(finetune_units.main_parser().parse_args(
        [*again[:5], "--corpus", str(english), *again[7:], "--out", str(tmp_path / "en-only"), "--steps", "1"]))
    heard = {p for phones in json.loads((tmp_path / "en-only" / "phones.json").read_text()).values() for p in phones}
    assert only_en["symbols"] == report["symbols"] and not set(report["symbols"][1:]) <= heard
    # killed after its second checkpoint and rerun: the augmentation draws go on as in the uninterrupted run
    class KilledError(Exception):
        pass

    saves, atomic_write = [], finetune_units.atomic_write

    def killed_after_two(path, write):
        atomic_write(path, write)
        saves.append(path)
        if len(saves) == 2:
            raise KilledError

    resumed = [*again, "--out", str(tmp_path / "resumed"), "--steps", "3"]
    monkeypatch.setattr(finetune_units, "atomic_write", killed_after_two)
    with pytest.raises(KilledError):
        finetune_units.finetune(finetune_units.main_parser().parse_args(resumed))
    monkeypatch.setattr(finetune_units, "atomic_write", atomic_write)
    third = finetune_units.finetune(finetune_units.main_parser().parse_args(resumed))
    assert [(h["loss"], h["valid_per"]) for h in third["history"]] == \
        [(h["loss"], h["valid_per"]) for h in second["history"]]


def test_shipped_phone_units_read_the_phones_of_held_out_voices(held_out_speech) -> None:
    """The shipped ``"phone"`` units, collapsed with blanks dropped, are the espeak-ng phones of new sentences
    spoken by voices held out of training, up to a phone error rate far below that of a guess."""
    from rapidfuzz.distance import Levenshtein

    import codec
    from codec.word_phones import phonemize

    tok = codec.load_units(kind="phone")
    assert tok.config.phones is not None and tok.config.phones[0] == "<blank>"
    sentences = [("en", "The children played in the park after school."), ("en", "Please call me tomorrow morning."),
                 ("es", "El tren sale de la estación a las nueve."), ("es", "Mi hermana vive cerca del mar.")]
    errors = total = 0
    for (lang, text), wav in zip(sentences, held_out_speech(sentences), strict=True):
        units = tok.encode(wav, collapse=True).tolist()
        hyp = [tok.config.phones[u] for u in units if u != 0]
        ref = [p for p in phonemize(text, lang) if p in tok.config.phones]
        errors += Levenshtein.distance(hyp, ref)
        total += len(ref)
    assert errors / total < 0.4, errors / total  # measured 0.16 on the valid split
