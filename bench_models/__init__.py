"""Benchmark models, suites and scripts (not installed; run from the repository root)."""
