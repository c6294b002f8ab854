"""Kahu's benchmarks: `make bench` (python -m bench). Never part of `make test`."""
