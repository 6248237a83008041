"""The synthetic corpus: speaker catalogue, recipe, engines, resumable synthesis, manifest and loader."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from codec.audio import SAMPLE_RATE
from training.data import ManifestError, load_corpus, read_manifest, synthesize_corpus
from training.data import synth as synth_mod
from training.data.engines import EngineError, speaker_available, synthesize
from training.data.recipe import estimate_seconds, plan_corpus, sentence_split
from training.data.voices import REAL_SPEAKERS, SPEAKERS, by_id, speakers

# --- speaker catalogue -------------------------------------------------------------------------------------


def test_catalogue_has_enough_distinct_held_out_and_bilingual_speakers() -> None:
    persons = {s.person for s in SPEAKERS}
    assert len(persons) >= 30
    held_en = {s.person for s in speakers(lang="en", split="test")}
    held_es = {s.person for s in speakers(lang="es", split="test")}
    assert len(held_en) >= 7 and len(held_es) >= 4
    bilingual = [s for s in SPEAKERS if s.speaks("en") and s.speaks("es")]
    assert len(bilingual) >= 10
    # Copies of one person (flite's and RHVoice's slt) sit on one side of the split.
    assert {s.split for s in SPEAKERS if s.person == "slt"} == {"train"}
    assert by_id("asterisk-en") in REAL_SPEAKERS
    with pytest.raises(KeyError, match="nope"):
        by_id("nope")


@pytest.mark.parametrize("spk", SPEAKERS, ids=lambda s: s.id)
def test_every_catalogue_voice_speaks(spk) -> None:
    if not speaker_available(spk):
        pytest.fail(f"{spk.id} is not installed: run scripts/setup_system.sh as root")
    text = {"en": "The quick brown fox jumps over the lazy dog.",
            "es": "El perro de mi hermana come mucha carne en la calle."}
    for lang in spk.langs:
        wav = synthesize(spk, text[lang], lang)
        assert wav.dtype == np.float32 and wav.ndim == 1
        seconds = len(wav) / SAMPLE_RATE
        assert 1.0 < seconds < 8.0, f"{spk.id}/{lang}: {seconds:.2f} s for a ten-word sentence"
        assert np.abs(wav).max() <= 1.0
        # No holes: a missing diphone becomes a long run of silence inside the sentence.
        frames = wav[: len(wav) // 160 * 160].reshape(-1, 160)
        silent = np.sqrt((frames**2).mean(axis=1)) < 1e-3
        longest = max((len(r) for r in "".join("1" if s else "0" for s in silent).split("0")), default=0)
        assert longest * 0.01 < 0.6, f"{spk.id}/{lang}: {longest * 10} ms silent gap"


def test_engine_errors_are_clear() -> None:
    spk = by_id("pico-es-es")
    with pytest.raises(EngineError, match="does not speak"):
        synthesize(spk, "hello", "en")
    with pytest.raises(EngineError, match="empty text"):
        synthesize(by_id("espeak-m1"), "  - ", "en")
    with pytest.raises(EngineError, match="recording"):
        synthesize(by_id("asterisk-en"), "hello", "en")


# --- the recipe --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def plan():
    return plan_corpus(1.0, seed=3)


def test_plan_is_deterministic_and_seeded(plan) -> None:
    again = plan_corpus(1.0, seed=3)
    assert [u.to_json() for u in again] == [u.to_json() for u in plan]
    other = plan_corpus(1.0, seed=4)
    assert [u.text for u in other] != [u.text for u in plan]


def test_plan_splits_hold_out_speakers_and_sentences(plan) -> None:
    by_split: dict[str, list] = {}
    for u in plan:
        by_split.setdefault(u.split, []).append(u)
    assert set(by_split) == {"train", "valid", "test"}
    train_spk = {u.speaker for u in by_split["train"]}
    test_spk = {u.speaker for u in by_split["test"]}
    assert not train_spk & test_spk
    assert all(by_id(s).split == "test" for s in test_spk)
    assert not {u.text for u in by_split["train"]} & {u.text for u in by_split["test"]}
    assert sentence_split("Hello there.") == sentence_split("hello there.")


def test_plan_covers_tasks_languages_and_speakers(plan) -> None:
    tasks = Counter(t for u in plan for t in u.tasks)
    assert {"asr", "tts", "continue", "s2st", "slu"} <= set(tasks)
    assert {u.lang for u in plan} == {"en", "es"}
    assert len({u.speaker for u in plan}) >= 30
    est_hours = sum(estimate_seconds(u.text) for u in plan) / 3600
    assert 0.8 < est_hours < 1.3
    # Translation pairs: both sides planned, opposite languages, a bilingual voice speaks most pairs.
    pairs: dict[str, list] = {}
    for u in plan:
        if "pair_id" in u.fields and u.source != "asterisk":
            pairs.setdefault(u.fields["pair_id"], []).append(u)
    assert pairs and all(sorted(x.lang for x in p) == ["en", "es"] for p in pairs.values())
    same_voice = sum(p[0].speaker == p[1].speaker for p in pairs.values()) / len(pairs)
    assert same_voice > 0.5
    # SLU: spans point at the slot values in the spoken text.
    for u in plan:
        if "intent" in u.fields:
            for name, start, end in u.fields["spans"]:
                assert u.text[start:end] == u.fields["slots"][name]


def test_plan_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="hours"):
        plan_corpus(0, seed=0)
    with pytest.raises(ValueError, match="langs"):
        plan_corpus(0.1, seed=0, langs=("fr",))
    only_en = plan_corpus(0.05, seed=0, langs=("en",))
    assert {u.lang for u in only_en} == {"en"} and not any("s2st" in u.tasks for u in only_en)


def test_plan_of_chosen_engines_gives_them_the_hours() -> None:
    engines = ("mbrola", "flite", "pico", "rhvoice")
    plan = plan_corpus(1.0, seed=3, engines=engines)
    assert {by_id(u.speaker).engine for u in plan} == set(engines)  # every one used, nothing else
    assert not any(u.source == "asterisk" for u in plan)  # the real prompts come only with "asterisk"
    est_hours = sum(estimate_seconds(u.text) for u in plan) / 3600
    assert 0.8 < est_hours < 1.3
    # no bilingual voice among these engines: each pair is spoken by two voices, and still held out by split
    pairs: dict[str, list] = {}
    for u in plan:
        if "pair_id" in u.fields:
            pairs.setdefault(u.fields["pair_id"], []).append(u)
    assert pairs and all(p[0].speaker != p[1].speaker for p in pairs.values())
    assert all(by_id(u.speaker).split == "test" for u in plan if u.split == "test")
    assert {u.split for u in plan} == {"train", "valid", "test"}
    assert plan_corpus(1.0, seed=3, engines=tuple(reversed(engines))) == plan  # order of the names is irrelevant
    with pytest.raises(ValueError, match="unknown engine"):
        plan_corpus(0.1, seed=0, engines=("festival",))
    with pytest.raises(RuntimeError, match="flite.*'es'"):  # flite speaks no Spanish
        plan_corpus(0.1, seed=0, engines=("flite",))
    assert {u.lang for u in plan_corpus(0.1, seed=0, langs=("en",), engines=("flite",))} == {"en"}


# --- synthesis, manifest, loader ---------------------------------------------------------------------------


def test_tiny_corpus_manifest_and_audio(tiny_corpus: Path) -> None:
    records = read_manifest(tiny_corpus)
    kinds = Counter(t for r in records for t in r["tasks"])
    assert {"asr", "tts", "continue", "s2st", "slu"} <= set(kinds)
    assert {r["lang"] for r in records} == {"en", "es"}
    for r in records[:20]:
        info = sf.info(r["path"])
        assert info.samplerate == SAMPLE_RATE and info.channels == 1
        assert abs(info.frames / SAMPLE_RATE - r["duration"]) < 1e-2
    by_id_ = {r["id"]: r for r in records}
    for r in records:
        if "translation_id" in r:
            partner = by_id_[r["translation_id"]]
            assert partner["translation"] == r["text"] and partner["lang"] != r["lang"]
        if "continue" in r["tasks"]:
            assert 0 < r["continue_at"] < r["duration"]
        if "slu" in r["tasks"]:
            assert r["intent"] and all(r["text"][s:e] == r["slots"][n] for n, s, e in r["spans"])
    summary = json.loads((tiny_corpus / "summary.json").read_text())
    assert summary["utterances"] == len(records)
    assert summary["test_only_speakers"]
    assert not list(tiny_corpus.rglob(".*.tmp*"))


def test_load_corpus_gives_decodable_audio(tiny_corpus: Path) -> None:
    ds = load_corpus(tiny_corpus)
    assert {"train", "test"} <= set(ds)
    row = ds["train"][0]
    samples = row["audio"].get_all_samples()
    assert samples.sample_rate == SAMPLE_RATE
    assert abs(samples.data.shape[-1] / SAMPLE_RATE - row["duration"]) < 1e-2
    slu = ds["train"].filter(lambda r: r["intent"] is not None)
    if len(slu):
        assert isinstance(json.loads(slu[0]["slots"]), dict)


def _utterances_in_order(corpus: Path) -> list[str]:
    return [json.loads(line)["id"] for line in (corpus / "manifest.jsonl").read_text().splitlines()]


def test_interrupted_synthesis_resumes_to_the_same_corpus(tmp_path: Path, monkeypatch) -> None:
    ref = tmp_path / "ref"
    synthesize_corpus(ref, hours=0.01, seed=5, progress=False)
    n_total = len(_utterances_in_order(ref))
    assert n_total >= 6

    # Interrupt after 4 utterances (as Ctrl-C or a crash would), then tear the last progress line.
    broken = tmp_path / "broken"
    real_render = synth_mod._render
    calls = {"n": 0}

    def flaky(utt, out_dir):
        calls["n"] += 1
        if calls["n"] > 4:
            raise KeyboardInterrupt
        return real_render(utt, out_dir)

    monkeypatch.setattr(synth_mod, "_render", flaky)
    with pytest.raises(KeyboardInterrupt):
        synthesize_corpus(broken, hours=0.01, seed=5, progress=False)
    monkeypatch.setattr(synth_mod, "_render", real_render)
    assert not (broken / "manifest.jsonl").exists()
    progress = (broken / "progress.jsonl").read_bytes()
    assert progress.count(b"\n") == 4
    (broken / "progress.jsonl").write_bytes(progress + b'{"id": "mono-en-0000')  # a torn append

    report = synthesize_corpus(broken, hours=0.01, seed=5, progress=False)
    assert report.skipped_done == 4
    assert _utterances_in_order(broken) == _utterances_in_order(ref)
    a = read_manifest(ref)
    b = read_manifest(broken)
    assert [(r["text"], r["speaker"], r["duration"]) for r in a] == [(r["text"], r["speaker"], r["duration"])
                                                                       for r in b]
    wav_a, _ = sf.read(a[5]["path"])
    wav_b, _ = sf.read(b[5]["path"])
    np.testing.assert_array_equal(wav_a, wav_b)
    with pytest.raises(ValueError, match="different|not"):
        synthesize_corpus(broken, hours=0.02, seed=5, progress=False)


def test_user_corpus_in_manifest_form(tmp_path: Path) -> None:
    t = np.arange(22050) / 22050
    sf.write(tmp_path / "a.flac", 0.3 * np.sin(2 * np.pi * 220 * t), 22050)
    sf.write(tmp_path / "b.wav", 0.3 * np.sin(2 * np.pi * 330 * t), 8000)
    lines = [{"id": "a", "path": "a.flac", "text": "hello world", "lang": "en"},
             {"id": "b", "path": str(tmp_path / "b.wav"), "text": "hola", "lang": "es", "split": "test"}]
    (tmp_path / "manifest.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    ds = load_corpus(tmp_path)
    assert set(ds) == {"train", "test"}
    a = ds["train"][0]["audio"].get_all_samples()
    assert a.sample_rate == SAMPLE_RATE and abs(a.data.shape[-1] - SAMPLE_RATE) < 50


@pytest.mark.parametrize(("content", "message"), [
    ('{"id": "a", "path": "x.wav", "text": "t"}\n', "missing required key"),
    ('{"id": "a", "path": "missing.wav", "text": "t", "lang": "en"}\n', "does not exist"),
    ("not json\n", "not valid JSON"),
    ("", "empty"),
])
def test_bad_manifests_are_named(tmp_path: Path, content: str, message: str) -> None:
    (tmp_path / "manifest.jsonl").write_text(content)
    with pytest.raises(ManifestError, match=message):
        read_manifest(tmp_path)


def test_missing_manifest(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="alm data synth"):
        load_corpus(tmp_path)


def test_real_prompts_have_one_transcript_per_recording() -> None:
    # Debian's Spanish list names digits/0 twice ("cero", then "diez"): the first is kept, so a large plan that
    # takes every real prompt still has unique utterance ids
    from training.data.real import asterisk_prompts
    from training.data.recipe import plan_corpus

    for lang in ("en", "es"):
        keys = [p.key for p in asterisk_prompts(lang)]
        assert keys and len(keys) == len(set(keys))
    zero = [p for p in asterisk_prompts("es") if p.key == "digits/0"]
    assert [p.text for p in zero] == ["cero"]
    ids = [u.id for u in plan_corpus(10, 0, ("en", "es"))]
    assert len(ids) == len(set(ids))
