"""The unit phone-error measure of benchmarks/alm_reading.py on hand-made units."""

import numpy as np
import pytest

from benchmarks.alm_reading import unit_phone_errors

INVENTORY = ["<blank>", "a", "b", "k"]
RECORDS = {"u1": {"split": "test", "lang": "en", "speaker": "v1", "text": "ab"},
           "u2": {"split": "test", "lang": "en", "speaker": "v2", "text": "ka"}}
TABLE = {"en\tab": ["a", "b"], "en\tka": ["k", "a", "?"]}  # "?" is outside the inventory: not scored


def test_unit_phone_errors_counts_edits_per_group():
    units = {"u1": np.array([0, 1, 1, 0, 0, 2, 2, 0], dtype=np.uint16),  # a _ b: perfect (repeats and blanks go)
             "u2": np.array([3, 3, 0, 2], dtype=np.uint16)}  # k b against k a: one substitution
    per = unit_phone_errors(units, RECORDS, TABLE, INVENTORY)
    assert per["test/v1"]["per"] == 0.0
    assert per["test/v2"] == pytest.approx({"phones": 2, "per": 0.5, "sub": 0.5, "del": 0.0, "ins": 0.0})
    assert per["test"]["phones"] == 4 and per["test"]["per"] == pytest.approx(0.25)
    assert per["test/en"] == per["test"]


def test_unit_phone_errors_deletions_and_insertions():
    units = {"u1": np.array([1], dtype=np.uint16),  # b deleted
             "u2": np.array([3, 0, 1, 0, 2], dtype=np.uint16)}  # b inserted
    per = unit_phone_errors(units, RECORDS, TABLE, INVENTORY)
    assert per["test/v1"]["del"] == 0.5 and per["test/v2"]["ins"] == 0.5


def test_unit_phone_errors_all_blank_units_are_all_deletions():
    per = unit_phone_errors({"u1": np.zeros(5, dtype=np.uint16)}, RECORDS, TABLE, INVENTORY)
    assert per["test"] == pytest.approx({"phones": 2, "per": 1.0, "sub": 0.0, "del": 1.0, "ins": 0.0})


def test_unit_phone_errors_script_scores_a_tokenizer_per_voice(tmp_path):
    """benchmarks/unit_phone_errors.py: a saved 'phone' tokenizer scored on a two-utterance corpus, per voice."""
    import json

    import soundfile as sf

    from benchmarks.unit_phone_errors import main
    from tests.test_phone_sim import _phone_units

    _phone_units().save_pretrained(tmp_path / "units")
    rng = np.random.default_rng(0)
    lines = []
    for n, (speaker, split) in enumerate([("v1", "test"), ("v2", "test"), ("v3", "train")]):
        sf.write(tmp_path / f"u{n}.wav", (0.1 * rng.standard_normal(16000)).astype(np.float32), 16000)
        lines.append(json.dumps({"id": f"u{n}", "path": f"u{n}.wav", "text": "la mesa", "lang": "es",
                                 "speaker": speaker, "split": split, "tasks": ["asr"]}))
    (tmp_path / "manifest.jsonl").write_text("\n".join(lines) + "\n")
    per = main(["--corpus", str(tmp_path), "--units", str(tmp_path / "units"), "--out", str(tmp_path / "r")])
    assert set(per) == {"test", "test/es", "test/v1", "test/v2"}  # the train utterance is not scored
    assert per["test"]["phones"] == 2 * per["test/v1"]["phones"] > 0 and per["test"]["per"] >= 0.0
    assert "| test/v1 |" in (tmp_path / "r.md").read_text() and (tmp_path / "phones.json").is_file()
