"""Levels of the loggers of the relay's dependencies: the Azure SDK stays quiet unless asked."""

from __future__ import annotations

import logging

from .settings import Settings

AZURE_SDK_LOGGER = "azure"
"""Parent of every Azure SDK logger (azure.core, azure.identity, azure.keyvault, azure.storage...)."""


def apply(settings: Settings) -> None:
    """Set the Azure SDK's loggers to AZURE_SDK_LOG_LEVEL (default WARNING): at INFO they log every
    Key Vault, token and storage request, which in Azure all reach Application Insights."""
    logging.getLogger(AZURE_SDK_LOGGER).setLevel(settings.azure_sdk_log_level)
