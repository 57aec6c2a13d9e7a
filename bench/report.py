"""The targets the figures are held to, and the human-readable output of `python -m bench`."""

from __future__ import annotations

import sys

from bench.figure import Result, Target
from bench.figures import FIGURES

# Figure → its target, from every figure module, in the order the figures are measured.
TARGETS: dict[str, Target] = {
    name: target for figure in FIGURES for name, target in getattr(figure, "TARGETS", {}).items()
}


def targets_met(result: Result) -> dict[str, bool]:
    """Whether each target is met by `result`."""
    return {name: bool(target.met(result)) for name, target in TARGETS.items()}


def progress(message: str) -> None:
    """Print a progress line to stderr."""
    print(message, file=sys.stderr, flush=True)


def header(r: Result) -> str:
    """What was run, where, and on which versions."""
    placement = (
        f"measured on core {', '.join(map(str, r['measured_on_cores']))}, upstream and Key Vault "
        f"fakes on core {', '.join(map(str, r['services_on_cores']))}"
        if r.get("measured_on_cores")
        else "nothing pinned"
    )
    return (
        f"{r['events']} events per mode and round, concurrency {r['concurrency']}, median of "
        f"{r['rounds']} rounds; {r['cpu_count']} cores ({r['cpu_model']}), {placement}; "
        f"Python {r['python']}, aiohttp {r['aiohttp']}"
    )


def table(r: Result) -> str:
    """The header, each figure module's lines, then every figure held to a target and its verdict."""
    lines = [header(r)]
    for figure in FIGURES:
        if hasattr(figure, "lines"):
            lines += ["", *figure.lines(r)]
    met = r.get("targets_met") or targets_met(r)
    lines.append("")
    for name, target in TARGETS.items():
        verdict = "met" if met[name] else "NOT MET"
        lines.append(f"{name:21s} {target.shows(r)}  [target {target.says}: {verdict}]")
    return "\n".join(lines)
