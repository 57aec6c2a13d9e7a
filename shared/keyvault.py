"""Reads the CIJ org ID and endpoint from Azure Key Vault with the app's managed identity."""

from __future__ import annotations

import asyncio

from azure.identity.aio import DefaultAzureCredential
from azure.keyvault.secrets.aio import SecretClient

# Bounded so a slow vault cannot eat the request's whole deadline.
_SDK_OPTIONS = {
    "retry_total": 2,
    "retry_backoff_factor": 0.5,
    "retry_backoff_max": 4,
    "connection_timeout": 3,
    "read_timeout": 5,
}


class KeyVaultSource:
    """One long-lived credential and SecretClient, reading both secrets concurrently."""

    def __init__(self, vault_url: str, org_id_secret: str, endpoint_secret: str) -> None:
        # DefaultAzureCredential picks the managed identity in Azure (AZURE_CLIENT_ID selects a
        # user-assigned one) and a developer's Azure CLI login on a laptop.
        self._credential = DefaultAzureCredential(exclude_interactive_browser_credential=True)
        self._client = SecretClient(vault_url, self._credential, **_SDK_OPTIONS)
        self._names = (org_id_secret, endpoint_secret)

    async def read(self) -> tuple[str, str]:
        reads = [asyncio.ensure_future(self._client.get_secret(n)) for n in self._names]
        try:
            org_id, endpoint = await asyncio.gather(*reads)
        finally:
            for pending in reads:  # one read failed: the refresh is over, stop the other (and its retries)
                pending.cancel()
        return org_id.value or "", endpoint.value or ""

    async def close(self) -> None:
        await self._client.close()
        await self._credential.close()
