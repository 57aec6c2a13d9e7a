"""The Azure SDK's loggers: quiet (WARNING) in a deployed relay, louder only when the operator asks."""

from __future__ import annotations

import logging

import pytest

from shared import logging_setup, relay, settings
from tests.conftest import call, new_event

SDK_REQUEST_LOGGER = "azure.core.pipeline.policies.http_logging_policy"


def sdk_info_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name.startswith("azure.") and r.levelno == logging.INFO]


async def send_one_event_through_key_vault() -> None:
    """One event, with the target read from the (loopback) Key Vault by the real Azure SDK."""
    response = await call("events", new_event())
    assert response.status_code == 202


async def test_the_sdk_logs_no_request_at_info_by_default(kv_env, monkeypatch, caplog):
    monkeypatch.delenv("AZURE_SDK_LOG_LEVEL")
    await send_one_event_through_key_vault()
    assert kv_env.reads, "the relay read its target from Key Vault"
    assert sdk_info_records(caplog) == []
    assert logging.getLogger(logging_setup.AZURE_SDK_LOGGER).level == logging.WARNING


async def test_the_operator_can_ask_for_the_sdk_request_log(kv_env, monkeypatch, caplog):
    monkeypatch.setenv("AZURE_SDK_LOG_LEVEL", "INFO")
    await send_one_event_through_key_vault()
    assert any(r.name == SDK_REQUEST_LOGGER for r in sdk_info_records(caplog))


@pytest.mark.parametrize(("value", "kept"), [(None, False), ("info", True), ("WARNING", False)])
async def test_an_info_record_of_any_azure_logger_follows_the_setting(
    static_env, monkeypatch, caplog, value, kept
):
    if value is None:
        monkeypatch.delenv("AZURE_SDK_LOG_LEVEL")
    else:
        monkeypatch.setenv("AZURE_SDK_LOG_LEVEL", value)
    relay.current()
    logging.getLogger("azure.storage.queue").info("queue request")
    logging.getLogger("azure.identity").info("token request")
    assert len(sdk_info_records(caplog)) == (2 if kept else 0)


async def test_the_relay_s_own_info_records_are_not_affected(static_env, monkeypatch, caplog):
    monkeypatch.delenv("AZURE_SDK_LOG_LEVEL")
    logging_setup.apply(settings.load())
    logging.getLogger("cij_relay").info("relay record")
    logging.getLogger("azure_functions_worker").info("worker record")
    assert {r.name for r in caplog.records} >= {"cij_relay", "azure_functions_worker"}
