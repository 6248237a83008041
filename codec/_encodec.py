"""Access to the ``encodec`` package's building blocks without its top-level import.

``encodec/__init__.py`` imports ``encodec.model``, which imports ``torchaudio`` for file helpers we never use;
no torchaudio release matches our torch, and a resolver-installed one breaks ``transformers`` (see the README's
dependency section). The modules we build on (SEANet encoder/decoder, the residual vector quantizer with EMA
codebooks, k-means init and dead-code replacement) are plain torch. So we register a bare package object for
``encodec`` that points at the installed files, and import only those submodules; nothing of encodec's is copied.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types
from typing import Any


def _bare_package() -> None:
    if "encodec" in sys.modules:
        return
    spec = importlib.util.find_spec("encodec")  # finds the package without executing its __init__
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("the `encodec` package is missing: pip install --no-deps encodec==0.1.1")
    pkg = types.ModuleType("encodec")
    pkg.__path__ = list(spec.submodule_search_locations)
    pkg.__spec__ = spec
    pkg.__file__ = spec.origin
    sys.modules["encodec"] = pkg


def load() -> tuple[Any, Any]:
    """``(encodec.modules, encodec.quantization)``."""
    _bare_package()
    return importlib.import_module("encodec.modules"), importlib.import_module("encodec.quantization")
