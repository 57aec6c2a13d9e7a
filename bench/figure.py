"""What a figure module gets (the run's parameters and its services) and how it states a target."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

from bench.services import Services

Result = dict[str, Any]


class Target(NamedTuple):
    """A figure held to a target: what the target says, whether a result meets it, how it is shown."""

    says: str
    met: Callable[[Result], bool]
    shows: Callable[[Result], str]


@dataclass
class Bench:
    """One run of the benchmark as the figure modules see it."""

    events: int  # events per mode and round
    concurrency: int  # requests in flight
    rounds: int  # figures are medians over the rounds
    server_pem: str  # the vault fake's key and certificate chain (its CA is trusted)
    say: Callable[[str], None]  # progress, to stderr (or nowhere with --json)
    _services: Services | None = None

    async def services(self) -> Services:
        """The upstream and vault services, started (and the relay pointed at them) on first use."""
        if self._services is None:
            self._services = Services()
            await self._services.start(self.server_pem)
            self._services.configure_relay()
        return self._services

    def placement(self) -> dict[str, list[int] | None]:
        """The cores the measurements and the services ran on."""
        if self._services is None:
            return {"measured_on_cores": None, "services_on_cores": None}
        return self._services.placement()

    async def close(self) -> None:
        """Stop the services if any figure started them."""
        if self._services is not None:
            await self._services.stop()
