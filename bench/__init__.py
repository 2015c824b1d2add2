"""Benchmark harness: the gateway against an in-memory strawberry "ceiling".

Run ``python -m bench.run --help``. Nothing in ``tests/`` imports this package.
"""
