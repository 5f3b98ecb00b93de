"""Benchmarks of obs-sync against the bundled simulator and a real PostgreSQL (issue 5).

Not part of the test suite. Run ``python -m bench.run --help``; see bench/README.md.
"""
