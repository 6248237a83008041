"""The house rules of DESIGN.md, checked on the source: who may import whom."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return {n.split(".")[0] for n in names}


def _package_imports(package: str, exclude: tuple[str, ...] = ()) -> dict[str, set[str]]:
    files = sorted((ROOT / package).rglob("*.py"))
    assert files, f"no sources under {package}/"
    return {str(p.relative_to(ROOT)): _imports(p) for p in files if p.name not in exclude}


@pytest.mark.parametrize(("package", "forbidden", "exclude"), [
    # alm/cli.py is the one composition root and may import the baselines lazily.
    ("alm", {"legacy_seq2seq", "deepspeed"}, ("cli.py",)),
    ("codec", {"legacy_seq2seq", "alm", "safety", "training", "deepspeed"}, ()),
    ("safety", {"legacy_seq2seq", "training", "deepspeed"}, ()),
    ("legacy_seq2seq", {"alm", "deepspeed"}, ()),
])
def test_package_does_not_import(package: str, forbidden: set[str], exclude: tuple[str, ...]) -> None:
    bad = {f: sorted(imps & forbidden) for f, imps in _package_imports(package, exclude).items() if imps & forbidden}
    assert not bad, f"{package}/ imports what the design forbids: {bad}"


def test_importing_alm_and_codec_does_not_load_legacy() -> None:
    code = "import sys, alm, codec; print('legacy_seq2seq' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "False"


def test_a_forbidden_import_is_caught(tmp_path: Path) -> None:
    # The check itself must be able to fail.
    p = tmp_path / "m.py"
    p.write_text("def f():\n    from legacy_seq2seq.las import LAS\n    return LAS\n")
    assert "legacy_seq2seq" in _imports(p)
