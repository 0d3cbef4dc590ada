"""Benchmarks (`mimic bench ...`)."""
