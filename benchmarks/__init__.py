"""Benchmark scripts: run as modules, e.g. ``python -m benchmarks.codec`` (figures go to benchmarks/results)."""
