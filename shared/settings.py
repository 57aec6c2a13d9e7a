"""Every setting the relay reads, with its default, parsed and validated in one place."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass


class ConfigError(Exception):
    """A setting has a value the relay cannot use."""


@dataclass(frozen=True)
class Setting:
    """One app setting: its name, default (None = unset) and what it does."""

    name: str
    default: str | None
    description: str
    needed_in_azure: bool = False


# The table below is the single source for the README's settings table and the infra drift test.
SETTINGS: tuple[Setting, ...] = (
    Setting(
        "KEY_VAULT_URL",
        None,
        "Vault holding the CIJ org ID and endpoint. Unset: read CIJ_ORG_ID / CIJ_PUBLIC_ENDPOINT.",
        needed_in_azure=True,
    ),
    Setting(
        "AZURE_CLIENT_ID",
        None,
        "Client ID of the user-assigned managed identity (read by azure-identity).",
        needed_in_azure=True,
    ),
    Setting("CIJ_ORG_ID_SECRET_NAME", "cij-org-id", "Key Vault secret holding the CIJ org ID (a GUID)."),
    Setting(
        "CIJ_ENDPOINT_SECRET_NAME",
        "cij-public-endpoint",
        "Key Vault secret holding the CIJ public endpoint, e.g. https://public-eur.mkt.dynamics.com.",
    ),
    Setting("CIJ_ORG_ID", None, "Org ID for local runs without KEY_VAULT_URL."),
    Setting("CIJ_PUBLIC_ENDPOINT", None, "Public endpoint for local runs without KEY_VAULT_URL."),
    Setting(
        "CIJ_ALLOWED_HOSTS",
        "*.dynamics.com",
        "Comma-separated host patterns the endpoint must match (fnmatch, case-insensitive).",
    ),
    Setting("SECRET_CACHE_TTL_SECONDS", "600", "How long the org ID and endpoint are cached."),
    Setting("FORWARD_TIMEOUT_SECONDS", "10", "Total deadline for one event, retries included."),
    Setting("UPSTREAM_MAX_CONNECTIONS", "100", "Connection pool size towards CIJ, per instance."),
    Setting("BATCH_CONCURRENCY", "10", "Events of one batch forwarded at the same time."),
    Setting(
        "DELIVERY_FALLBACK",
        "none",
        "`none`: retryable failures answer 5xx. `queue`: they are stored on a queue and answered 202.",
    ),
    Setting("DELIVERY_QUEUE_NAME", "pending-events", "Storage queue for events awaiting redelivery."),
    Setting(
        "AzureWebJobsStorage__queueServiceUri",
        None,
        "Queue service URI used with the managed identity when DELIVERY_FALLBACK=queue.",
    ),
    Setting(
        "AzureWebJobsStorage",
        None,
        "Storage connection string; used for the queue only when no queueServiceUri is set (local).",
    ),
)

SETTING_NAMES = frozenset(s.name for s in SETTINGS)
_DEFAULTS = {s.name: s.default for s in SETTINGS}


@dataclass(frozen=True)
class Settings:
    """The relay's validated configuration."""

    key_vault_url: str | None
    org_id_secret_name: str
    endpoint_secret_name: str
    org_id: str | None
    public_endpoint: str | None
    allowed_hosts: tuple[str, ...]
    secret_cache_ttl: float
    forward_timeout: float
    max_connections: int
    batch_concurrency: int
    delivery_fallback: str
    delivery_queue_name: str
    queue_service_uri: str | None
    storage_connection_string: str | None


def _get(env: Mapping[str, str], name: str) -> str | None:
    value = env.get(name, "").strip()
    return value or _DEFAULTS[name]


def _number(env: Mapping[str, str], name: str, kind: type, low: float, high: float) -> float:
    raw = _get(env, name)
    try:
        value = kind(raw)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be a number, got {raw!r}") from None
    if not low <= value <= high:
        raise ConfigError(f"{name} must be between {low} and {high}, got {value}")
    return value


def load(env: Mapping[str, str] | None = None) -> Settings:
    """Read and validate every setting from `env` (default: the process environment)."""
    env = os.environ if env is None else env
    fallback = (_get(env, "DELIVERY_FALLBACK") or "").lower()
    if fallback not in ("none", "queue"):
        raise ConfigError(f"DELIVERY_FALLBACK must be 'none' or 'queue', got {fallback!r}")
    hosts = tuple(p.strip().lower() for p in (_get(env, "CIJ_ALLOWED_HOSTS") or "").split(",") if p.strip())
    if not hosts:
        raise ConfigError("CIJ_ALLOWED_HOSTS must name at least one host pattern")
    settings = Settings(
        key_vault_url=_get(env, "KEY_VAULT_URL"),
        org_id_secret_name=_get(env, "CIJ_ORG_ID_SECRET_NAME") or "",
        endpoint_secret_name=_get(env, "CIJ_ENDPOINT_SECRET_NAME") or "",
        org_id=_get(env, "CIJ_ORG_ID"),
        public_endpoint=_get(env, "CIJ_PUBLIC_ENDPOINT"),
        allowed_hosts=hosts,
        secret_cache_ttl=_number(env, "SECRET_CACHE_TTL_SECONDS", float, 0, 86400),
        forward_timeout=_number(env, "FORWARD_TIMEOUT_SECONDS", float, 0.1, 230),
        max_connections=int(_number(env, "UPSTREAM_MAX_CONNECTIONS", int, 1, 10000)),
        batch_concurrency=int(_number(env, "BATCH_CONCURRENCY", int, 1, 100)),
        delivery_fallback=fallback,
        delivery_queue_name=_get(env, "DELIVERY_QUEUE_NAME") or "",
        queue_service_uri=_get(env, "AzureWebJobsStorage__queueServiceUri"),
        storage_connection_string=_get(env, "AzureWebJobsStorage"),
    )
    if settings.key_vault_url and not settings.key_vault_url.startswith("https://"):
        raise ConfigError("KEY_VAULT_URL must be an https:// URL")
    if fallback == "queue" and not (settings.queue_service_uri or settings.storage_connection_string):
        raise ConfigError(
            "DELIVERY_FALLBACK=queue needs AzureWebJobsStorage__queueServiceUri "
            "or an AzureWebJobsStorage connection string"
        )
    return settings
