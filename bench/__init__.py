"""Reproducible benchmarks that print tables."""
