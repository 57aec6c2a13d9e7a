"""BASELINE, NOT THE RELAY: the function as tutorials write it, for the benchmark to compare with.

Per request it builds a credential, a SecretClient and an HTTP session, reads both secrets and posts
the event: no cache, no pool, no validation. It reads the same environment as the relay
(KEY_VAULT_URL and the managed identity's IDENTITY_ENDPOINT / IDENTITY_HEADER / AZURE_CLIENT_ID).
"""

from __future__ import annotations

import os

import aiohttp
import azure.functions as func
from azure.identity.aio import DefaultAzureCredential
from azure.keyvault.secrets.aio import SecretClient


async def main(req: func.HttpRequest) -> func.HttpResponse:
    event = req.get_json()
    async with (
        DefaultAzureCredential() as credential,
        SecretClient(vault_url=os.environ["KEY_VAULT_URL"], credential=credential) as secrets,
    ):
        org_id = (await secrets.get_secret("cij-org-id")).value
        endpoint = (await secrets.get_secret("cij-public-endpoint")).value
    url = f"{endpoint.rstrip('/')}/api/v1.0/orgs/{org_id}/pushdatareceiver/events"
    async with aiohttp.ClientSession() as session, session.post(url, json=event) as resp:
        return func.HttpResponse(status_code=202 if resp.status == 202 else 502)
