"""Reproducible benchmarks that print their figures and ratios against a baseline."""
