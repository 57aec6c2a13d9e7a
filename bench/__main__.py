"""`python -m bench [--events N] [--concurrency C] [--json]`: bare client vs relay vs naive function.

Starts a loopback CIJ stand-in (bench/upstream.py) and the Key Vault + managed-identity fakes
(bench/vault.py) in their own processes, then sends the same N events at the same concurrency
through each mode, in rotating order, for several rounds, and reports the medians.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sys
import tempfile

from tests.fakes import scrub_real_targets


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=10000, help="events per mode and round (10000)")
    parser.add_argument("--concurrency", type=int, default=100, help="requests in flight (100)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds; figures are medians (3)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    args = parser.parse_args(argv)
    if args.events < 1 or args.concurrency < 1 or args.rounds < 1:
        parser.error("--events, --concurrency and --rounds must be at least 1")
    return args


def trust_test_ca(workdir: str) -> str:
    """Create a throwaway CA, trust it (SSL_CERT_FILE) and return the vault's key + chain PEM."""
    import trustme

    # aiohttp builds its default SSL context when imported: the CA must be trusted before that.
    assert "aiohttp" not in sys.modules, "bench must set SSL_CERT_FILE before aiohttp is imported"
    ca = trustme.CA()
    ca_file, server_file = os.path.join(workdir, "ca.pem"), os.path.join(workdir, "vault.pem")
    ca.cert_pem.write_to_path(ca_file)
    ca.issue_cert("127.0.0.1", "localhost").private_key_and_cert_chain_pem.write_to_path(server_file)
    os.environ["SSL_CERT_FILE"] = ca_file
    return server_file


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    scrub_real_targets()  # the benchmark sets its own target, vault and identity
    workdir = tempfile.mkdtemp(prefix="relay-bench-")
    try:
        server_pem = trust_test_ca(workdir)
        from bench import report, run

        progress = None if args.json else report.progress
        result = asyncio.run(run.run(args.events, args.concurrency, args.rounds, server_pem, progress))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    result["targets_met"] = report.targets_met(result)
    print(json.dumps(result) if args.json else report.table(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
