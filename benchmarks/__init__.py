"""Benchmarks of the suite (a regular package: the arcticdb wheel installs a top-level `benchmarks` of its own)."""
