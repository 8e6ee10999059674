"""Benchmarks: each prints its figures and ratios against references measured in the same run."""
