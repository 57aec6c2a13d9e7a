"""openapi.yaml and function_app agree on routes, methods, auth levels, content types and Retry-After."""

from __future__ import annotations

import azure.functions as func

from tests.openapi_spec import HOST, SPEC, http_triggers, operations, resolve


def test_the_spec_is_openapi_3_0_3_and_its_base_path_is_the_hosts_route_prefix():
    assert SPEC["openapi"] == "3.0.3"
    prefix = HOST["extensions"]["http"]["routePrefix"]
    for server in SPEC["servers"]:
        assert server["url"].endswith(f"/{prefix}")


def test_every_route_and_method_in_the_spec_is_an_http_trigger_and_vice_versa():
    assert set(operations()) == set(http_triggers())
    assert len(operations()) == 3


def test_auth_level_of_each_route_matches_its_security_requirement():
    schemes = SPEC["components"]["securitySchemes"]
    assert schemes["functionKey"] == {**schemes["functionKey"], "type": "apiKey", "in": "header"}
    assert schemes["functionKey"]["name"] == "x-functions-key"
    for key, trigger in http_triggers().items():
        security = operations()[key].get("security", SPEC["security"])
        if trigger.auth_level == func.AuthLevel.ANONYMOUS:
            assert security == [], key
        else:
            assert trigger.auth_level == func.AuthLevel.FUNCTION, key
            assert security and all(set(req) <= set(schemes) for req in security), key
            assert {"functionKey": []} in security, key


def test_every_answer_has_the_documented_content_type_and_5xx_carry_retry_after():
    for key, operation in operations().items():
        for status, response in operation["responses"].items():
            response = resolve(response)
            if status.startswith("5"):
                assert response["headers"]["Retry-After"]["required"] is True, (key, status)
            if status in ("400", "413", "415", "429", "502", "504"):
                assert set(response["content"]) == {"application/problem+json"}, (key, status)
