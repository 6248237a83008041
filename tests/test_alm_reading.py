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
