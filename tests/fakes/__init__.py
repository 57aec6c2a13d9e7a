"""Loopback servers that speak the real protocols the relay talks to (Key Vault, managed identity, CIJ)."""

import os

# Settings that could point the relay or the Azure SDKs at real resources or a configured CIJ.
REAL_TARGET_PREFIXES = ("AZURE_", "IDENTITY_", "MSI_", "IMDS_", "CIJ_", "KEY_VAULT", "AzureWebJobs",
                        "DELIVERY_", "APPLICATIONINSIGHTS", "APP_CHECK_", "DEVICE_RATE_")


def scrub_real_targets() -> None:
    """Remove those settings from the environment: tests and the benchmark set their own."""
    for name in list(os.environ):
        if name.startswith(REAL_TARGET_PREFIXES):
            del os.environ[name]
