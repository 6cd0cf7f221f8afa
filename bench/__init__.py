"""Benchmarks: run as modules, e.g. ``python -m bench.render``. Never part of the test suite."""
