"""The relay's Key Vault and managed-identity endpoint, run in their own process for the benchmark.

`python -m bench.vault --cert PEM --org-id GUID --endpoint URL` serves the test fakes
(tests/fakes: Key Vault over HTTPS with its bearer challenge, the App Service identity endpoint)
and prints one JSON line: the vault URL, the identity endpoint and header, and a stats URL
(`GET` → Key Vault GETs per secret and tokens issued). It exits when its stdin closes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import ssl

from aiohttp import web

from bench.upstream import until_stdin_closes
from tests.fakes.identity import FakeManagedIdentity
from tests.fakes.keyvault import FakeKeyVault
from tests.fakes.servers import Served

ORG_ID_SECRET, ENDPOINT_SECRET = "cij-org-id", "cij-public-endpoint"


async def serve(cert: str, org_id: str, endpoint: str) -> None:
    identity = FakeManagedIdentity()
    vault = FakeKeyVault({ORG_ID_SECRET: org_id, ENDPOINT_SECRET: endpoint}, lambda: identity.issued)

    async def stats(request: web.Request) -> web.Response:
        return web.json_response({"kv_reads": dict(vault.reads), "token_requests": len(identity.requests)})

    identity.app.router.add_get("/_bench/stats", stats)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert)
    identity_served = await Served(identity.app).start()
    vault_served = Served(vault.app, context)
    await vault_served.start()
    vault.port = vault_served.port
    print(
        json.dumps(
            {
                "vault_url": vault_served.url,
                "identity_endpoint": f"{identity_served.url}msi/token",
                "identity_header": identity.header_secret,
                "stats_url": f"{identity_served.url}_bench/stats",
            }
        ),
        flush=True,
    )
    await until_stdin_closes()
    await vault_served.stop()
    await identity_served.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description="Loopback Key Vault and managed identity for the benchmark.")
    parser.add_argument("--cert", required=True, help="PEM with the server key and certificate chain")
    parser.add_argument("--org-id", required=True)
    parser.add_argument("--endpoint", required=True, help="the CIJ endpoint the vault hands out")
    args = parser.parse_args()
    asyncio.run(serve(args.cert, args.org_id, args.endpoint))


if __name__ == "__main__":
    main()
