"""The figures `python -m bench` reports: one module each, measured (and reported) in this order.

A figure module defines
- `async def measure(bench: Bench) -> dict`: its keys of the JSON result (bench/figure.py: `Bench`
  holds the run's parameters, progress output, and `await bench.services()`, the upstream and the
  Key Vault fakes the relay is pointed at);
- `TARGETS: dict[str, Target]` (optional): the figures held to a target, checked and shown by
  bench/report.py;
- `def lines(result: dict) -> list[str]` (optional): its part of the human-readable report.

To add a figure, write its module here and add it to FIGURES.
"""

from __future__ import annotations

from types import ModuleType

from bench.figures import abuse, imports, outage, throughput

FIGURES: tuple[ModuleType, ...] = (imports, throughput, abuse, outage)
