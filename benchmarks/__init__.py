"""Benchmarks of singleflight_sync against a reference and its peers; run ``python -m benchmarks``."""
