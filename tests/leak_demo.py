"""Deliberately leaky tests, run only by tests/test_log_hygiene.py in a child pytest (the file name
keeps the suite from collecting it): each must be failed at teardown by the leak check in conftest."""

from __future__ import annotations

import logging

import pytest

from tests.conftest import ORG_ID, new_event


@pytest.mark.parametrize("where", ["org-id-in-a-debug-record", "token-in-an-exception", "endpoint-in-a-body"])
async def test_leaky_demo(where, cij):
    if where == "org-id-in-a-debug-record":
        logging.getLogger("cij_relay.target").debug("refreshed target for org %s", ORG_ID)
    elif where == "token-in-an-exception":
        token = new_event()["DeviceToken"]
        try:
            raise ValueError(f"bad token {token}")
        except ValueError:
            logging.getLogger("some.library").warning("swallowed", exc_info=True)
    else:
        from tests.conftest import TEXT_SOURCES

        TEXT_SOURCES.append(lambda: f'{{"detail": "posted to {cij.url}"}}')
