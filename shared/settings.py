"""Every setting the relay reads, with its default, parsed and validated in one place."""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit


class ConfigError(Exception):
    """A setting has a value the relay cannot use."""


@dataclass(frozen=True)
class Setting:
    """One app setting: its name, default (None = unset) and what it does."""

    name: str
    default: str | None
    description: str
    needed_in_azure: bool = False


# The table below is the single source for the settings table in docs/settings.md and the infra drift test.
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
    Setting(
        "CIRCUIT_FAILURE_THRESHOLD",
        "10",
        "Consecutive events that failed on a transient CIJ fault (after their retries) before the "
        "circuit opens and events stop waiting for CIJ (1-20).",
    ),
    Setting(
        "CIRCUIT_PROBE_SECONDS",
        "5",
        "While the circuit is open, at most one probe goes to CIJ per this many seconds, per instance.",
    ),
    Setting(
        "REDELIVERY_MAX_DELAY_MINUTES",
        "30",
        "Longest wait between two redeliveries of a queued event (delays start at about a minute "
        "and double up to this).",
    ),
    Setting(
        "REDELIVERY_MAX_AGE_HOURS",
        "72",
        "How long after it was first received a queued event is retried before it goes to the "
        "poison queue with the reason.",
    ),
    Setting(
        "APP_CHECK_MODE",
        "off",
        "Firebase App Check: `off`, `monitor` (verify and log, but accept) or `enforce` (401 "
        "without a valid `X-Firebase-AppCheck` token).",
    ),
    Setting(
        "APP_CHECK_PROJECT_NUMBER",
        None,
        "Firebase project number the App Check tokens must be issued for (required unless "
        "APP_CHECK_MODE=off).",
    ),
    Setting(
        "APP_CHECK_APP_IDS",
        None,
        "Comma-separated Firebase app IDs allowed to send events; unset: any app of the project.",
    ),
    Setting(
        "APP_CHECK_JWKS_URL",
        "https://firebaseappcheck.googleapis.com/v1/jwks",
        "Where App Check's public keys are read (https; http only for loopback hosts).",
    ),
    Setting(
        "DEVICE_RATE_PER_MINUTE",
        "60",
        "Events per minute one device token may send, per instance; `0` turns the limit off.",
    ),
    Setting(
        "DEVICE_RATE_BURST",
        "120",
        "Events one device may send at once before DEVICE_RATE_PER_MINUTE applies (a batch of "
        "100 passes).",
    ),
    Setting(
        "AZURE_SDK_LOG_LEVEL",
        "WARNING",
        "Level of the Azure SDK's `azure` loggers (Key Vault, storage, identity requests).",
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
    circuit_failure_threshold: int = 10
    circuit_probe_seconds: float = 5.0
    redelivery_max_delay: float = 1800.0  # seconds
    redelivery_max_age: float = 72 * 3600.0  # seconds
    app_check_mode: str = "off"
    app_check_project_number: str | None = None
    app_check_app_ids: tuple[str, ...] = ()
    app_check_jwks_url: str = "https://firebaseappcheck.googleapis.com/v1/jwks"
    device_rate_per_minute: float = 60.0
    device_rate_burst: int = 120
    azure_sdk_log_level: str = "WARNING"


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


# A storage queue name: 3-63 lower-case letters, digits and single hyphens, starting and ending with
# a letter or digit. The host adds "-poison" for the poison queue, so the name itself may be 56 long.
_QUEUE_NAME = re.compile(r"[a-z0-9](?:[a-z0-9]|-(?!-)){1,54}[a-z0-9]")
_LOG_LEVELS = ("critical", "error", "warning", "info", "debug")


def is_loopback_host(host: str) -> bool:
    """True for `localhost` and loopback IP literals (the only hosts plain http may reach)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _choice(env: Mapping[str, str], name: str, choices: tuple[str, ...]) -> str:
    value = (_get(env, name) or "").lower()
    if value not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(choices)}, got {value!r}")
    return value


def _jwks_url(env: Mapping[str, str]) -> str:
    url = _get(env, "APP_CHECK_JWKS_URL") or ""
    try:
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
    except ValueError:
        raise ConfigError("APP_CHECK_JWKS_URL is not a URL") from None
    if not host or not (parts.scheme == "https" or (parts.scheme == "http" and is_loopback_host(host))):
        raise ConfigError("APP_CHECK_JWKS_URL must be an https:// URL (http only for loopback hosts)")
    return url


def _app_check(env: Mapping[str, str]) -> dict[str, object]:
    mode = _choice(env, "APP_CHECK_MODE", ("off", "monitor", "enforce"))
    project = _get(env, "APP_CHECK_PROJECT_NUMBER")
    if project is not None and not (project.isascii() and project.isdigit()):
        raise ConfigError("APP_CHECK_PROJECT_NUMBER must be the Firebase project number (digits only)")
    if mode != "off" and project is None:
        raise ConfigError(f"APP_CHECK_MODE={mode} needs APP_CHECK_PROJECT_NUMBER")
    app_ids = tuple(a.strip() for a in (_get(env, "APP_CHECK_APP_IDS") or "").split(",") if a.strip())
    return {
        "app_check_mode": mode,
        "app_check_project_number": project,
        "app_check_app_ids": app_ids,
        "app_check_jwks_url": _jwks_url(env),
    }


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
        circuit_failure_threshold=int(_number(env, "CIRCUIT_FAILURE_THRESHOLD", int, 1, 20)),
        circuit_probe_seconds=_number(env, "CIRCUIT_PROBE_SECONDS", float, 0.01, 600),
        # Fractions are allowed so that drills can compress days into seconds.
        redelivery_max_delay=_number(env, "REDELIVERY_MAX_DELAY_MINUTES", float, 0.001, 1440) * 60,
        redelivery_max_age=_number(env, "REDELIVERY_MAX_AGE_HOURS", float, 0.0001, 168) * 3600,
        device_rate_per_minute=_number(env, "DEVICE_RATE_PER_MINUTE", float, 0, 1_000_000),
        device_rate_burst=int(_number(env, "DEVICE_RATE_BURST", int, 1, 1_000_000)),
        azure_sdk_log_level=_choice(env, "AZURE_SDK_LOG_LEVEL", _LOG_LEVELS).upper(),
        **_app_check(env),  # type: ignore[arg-type]
    )
    if not _QUEUE_NAME.fullmatch(settings.delivery_queue_name):
        raise ConfigError(
            "DELIVERY_QUEUE_NAME must be 3-56 lower-case letters, digits and single hyphens, starting "
            "and ending with a letter or digit (the host adds -poison)"
        )
    if settings.key_vault_url and not settings.key_vault_url.startswith("https://"):
        raise ConfigError("KEY_VAULT_URL must be an https:// URL")
    if fallback == "queue" and not (settings.queue_service_uri or settings.storage_connection_string):
        raise ConfigError(
            "DELIVERY_FALLBACK=queue needs AzureWebJobsStorage__queueServiceUri "
            "or an AzureWebJobsStorage connection string"
        )
    return settings
