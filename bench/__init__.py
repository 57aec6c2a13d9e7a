"""Throughput benchmark: the relay against the physical limit (bare client) and the naive function.

Run `python -m bench` from the repository root; see docs/performance.md. Nothing here imports
aiohttp at package import: `python -m bench` must trust its test CA before aiohttp is loaded.
"""
