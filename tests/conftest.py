"""Shared fixtures: a tiny synthesized corpus made once per test session (seconds, not minutes)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

TINY_HOURS = 0.03  # about 100 s of speech: every task kind and both splits' speakers appear


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from training.data import synthesize_corpus

    logging.getLogger("training").setLevel(logging.WARNING)
    out = tmp_path_factory.mktemp("corpus")
    synthesize_corpus(out, hours=TINY_HOURS, seed=0, jobs=2, progress=False)
    return out
