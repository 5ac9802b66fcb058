"""Benchmarks run by `make bench` (`python -m bench`): one module per concern, each with `run()`."""
