# Two commands for a fresh machine: `make demo` and `make test`. Both set everything up first.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup system demo test lint clean

setup: system $(STAMP)

system:
	@if [ -z "$$ALM_SKIP_APT" ]; then ./scripts/setup_system.sh; fi

# torch first and pinned: any other torch (or one a resolver picks) is a multi-GB CUDA build here.
$(STAMP): pyproject.toml Makefile
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q torch==2.13.0
	DS_BUILD_OPS=0 $(PY) -m pip install -q -e ".[dev]"
	# encodec's modules are plain torch, but its metadata pulls a torchaudio that breaks transformers here.
	$(PY) -m pip install -q --no-deps encodec==0.1.1
	@touch $(STAMP)

demo: setup
	$(PY) scripts/demo.py

test: setup
	$(PY) -m ruff check .
	$(PY) -m pytest

lint: setup
	$(PY) -m ruff check .

clean:
	rm -rf $(VENV) demo-out .pytest_cache .ruff_cache
